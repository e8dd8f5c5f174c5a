//! `rollcall run`: the daemon's HTTP API, through the real binary.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_roster_filters_watch_bootstrap_sd_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let peers_file = dir.path().join("peers.toml");
    std::fs::write(
        &peers_file,
        "peers = [{ id = \"c\", addrs = [\"10.0.0.3:9000\"] }]\n",
    )
    .unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[sources.inline]
type = "static"
priority = 10
peers = [
  {{ id = "a", status = "idle", capabilities = ["go_development"], labels = {{ model = "llama3.1:8b" }}, addrs = ["10.0.0.1:9000"], aliases = [{{ kind = "peer_id", value = "12D3KooWA" }}] }},
  {{ id = "b", status = "working", addrs = ["10.0.0.2:9000"] }},
]
[sources.file]
type = "static"
file = "{}"
watch_interval = "100ms"
"#,
            peers_file.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "-c"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "daemon never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let http = http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let json = |path: &'static str| {
        let get = get(path);
        async move { get.await.json::<serde_json::Value>().await.unwrap() }
    };

    let all = json("/v1/peers").await;
    assert_eq!(all["peers"].as_array().unwrap().len(), 3, "{all:#}");
    let version = all["version"].as_u64().unwrap();
    let ids = |v: &serde_json::Value| {
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&json("/v1/peers?capability=go_development").await),
        ["a"]
    );
    assert_eq!(ids(&json("/v1/peers?status=working").await), ["b"]);
    assert_eq!(ids(&json("/v1/peers?source=file").await), ["c"]);
    assert_eq!(ids(&json("/v1/peers?label=model=llama3.1:8b").await), ["a"]);
    assert_eq!(json("/v1/peers/b").await["id"], "b");
    assert_eq!(get("/v1/peers/nobody").await.status(), 404);
    assert_eq!(
        json("/v1/bootstrap").await,
        serde_json::json!(["/ip4/10.0.0.1/tcp/9000/p2p/12D3KooWA"])
    );
    let sd = json("/v1/sd/prometheus").await;
    assert_eq!(sd.as_array().unwrap().len(), 3);
    assert!(sd
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["targets"][0] == "10.0.0.1:9000" && g["labels"]["__meta_rollcall_id"] == "a"));
    let sources = json("/v1/sources").await;
    assert_eq!(sources.as_array().unwrap().len(), 2);
    assert!(
        sources
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["health"] == "ok" && s["synced"] == true),
        "{sources:#}"
    );
    assert_eq!(get("/healthz").await.status(), 200);
    let metrics = get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("rollcall_roster_peers 3"), "{metrics}");

    // Long-poll: blocks until the roster moves past `index`.
    let poll = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/v1/watch?index={version}&wait=20s");
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing changed yet");
    std::fs::write(
        &peers_file,
        "peers = [{ id = \"c\", addrs = [\"10.0.0.3:9000\"] }, { id = \"d\" }]\n",
    )
    .unwrap();
    let after = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .unwrap()
        .unwrap();
    assert!(after["version"].as_u64().unwrap() > version);
    assert!(ids(&after).contains(&"d".to_owned()));

    // Server-sent events: a snapshot first.
    let mut sse = get("/v1/watch").await;
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(5), sse.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.contains("event: snapshot") && text.contains("\"id\":\"d\""),
        "{text}"
    );
}
