//! `rollcall run` reloads its config on SIGHUP and on file change: unchanged
//! sources keep running (their peers produce no event), removed ones stop and
//! their peers leave, new ones start, and an invalid file is rejected with one
//! log line and a metric while the running config stays. Real nats-server, a
//! real `rollcall agent` announcing through it, static sources.

mod support;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use support::*;

fn config(nats: &str, statics: &str) -> String {
    format!(
        r#"
[registry]
exclude_addresses = []

[sources.nats]
type = "nats"
url = "{nats}"
heartbeat = "1s"

[sources.seeds]
type = "static"
peers = [{{ id = "walnut", addrs = ["/ip4/10.0.0.1/tcp/9000"] }}]
{statics}
"#
    )
}

const CHESTNUT: &str = r#"
[sources.extra]
type = "static"
peers = [{ id = "chestnut", addrs = ["/ip4/10.0.0.2/tcp/9000"] }]
"#;

const HAZEL: &str = r#"
[sources.more]
type = "static"
peers = [{ id = "hazel", addrs = ["/ip4/10.0.0.3/tcp/9000"] }]
"#;

async fn metric(http: &reqwest::Client, base: &str, line_start: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_sources_and_rejects_an_invalid_file() {
    let Some((nats, url)) = nats_server("reload test") else {
        return;
    };
    let mut procs = Killed(vec![nats]);
    procs.0.push(
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["agent", "-c", "examples/nats.toml"])
            .env("ROLLCALL__SOURCES__NATS__URL", &url)
            .env("ROLLCALL__SOURCES__NATS__HEARTBEAT", "1s")
            .env("ROLLCALL__LOCAL__ID", "agent-1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    let log = dir.path().join("run.log");
    std::fs::write(&cfg, config(&url, CHESTNUT)).unwrap();
    let port = free_port();
    procs.0.push(daemon(&cfg, port, &log));
    let pid = procs.0.last().unwrap().id().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let want = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    eventually(30, "agent-1, chestnut and walnut listed", || async {
        peer_ids(&http, &base).await == Some(want(&["agent-1", "chestnut", "walnut"]))
    })
    .await;

    // Record every roster event from here on.
    let events = Arc::new(Mutex::new(String::new()));
    let sink = events.clone();
    let mut stream = http
        .get(format!("{base}/v1/watch"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let reader = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(Ok(chunk)) = stream.next().await {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    eventually(10, "the watch snapshot", || async {
        events.lock().unwrap().contains("event: snapshot")
    })
    .await;

    // `extra` removed, `more` added, `nats` and `seeds` unchanged.
    std::fs::write(&cfg, config(&url, HAZEL)).unwrap();
    eventually(15, "chestnut gone and hazel listed", || async {
        peer_ids(&http, &base).await == Some(want(&["agent-1", "hazel", "walnut"]))
    })
    .await;
    // A few heartbeats later: still no event about the untouched sources' peers.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let seen = events.lock().unwrap().clone();
    let records: Vec<&str> = seen
        .split("\n\n")
        .filter(|r| r.contains("event:"))
        .collect();
    let about = |id: &str| {
        records
            .iter()
            .filter(|r| !r.contains("event: snapshot") && r.contains(&format!("\"id\":\"{id}\"")))
            .count()
    };
    assert_eq!(
        about("walnut"),
        0,
        "unchanged static source produced events: {seen}"
    );
    assert_eq!(
        about("agent-1"),
        0,
        "unchanged nats source produced events: {seen}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("event: left") && r.contains("\"id\":\"chestnut\"")),
        "{seen}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("event: joined") && r.contains("\"id\":\"hazel\"")),
        "{seen}"
    );
    let sources: serde_json::Value = http
        .get(format!("{base}/v1/sources"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut names: Vec<&str> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["more", "nats", "seeds"]);
    assert_eq!(
        metric(&http, &base, "rollcall_config_reloads_total{result=\"ok\"}").await,
        Some(1.0)
    );

    // An invalid file: rejected, counted, one log line; the roster stays.
    std::fs::write(
        &cfg,
        config(&url, "[sources.more]\ntype = \"static\"\npeers = 7\n"),
    )
    .unwrap();
    eventually(10, "the invalid reload counted", || async {
        metric(
            &http,
            &base,
            "rollcall_config_reloads_total{result=\"invalid\"}",
        )
        .await
            == Some(1.0)
    })
    .await;
    assert_eq!(
        peer_ids(&http, &base).await,
        Some(want(&["agent-1", "hazel", "walnut"]))
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let rejections: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("config reload rejected"))
        .collect();
    assert_eq!(rejections.len(), 1, "{logged}");
    assert!(rejections[0].contains("sources.more"), "{}", rejections[0]);

    // SIGHUP reloads too (the file is valid again, `more` now gone).
    std::fs::write(&cfg, config(&url, "")).unwrap();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    eventually(10, "hazel gone after SIGHUP", || async {
        peer_ids(&http, &base).await == Some(want(&["agent-1", "walnut"]))
    })
    .await;
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("trigger=\"SIGHUP\"")
            || std::fs::read_to_string(&log).unwrap().contains("SIGHUP")
    );
    reader.abort();
}
