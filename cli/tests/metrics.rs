//! `/metrics` of `rollcall run` follows the documented names: per source
//! observations, updates, errors, health, sync times; roster peers, joins,
//! leaves; watchers. Scraped from the real daemon with two static sources,
//! one of them failing (its file is missing).

mod support;

use support::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_documented_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[registry]
exclude_addresses = []
[sources.seeds]
type = "static"
peers = [{{ id = "walnut", addrs = ["/ip4/10.0.0.1/tcp/9000"] }}, {{ id = "hazel", addrs = ["/ip4/10.0.0.2/tcp/9000"] }}]
[sources.broken]
type = "static"
file = "{}/missing.toml"
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _d = Killed(vec![daemon(&cfg, port, &dir.path().join("log"))]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually(20, "both peers", || async {
        peer_ids(&http, &base).await.is_some_and(|v| v.len() == 2)
    })
    .await;
    // A watcher open while we scrape.
    let _watch = http.get(format!("{base}/v1/watch")).send().await.unwrap();
    let scrape = || async {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually(10, "the broken source reported", || async {
        value(
            &scrape().await,
            "rollcall_source_errors_total{source=\"broken\"}",
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    let text = scrape().await;
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(v("rollcall_roster_peers"), 2.0);
    assert_eq!(v("rollcall_roster_joins_total"), 2.0);
    assert_eq!(v("rollcall_source_observations{source=\"seeds\"}"), 2.0);
    assert_eq!(v("rollcall_source_healthy{source=\"seeds\"}"), 1.0);
    assert_eq!(v("rollcall_source_healthy{source=\"broken\"}"), 0.0);
    assert_eq!(v("rollcall_source_synced{source=\"seeds\"}"), 1.0);
    assert!(v("rollcall_source_updates_total{source=\"seeds\"}") >= 1.0);
    assert!(v("rollcall_source_last_sync_timestamp_seconds{source=\"seeds\"}") > 1.7e9);
    assert!(v("rollcall_source_first_sync_seconds{source=\"seeds\"}") >= 0.0);
    assert_eq!(v("rollcall_watchers"), 1.0);
    // Every series follows rollcall_<what>_<unit>.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(name.starts_with("rollcall_"), "{name}");
    }
}
