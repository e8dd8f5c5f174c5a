//! Bad input is a counted drop: the counters, read through a test recorder.
//! (Its own test binary: the recorder is process-global.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::*;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

#[derive(Default)]
struct Counts(Mutex<HashMap<String, Arc<Cell>>>);

#[derive(Default)]
struct Cell(AtomicU64);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::SeqCst);
    }
}

/// `name{label=value,...}` in the order the labels were given.
fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for &'static Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .0
            .lock()
            .expect("lock")
            .entry(render(key))
            .or_default()
            .clone();
        Counter::from_arc(cell)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn counts() -> &'static Counts {
    static COUNTS: OnceLock<&'static Counts> = OnceLock::new();
    COUNTS.get_or_init(|| {
        let c: &'static Counts = Box::leak(Box::default());
        metrics::set_global_recorder(c).expect("first recorder");
        c
    })
}

fn count(name: &str) -> u64 {
    counts()
        .0
        .lock()
        .expect("lock")
        .get(name)
        .map_or(0, |c| c.0.load(Ordering::SeqCst))
}

#[tokio::test]
async fn malformed_answers_bad_addresses_and_bad_files_are_counted() {
    counts();
    let body = Arc::new(Mutex::new(String::from("{oops")));
    let b = body.clone();
    let app = Router::new().route(
        "/health",
        get(move || {
            let b = b.clone();
            async move { b.lock().expect("lock").clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("peers.json");
    std::fs::write(&path, format!(r#"[{{"addrs": ["127.0.0.1:{port}"]}}]"#)).expect("write");

    let reg = start(config(&format!(
        r#"
        file = {path:?}
        watch_interval = "100ms"
        probe = {{ interval = "200ms", timeout = "1s", retries = 0 }}"#,
        path = path.display().to_string()
    )));
    assert!(reg.wait_first_sync(Duration::from_secs(10)).await);
    assert!(ids(&reg).is_empty());
    assert!(count("rollcall_static_probes_total{source=seeds,result=malformed}") >= 1);

    // A good answer with two invalid addresses: kept, the addresses dropped and counted.
    *body.lock().expect("lock") =
        r#"{"id": "x", "addrs": ["/ip4/10.0.0.1/tcp/1", "bad host:1", 42]}"#.to_owned();
    wait_for(&reg, "x appears", Duration::from_secs(10), |r| {
        ids(r) == ["x"]
    })
    .await;
    assert!(count("rollcall_static_addresses_dropped_total{source=seeds}") >= 2);
    assert!(count("rollcall_static_probes_total{source=seeds,result=ok}") >= 1);

    // A bad file version is a counted refused reload.
    std::fs::write(&path, "[{").expect("write");
    wait_for(&reg, "reload refused", Duration::from_secs(10), |_| {
        count("rollcall_static_reloads_total{source=seeds,result=error}") >= 1
    })
    .await;
    assert!(count("rollcall_static_reloads_total{source=seeds,result=ok}") >= 1);
    assert_eq!(ids(&reg), ["x"]);
    reg.shutdown().await;
}
