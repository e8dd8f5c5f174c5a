//! Connection problems become a degraded source with a message that says
//! what to do, and the source keeps retrying. No Docker needed.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use backend_swarm::{Config, Error, Mode, SwarmSource};
use discovery_core::Health;

async fn degraded_reason(config: Config) -> String {
    let reg = common::start(config);
    assert!(
        reg.wait_first_sync(Duration::from_secs(10)).await,
        "the first attempt ends"
    );
    let st = reg.sources().remove(0);
    assert_eq!(st.health, Health::Degraded, "{st:?}");
    assert!(!st.synced);
    reg.shutdown().await;
    st.last_error.unwrap_or_default()
}

#[tokio::test]
async fn a_missing_socket_says_so() {
    let r = degraded_reason(Config {
        service: vec!["x".into()],
        docker_host: Some("unix:///nonexistent/docker.sock".into()),
        ..Default::default()
    })
    .await;
    assert!(
        r.contains("no Docker socket at /nonexistent/docker.sock"),
        "{r}"
    );
    assert!(
        r.contains("docker_host") && r.contains("dns"),
        "says how to fix it: {r}"
    );
}

#[tokio::test]
async fn a_socket_nobody_listens_on_says_so() {
    let dir = std::env::temp_dir().join(common::unique("sock"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let r = degraded_reason(Config {
        mode: Mode::Containers,
        label: vec!["x".into()],
        docker_host: Some(format!("unix://{}", path.display())),
        ..Default::default()
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        r.contains("connection refused") && r.contains("dockerd"),
        "{r}"
    );
}

#[tokio::test]
async fn a_refused_tcp_endpoint_says_so() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = degraded_reason(Config {
        service: vec!["x".into()],
        docker_host: Some(format!("tcp://127.0.0.1:{port}")),
        ..Default::default()
    })
    .await;
    assert!(
        r.contains(&format!(
            "cannot reach the Docker daemon at tcp://127.0.0.1:{port}"
        )),
        "{r}"
    );
    assert!(r.to_lowercase().contains("refused"), "{r}");
}

#[tokio::test]
async fn unreadable_tls_files_say_which() {
    let r = degraded_reason(Config {
        service: vec!["x".into()],
        docker_host: Some("tcp://127.0.0.1:2376".into()),
        tls_ca: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    })
    .await;
    assert!(
        r.contains("TLS") && r.contains("cannot read tls_ca /nonexistent/ca.pem"),
        "{r}"
    );
}

#[test]
fn bad_config_is_refused_before_any_io() {
    let e = SwarmSource::new(Config::default()).unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(e.to_string().contains("`service` and/or `label`"), "{e}");
}
