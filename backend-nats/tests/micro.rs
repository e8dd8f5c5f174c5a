//! NATS micro (services API) interop against a real nats-server.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::service::ServiceExt;
use common::*;
use discovery_core::AliasKind;
use futures::StreamExt;

/// Services registered by someone else with async-nats' service API are
/// discovered as peers, with their metadata; a stopped one ages out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_micro_services_are_discovered_with_their_metadata() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let start_service = |n: usize| {
        let url = server.url();
        async move {
            let nc = async_nats::connect(url).await.unwrap();
            let md: HashMap<String, String> = [
                ("peer_id".to_owned(), format!("12D3KooWorders{n}")),
                ("addrs".to_owned(), format!("/ip4/10.2.0.{n}/tcp/8080")),
                ("region".to_owned(), "eu".to_owned()),
            ]
            .into();
            let svc = nc
                .service_builder()
                .description("order service")
                .metadata(md)
                .start("orders", "1.4.0")
                .await
                .unwrap();
            let endpoint = svc.endpoint("orders.get").await.unwrap();
            (nc, svc, endpoint)
        }
    };
    let first = start_service(1).await;
    // Another service name that nobody asked for.
    let other = async_nats::connect(server.url()).await.unwrap();
    let _other_svc = other
        .service_builder()
        .start("billing", "0.1.0")
        .await
        .unwrap();

    let mut cfg = config(&server.url());
    cfg.micro_services = vec!["orders".into()];
    cfg.micro_poll = Duration::from_millis(500);
    let disc = discoverer(cfg);
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let roster = disc.snapshot();
    assert_eq!(roster.peers.len(), 1, "{roster:?}");
    let p = &roster.peers[0];
    assert_eq!(p.alias(AliasKind::PeerId), Some("12D3KooWorders1"));
    assert_eq!(p.name.as_deref(), Some("orders"));
    assert_eq!(p.version.as_deref(), Some("1.4.0"));
    assert_eq!(p.addrs, vec!["/ip4/10.2.0.1/tcp/8080"]);
    assert_eq!(p.labels["region"], "eu");
    assert_eq!(p.labels["nats_micro_service"], "orders");

    let second = start_service(2).await;
    assert!(
        wait_peers(&disc, Duration::from_secs(5), |n| n == 2).await,
        "second instance not found by the next poll"
    );

    let (nc, svc, endpoint) = first;
    drop(endpoint);
    svc.stop().await.unwrap();
    drop(nc);
    assert!(
        wait_peers(&disc, Duration::from_secs(10), |n| n == 1).await,
        "a stopped instance must age out after 3 polls"
    );
    assert_eq!(
        disc.snapshot().peers[0].alias(AliasKind::PeerId),
        Some("12D3KooWorders2")
    );
    drop(second);
    disc.shutdown().await;
}

/// An agent with `micro = true` answers the services API; a discoverer that
/// lists the `rollcall` service merges that sighting with the announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_micro_answers_srv_ping_and_info() {
    init_tracing();
    let Some(server) = NatsServer::start() else {
        return;
    };
    let mut cfg = config(&server.url());
    cfg.micro = true;
    let a = agent(cfg.clone(), local(5));
    assert!(a.wait_first_sync(Duration::from_secs(10)).await);

    let nc = async_nats::connect(server.url()).await.unwrap();
    let mut ping = None;
    for _ in 0..50 {
        if let Ok(m) = nc.request("$SRV.PING.rollcall", "".into()).await {
            if m.status.is_none() {
                ping = Some(m);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ping: serde_json::Value =
        serde_json::from_slice(&ping.expect("no answer to $SRV.PING.rollcall").payload).unwrap();
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    assert_eq!(ping["name"], "rollcall");
    assert_eq!(ping["metadata"]["agent_id"], "agent-005");
    let embedded: serde_json::Value =
        serde_json::from_str(ping["metadata"]["rollcall"].as_str().unwrap()).unwrap();
    assert_eq!(embedded["id"], "agent-005");
    assert_eq!(embedded["version"], 1);

    // `$SRV.PING` (every service) reaches it too.
    let inbox = nc.new_inbox();
    let mut replies = nc.subscribe(inbox.clone()).await.unwrap();
    nc.publish_with_reply("$SRV.PING", inbox, "".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .unwrap()
        .unwrap();
    let any: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(any["name"], "rollcall");

    let info = nc.request("$SRV.INFO.rollcall", "".into()).await.unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert!(info["description"].as_str().unwrap().contains("agent-005"));

    // Discovered both ways, merged into one peer.
    let mut dcfg = config(&server.url());
    dcfg.micro_services = vec!["rollcall".into()];
    let disc = discoverer(dcfg);
    assert!(disc.wait_first_sync(Duration::from_secs(10)).await);
    let roster = disc.snapshot();
    assert_eq!(roster.peers.len(), 1, "{roster:?}");
    let p = &roster.peers[0];
    assert_eq!(p.id, "agent-005");
    assert_eq!(p.labels["nats_micro_service"], "rollcall");
    assert_eq!(p.alias(AliasKind::PeerId), Some("12D3KooWpeer005"));
    assert_eq!(
        disc.sources()[0].observations,
        2,
        "announcement + micro sighting"
    );

    disc.shutdown().await;
    a.shutdown().await;
}
