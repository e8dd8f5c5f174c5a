//! The daemon restarted while every source is down: it serves the cached
//! roster at once, every peer marked as coming from the cache, and says it
//! is not ready (naming the source); when the source is back and confirms
//! the peers, they come from it and the daemon is ready. Real nats-server,
//! real `rollcall agent` processes, real `rollcall run`.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

fn nats_on(port: u16) -> Child {
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nats-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn stop(c: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &c.id().to_string()])
        .status();
    let _ = c.wait();
}

/// (id, source names) of each peer of `GET /v1/peers`.
async fn peers(http: &reqwest::Client, base: &str) -> Option<Vec<(String, Vec<String>)>> {
    let v: serde_json::Value = http
        .get(format!("{base}/v1/peers"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let mut out: Vec<(String, Vec<String>)> = v["peers"]
        .as_array()?
        .iter()
        .map(|p| {
            let sources = p["sources"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|s| s["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (p["id"].as_str().unwrap_or_default().to_owned(), sources)
        })
        .collect();
    out.sort();
    Some(out)
}

async fn readyz(http: &reqwest::Client, base: &str) -> Option<(u16, String)> {
    let r = http.get(format!("{base}/readyz")).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restarted_while_every_source_is_down_serves_the_cache_until_confirmed() {
    if std::env::var("ROLLCALL_SKIP_NATS").as_deref() == Ok("1") {
        eprintln!("SKIPPED daemon restart with cache: ROLLCALL_SKIP_NATS=1");
        return;
    }
    let nats_port = free_port();
    let url = format!("nats://127.0.0.1:{nats_port}");
    let mut nats = nats_on(nats_port);
    let mut agents = Killed(Vec::new());
    for i in 1..=3 {
        agents.0.push(
            Command::new(env!("CARGO_BIN_EXE_rollcall"))
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .args(["agent", "-c", "examples/nats.toml"])
                .env("ROLLCALL__SOURCES__NATS__URL", &url)
                .env("ROLLCALL__SOURCES__NATS__HEARTBEAT", "1s")
                .env("ROLLCALL__LOCAL__ID", format!("agent-{i}"))
                .env("ROLLCALL__LOCAL__ADDRS", format!("10.0.1.{i}:9000"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("roster.json");
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[registry]
exclude_addresses = []
cache_file = "{}"
cache_interval = "500ms"

[sources.nats]
type = "nats"
url = "{url}"
heartbeat = "1s"
"#,
            cache.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ids = ["agent-1", "agent-2", "agent-3"];
    let from = |source: &str| -> Vec<(String, Vec<String>)> {
        ids.iter()
            .map(|i| (i.to_string(), vec![source.to_owned()]))
            .collect()
    };

    let mut first = daemon(&cfg, port, &dir.path().join("run1.log"));
    eventually(30, "three agents listed from nats", || async {
        peers(&http, &base).await == Some(from("nats"))
    })
    .await;
    eventually(10, "the cache file holds the three agents", || async {
        let text = std::fs::read_to_string(&cache).unwrap_or_default();
        ids.iter().all(|i| text.contains(i))
    })
    .await;
    stop(&mut first, "-TERM");
    // Every source down: the NATS server is gone.
    stop(&mut nats, "-KILL");

    let mut second = Killed(vec![daemon(&cfg, port, &dir.path().join("run2.log"))]);
    eventually(10, "the restarted daemon answers", || async {
        peers(&http, &base).await.is_some()
    })
    .await;
    assert_eq!(
        peers(&http, &base).await,
        Some(from("cache")),
        "the cached roster at once, each peer marked as from the cache"
    );
    let (code, why) = readyz(&http, &base).await.unwrap();
    assert_eq!(code, 503, "not ready on a cache alone: {why}");
    assert!(why.contains("nats"), "the reason names the source: {why}");
    // Still served (and still marked) a while later, with nothing to confirm it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(peers(&http, &base).await, Some(from("cache")));

    // The server is back on its port: the agents reconnect and announce,
    // the daemon's source syncs, the peers are confirmed by nats.
    let _nats = Killed(vec![nats_on(nats_port)]);
    eventually(30, "the three agents confirmed by nats", || async {
        peers(&http, &base).await == Some(from("nats"))
    })
    .await;
    eventually(10, "ready once the source synced", || async {
        readyz(&http, &base).await.map(|r| r.0) == Some(200)
    })
    .await;
    stop(&mut second.0[0], "-TERM");
}
