//! Debian's real `prometheus` consumes `/v1/sd/prometheus` through an
//! `http_sd_configs` entry and lists the roster's agents in its own
//! `/api/v1/targets`, with the rollcall labels; one target is the daemon
//! itself, which Prometheus then scrapes (health "up"). (`/dns6/` hosts: the
//! unit test in src/api.rs; the static source resolves names before the API sees them.)

mod support;

use std::process::{Command, Stdio};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_the_agents_through_http_sd() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[registry]
exclude_addresses = []
[sources.seeds]
type = "static"
peers = [
  {{ id = "self", status = "idle", labels = {{ model = "llama3.1:8b" }}, addrs = ["/ip4/127.0.0.1/tcp/{port}"] }},
  {{ id = "walnut", addrs = ["/ip4/192.0.2.1/tcp/9000"] }},
]
"#
        ),
    )
    .unwrap();
    let mut procs = Killed(vec![daemon(&cfg, port, &dir.path().join("log"))]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(20, "the roster", || async {
        peer_ids(&http, &base).await.is_some_and(|v| v.len() == 2)
    })
    .await;

    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rollcall\n    http_sd_configs:\n      - url: {base}/v1/sd/prometheus\n        refresh_interval: 1s\n"
        ),
    )
    .unwrap();
    procs.0.push(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus missing: apt-get install prometheus"),
    );
    let targets_url = format!("http://127.0.0.1:{prom_port}/api/v1/targets?state=any");
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let targets = loop {
        if let Ok(r) = http.get(&targets_url).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                let active = v["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let self_up = active.iter().any(|t| {
                    t["labels"]["instance"] == format!("127.0.0.1:{port}") && t["health"] == "up"
                });
                if active.len() == 2 && self_up {
                    break active;
                }
                last = v;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never listed the 2 agents with the daemon up: {last}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let mut instances: Vec<String> = targets
        .iter()
        .map(|t| t["labels"]["instance"].as_str().unwrap().to_owned())
        .collect();
    instances.sort();
    assert_eq!(
        instances,
        [format!("127.0.0.1:{port}").as_str(), "192.0.2.1:9000"]
    );
    let me = targets
        .iter()
        .find(|t| t["labels"]["instance"] == format!("127.0.0.1:{port}"))
        .unwrap();
    assert_eq!(me["discoveredLabels"]["__meta_rollcall_id"], "self");
    assert_eq!(me["discoveredLabels"]["__meta_rollcall_status"], "idle");
    assert_eq!(
        me["discoveredLabels"]["__meta_rollcall_label_model"],
        "llama3.1:8b"
    );
    assert_eq!(me["discoveredLabels"]["__meta_rollcall_sources"], "seeds");
}
