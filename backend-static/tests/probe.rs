//! The HTTP identity probe against real axum servers, real clock.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use common::dns_server::{DnsServer, Zone};
use common::*;
use discovery_core::{Alias, AliasKind};
use tokio::sync::oneshot;

const PID: &str = "12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs";
const PID2: &str = "12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE";
const WAIT: Duration = Duration::from_secs(15);
const PROBE: &str =
    r#"probe = { interval = "300ms", timeout = "500ms", retries = 2, backoff = "50ms" }"#;

/// A health server whose answer the test can change; stops on `stop`.
struct HealthServer {
    addr: SocketAddr,
    answer: Arc<Mutex<(StatusCode, String)>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    async fn start(bind: SocketAddr, body: String) -> HealthServer {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("bind health server");
        let addr = listener.local_addr().expect("addr");
        let answer = Arc::new(Mutex::new((StatusCode::OK, body)));
        let a = answer.clone();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = requests.clone();
        let app = Router::new().route(
            "/health",
            get(move || {
                let a = a.clone();
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let (status, body) = a.lock().expect("lock").clone();
                    (status, [("content-type", "application/json")], body)
                }
            }),
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        HealthServer {
            addr,
            answer,
            requests,
            stop: Some(tx),
            task,
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set(&self, status: StatusCode, body: &str) {
        *self.answer.lock().expect("lock") = (status, body.to_owned());
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

fn agent_json(id: &str) -> String {
    serde_json::json!({
        "id": id,
        "aliases": [
            {"kind": "agent_id", "value": id},
            {"kind": "peer_id", "value": PID},
            {"kind": "container_id", "value": "abcdef1234567890"},
        ],
        "peer_id": PID,
        "addrs": ["/ip4/10.0.1.7/tcp/9000"],
        "name": "Seven",
        "status": "idle",
        "capabilities": ["from_probe"],
        "labels": {"model": "llama3.1:8b"},
    })
    .to_string()
}

fn has_addr(reg: &discovery_core::Registry, id: &str, addr: &str) -> bool {
    peer(reg, id).addrs.iter().any(|a| a == addr)
}

#[tokio::test]
async fn probe_learns_identity_and_drops_dead_or_malformed_entries() {
    let server =
        HealthServer::start("127.0.0.1:0".parse().expect("addr"), agent_json("agent-7")).await;
    let port = server.addr.port();
    let reg = start(config(&format!(
        r#"
        {PROBE}
        peers = [{{ addrs = ["127.0.0.1:{port}"], capabilities = ["configured"] }}]"#
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    assert_eq!(ids(&reg), ["agent-7"]);
    assert!(is_ok(&reg), "{}", last_error(&reg));
    let p = peer(&reg, "agent-7");
    assert_eq!(p.alias(AliasKind::PeerId), Some(PID));
    assert!(
        p.aliases.contains(&Alias::container_id("abcdef1234567890")),
        "{:?}",
        p.aliases
    );
    assert!(has_addr(
        &reg,
        "agent-7",
        &format!("/ip4/127.0.0.1/tcp/{port}")
    ));
    assert!(has_addr(&reg, "agent-7", "/ip4/10.0.1.7/tcp/9000"));
    // Fields the entry sets win; the probe fills the rest.
    assert_eq!(p.capabilities, ["configured"]);
    assert_eq!(p.status.as_deref(), Some("idle"));
    assert_eq!(p.name.as_deref(), Some("Seven"));
    assert_eq!(
        p.labels.get("model").map(String::as_str),
        Some("llama3.1:8b")
    );

    // Malformed answers: the entry leaves (counted drop), nothing panics.
    server.set(StatusCode::OK, "{\"id\": \"agent-7\", oops");
    wait_for(&reg, "malformed entry left", WAIT, |r| ids(r).is_empty()).await;
    assert!(is_degraded(&reg));
    let reason = last_error(&reg);
    assert!(reason.starts_with("1 of 1 probes failing"), "{reason}");
    assert!(reason.contains("malformed"), "{reason}");

    // Healthy again.
    server.set(StatusCode::OK, &agent_json("agent-7"));
    wait_for(&reg, "entry back", WAIT, |r| {
        is_ok(r) && ids(r) == ["agent-7"]
    })
    .await;

    // A 5xx is retried, then counts as failing.
    server.set(StatusCode::SERVICE_UNAVAILABLE, "");
    wait_for(&reg, "503 entry left", WAIT, |r| ids(r).is_empty()).await;
    assert!(
        last_error(&reg).contains("HTTP status 503"),
        "{}",
        last_error(&reg)
    );
    server.set(StatusCode::OK, &agent_json("agent-7"));
    wait_for(&reg, "entry back", WAIT, |r| {
        is_ok(r) && ids(r) == ["agent-7"]
    })
    .await;

    // The server stops: after the retries the entry leaves.
    server.stop().await;
    wait_for(&reg, "dead entry left", WAIT, |r| ids(r).is_empty()).await;
    assert!(is_degraded(&reg));
    let reason = last_error(&reg);
    assert!(
        reason.contains(&format!("http://127.0.0.1:{port}/health: unreachable")),
        "{reason}"
    );
    assert_eq!(status(&reg).restarts, 0);
    reg.shutdown().await;
}

/// The VIP problem: an address answers as another agent than configured.
#[tokio::test]
async fn an_answer_from_another_agent_is_not_taken() {
    let server =
        HealthServer::start("127.0.0.1:0".parse().expect("addr"), agent_json("agent-2")).await;
    let port = server.addr.port();
    let reg = start(config(&format!(
        r#"
        {PROBE}
        peers = [
          {{ id = "agent-1", addrs = ["127.0.0.1:{port}"] }},
          {{ id = "agent-2", addrs = ["127.0.0.1:{port}"], name = "Two" }},
        ]"#
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    assert_eq!(ids(&reg), ["agent-2"]);
    assert_eq!(peer(&reg, "agent-2").name.as_deref(), Some("Two"));
    assert_eq!(peer(&reg, "agent-2").alias(AliasKind::PeerId), Some(PID));
    let reason = last_error(&reg);
    assert!(is_degraded(&reg));
    assert!(reason.contains("1 of 2 probes failing"), "{reason}");
    assert!(
        reason.contains("answered as agent `agent-2`, expected `agent-1`"),
        "{reason}"
    );
    reg.shutdown().await;
    server.stop().await;
}

/// One name, several replicas (`tasks.<service>`): each answer is its own
/// peer; CHORUS-style health answers are understood.
#[tokio::test]
async fn one_name_many_replicas_each_with_its_identity() {
    let first = HealthServer::start("127.0.0.1:0".parse().expect("addr"), agent_json("r1")).await;
    let port = first.addr.port();
    let chorus = serde_json::json!({
        "peer_id": PID2,
        "multiaddrs": [format!("/ip4/127.0.0.2/tcp/9000/p2p/{PID2}")],
        "connected_peers": 3,
        "gossipsub_topics": ["CHORUS/coordination/v1"],
    })
    .to_string();
    let second =
        HealthServer::start(SocketAddr::new(IpAddr::from([127, 0, 0, 2]), port), chorus).await;
    let dns = DnsServer::start().await;
    dns.set(
        "replicas.rollcall.test",
        Zone::Records(vec![
            "127.0.0.1".parse().expect("ip"),
            "127.0.0.2".parse().expect("ip"),
        ]),
    );
    let reg = start(config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{dns}"]
        probe = {{ port = {port}, interval = "300ms", timeout = "500ms", retries = 1, backoff = "50ms" }}
        peers = [{{ addrs = ["replicas.rollcall.test:9000"] }}]"#,
        dns = dns.port()
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    assert!(is_ok(&reg), "{}", last_error(&reg));
    let mut want = vec!["r1".to_owned(), PID2.to_owned()];
    want.sort();
    assert_eq!(ids(&reg), want);
    assert!(has_addr(&reg, "r1", "/ip4/127.0.0.1/tcp/9000"));
    assert!(!has_addr(&reg, "r1", "/ip4/127.0.0.2/tcp/9000"));
    assert!(has_addr(&reg, PID2, "/ip4/127.0.0.2/tcp/9000"));
    assert_eq!(peer(&reg, PID2).alias(AliasKind::PeerId), Some(PID2));

    // One replica goes away: only it leaves.
    second.stop().await;
    wait_for(&reg, "replica 2 left", WAIT, |r| ids(r) == ["r1"]).await;
    assert!(
        last_error(&reg).contains("1 of 2 probes failing"),
        "{}",
        last_error(&reg)
    );
    reg.shutdown().await;
    first.stop().await;
}

/// Failures that may pass are retried `retries` times with doubling backoff;
/// a malformed answer is not retried.
#[tokio::test]
async fn retries_with_backoff_only_when_it_may_help() {
    let server = HealthServer::start("127.0.0.1:0".parse().expect("addr"), String::new()).await;
    server.set(StatusCode::BAD_GATEWAY, "");
    let port = server.addr.port();
    let started = tokio::time::Instant::now();
    let reg = start(config(&format!(
        r#"
        probe = {{ interval = "1h", timeout = "2s", retries = 2, backoff = "100ms" }}
        peers = [{{ id = "a", addrs = ["127.0.0.1:{port}"] }}]"#
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    // 1 try + 2 retries, 100 ms then 200 ms apart.
    assert_eq!(server.requests(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(ids(&reg).is_empty());
    assert!(
        last_error(&reg).contains("HTTP status 502"),
        "{}",
        last_error(&reg)
    );
    reg.shutdown().await;

    server.set(StatusCode::OK, "not json");
    let reg = start(config(&format!(
        r#"
        probe = {{ interval = "1h", retries = 2 }}
        peers = [{{ id = "a", addrs = ["127.0.0.1:{port}"] }}]"#
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    assert_eq!(server.requests(), 4, "a malformed answer is not retried");
    assert!(
        last_error(&reg).contains("malformed answer: not JSON"),
        "{}",
        last_error(&reg)
    );
    reg.shutdown().await;
    server.stop().await;
}
