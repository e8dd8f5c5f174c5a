//! DNS names against a real (tiny) DNS server on 127.0.0.1, real clock.

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::dns_server::{DnsServer, Zone};
use common::*;

const PID: &str = "12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs";
const WAIT: Duration = Duration::from_secs(10);

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("ip")).collect()
}

fn sorted_addrs(reg: &discovery_core::Registry, id: &str) -> Vec<String> {
    let mut v = peer(reg, id).addrs.clone();
    v.sort();
    v
}

#[tokio::test]
async fn every_answer_becomes_an_address_and_is_refreshed() {
    let dns = DnsServer::start().await;
    dns.set(
        "svc.rollcall.test",
        Zone::Records(ips(&["10.9.0.1", "10.9.0.2", "10.9.0.3", "fd00::9"])),
    );
    let reg = start(config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{port}"]
        dns_refresh = "200ms"
        peers = [{{ id = "svc", addrs = ["svc.rollcall.test:9000", "/dns4/svc.rollcall.test/tcp/9001/p2p/{PID}", "10.0.0.1:9000"] }}]"#,
        port = dns.port()
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    let mut want = vec![
        "/ip4/10.0.0.1/tcp/9000".to_owned(),
        "/ip4/10.9.0.1/tcp/9000".to_owned(),
        "/ip4/10.9.0.2/tcp/9000".to_owned(),
        "/ip4/10.9.0.3/tcp/9000".to_owned(),
        "/ip6/fd00::9/tcp/9000".to_owned(),
        format!("/ip4/10.9.0.1/tcp/9001/p2p/{PID}"),
        format!("/ip4/10.9.0.2/tcp/9001/p2p/{PID}"),
        format!("/ip4/10.9.0.3/tcp/9001/p2p/{PID}"),
    ];
    want.sort();
    assert_eq!(sorted_addrs(&reg, "svc"), want);
    assert!(is_ok(&reg));

    // The records change: the next refresh follows.
    dns.set("svc.rollcall.test", Zone::Records(ips(&["10.9.0.4"])));
    wait_for(&reg, "re-resolved", WAIT, |r| {
        sorted_addrs(r, "svc")
            == [
                "/ip4/10.0.0.1/tcp/9000".to_owned(),
                "/ip4/10.9.0.4/tcp/9000".to_owned(),
                format!("/ip4/10.9.0.4/tcp/9001/p2p/{PID}"),
            ]
    })
    .await;

    // The server fails: the previous answer is kept, the source is degraded, naming the name.
    dns.set("svc.rollcall.test", Zone::ServFail);
    wait_for(&reg, "degraded", WAIT, is_degraded).await;
    assert!(
        last_error(&reg).contains("svc.rollcall.test"),
        "{}",
        last_error(&reg)
    );
    assert!(
        last_error(&reg).contains("keeping its previous 1 addresses"),
        "{}",
        last_error(&reg)
    );
    assert_eq!(sorted_addrs(&reg, "svc").len(), 3);

    dns.set("svc.rollcall.test", Zone::Records(ips(&["10.9.0.5"])));
    wait_for(&reg, "recovered", WAIT, |r| {
        is_ok(r) && sorted_addrs(r, "svc").contains(&"/ip4/10.9.0.5/tcp/9000".to_owned())
    })
    .await;
    reg.shutdown().await;
}

#[tokio::test]
async fn truncated_udp_answer_falls_back_to_tcp() {
    let dns = DnsServer::start().await;
    let all = ["10.9.1.1", "10.9.1.2", "10.9.1.3", "10.9.1.4", "10.9.1.5"];
    dns.set("big.rollcall.test", Zone::TruncatedOverUdp(ips(&all)));
    let reg = start(config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{port}"]
        peers = [{{ id = "big", addrs = ["/dns4/big.rollcall.test/tcp/9000"] }}]"#,
        port = dns.port()
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    let want: Vec<String> = all.iter().map(|ip| format!("/ip4/{ip}/tcp/9000")).collect();
    assert_eq!(sorted_addrs(&reg, "big"), want);
    assert!(is_ok(&reg), "{}", last_error(&reg));
    assert!(dns.udp_queries.load(Ordering::SeqCst) >= 1);
    assert!(
        dns.tcp_queries.load(Ordering::SeqCst) >= 1,
        "the full answer came over TCP"
    );
    reg.shutdown().await;
}

#[tokio::test]
async fn a_name_that_never_resolves_degrades_the_source() {
    let dns = DnsServer::start().await;
    dns.set("ok.rollcall.test", Zone::Records(ips(&["10.9.2.1"])));
    let reg = start(config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{port}"]
        peers = [{{ id = "ok", addrs = ["ok.rollcall.test:1"] }}, {{ id = "ghost", addrs = ["ghost.rollcall.test:1", "/dns6/ok.rollcall.test/tcp/2"] }}]"#,
        port = dns.port()
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    wait_for(&reg, "degraded", WAIT, is_degraded).await;
    let reason = last_error(&reg);
    assert!(
        reason.contains("DNS name `ghost.rollcall.test` does not resolve"),
        "{reason}"
    );
    assert_eq!(peer(&reg, "ok").addrs, ["/ip4/10.9.2.1/tcp/1"]);
    assert!(peer(&reg, "ghost").addrs.is_empty());
    reg.shutdown().await;
}

/// The system resolver (no `dns_servers`): `localhost` comes from /etc/hosts.
#[tokio::test]
async fn system_resolver_resolves_localhost() {
    let reg = start(config(
        r#"peers = [{ id = "me", addrs = ["localhost:9000"] }]"#,
    ));
    assert!(reg.wait_first_sync(WAIT).await);
    let addrs = peer(&reg, "me").addrs.clone();
    assert!(
        addrs.contains(&"/ip4/127.0.0.1/tcp/9000".to_owned()),
        "{addrs:?}"
    );
    assert!(is_ok(&reg), "{}", last_error(&reg));
    reg.shutdown().await;
}

/// Names that a reloaded file brings are resolved at once, not at the next refresh.
#[tokio::test]
async fn names_in_a_reloaded_file_are_resolved_at_once() {
    let dns = DnsServer::start().await;
    dns.set("one.rollcall.test", Zone::Records(ips(&["10.9.3.1"])));
    dns.set(
        "two.rollcall.test",
        Zone::Records(ips(&["10.9.3.2", "10.9.3.3"])),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("peers.toml");
    std::fs::write(
        &path,
        r#"peers = [{ id = "one", addrs = ["one.rollcall.test:9000"] }]"#,
    )
    .expect("write");
    let reg = start(config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{port}"]
        dns_refresh = "1h"
        watch_interval = "100ms"
        file = {path:?}"#,
        port = dns.port(),
        path = path.display().to_string()
    )));
    assert!(reg.wait_first_sync(WAIT).await);
    assert_eq!(peer(&reg, "one").addrs, ["/ip4/10.9.3.1/tcp/9000"]);
    std::fs::write(
        &path,
        r#"peers = [{ id = "one", addrs = ["one.rollcall.test:9000"] }, { id = "two", addrs = ["two.rollcall.test:9000"] }]"#,
    )
    .expect("write");
    wait_for(&reg, "two resolved", WAIT, |r| {
        r.peer("two").is_some_and(|p| p.addrs.len() == 2)
    })
    .await;
    assert_eq!(
        sorted_addrs(&reg, "two"),
        ["/ip4/10.9.3.2/tcp/9000", "/ip4/10.9.3.3/tcp/9000"]
    );
    assert!(is_ok(&reg), "{}", last_error(&reg));
    reg.shutdown().await;
}

/// Issue 8, finding 3, as it was reported: a static primary re-resolving every
/// second with one name that does not resolve, and a static fallback. Each
/// refresh used to report the source ok and then degraded, and the fallback
/// joined and left every time. Now the source stays degraded with what it
/// has (reported once), and the fallback, standing in, does not flap.
#[tokio::test]
async fn finding3_an_unresolvable_name_refreshed_every_second_flaps_nothing() {
    use discovery_core::{Health, RegistryBuilder, RegistryConfig, Role, SourceOptions};
    use discovery_core::{RosterEvent, WatchUpdate};

    let dns = DnsServer::start().await;
    dns.set("ok.rollcall.test", Zone::Records(ips(&["10.9.3.1"])));
    let primary = config(&format!(
        r#"
        dns_servers = ["127.0.0.1:{port}"]
        dns_refresh = "1s"
        peers = [{{ id = "ok", addrs = ["ok.rollcall.test:1"] }}, {{ id = "ghost", addrs = ["ghost.rollcall.test:1"] }}]"#,
        port = dns.port()
    ));
    let fallback = config(r#"peers = [{ id = "seed-walnut", addrs = ["10.9.9.9:9000"] }]"#);
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source(
            "inventory",
            SourceOptions {
                priority: 100,
                ..Default::default()
            },
            backend_static::StaticSource::new(primary).expect("valid config"),
        )
        .source(
            "seeds",
            SourceOptions {
                role: Role::Fallback,
                ..Default::default()
            },
            backend_static::StaticSource::new(fallback).expect("valid config"),
        )
        .start()
        .expect("registry starts");
    let mut watch = reg.watch();
    let health = |reg: &discovery_core::Registry| {
        reg.sources()
            .into_iter()
            .find(|s| s.name == "inventory")
            .map(|s| s.health)
    };
    // Four refreshes and a half; the source's health sampled every 20 ms.
    let end = tokio::time::Instant::now() + Duration::from_millis(4500);
    let mut healths: Vec<Health> = Vec::new();
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    loop {
        if let Some(h) = health(&reg) {
            if healths.last() != Some(&h) {
                healths.push(h);
            }
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            break;
        }
        let step = (end - now).min(Duration::from_millis(20));
        match tokio::time::timeout(step, watch.next()).await {
            Ok(Some(WatchUpdate::Event(RosterEvent::Joined { peer, .. }))) => {
                joined.push(peer.id.clone())
            }
            Ok(Some(WatchUpdate::Event(RosterEvent::Left { peer, .. }))) => {
                left.push(peer.id.clone())
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the watch ended"),
        }
    }
    assert_eq!(
        healths.last(),
        Some(&Health::Degraded),
        "the partly failed refresh is degraded: {healths:?}"
    );
    assert!(
        !healths.contains(&Health::Ok),
        "never ok-then-degraded per tick: {healths:?}"
    );
    assert!(left.is_empty(), "nobody left: {left:?}");
    assert!(
        joined.iter().filter(|id| *id == "seed-walnut").count() <= 1,
        "the fallback joined once at most: {joined:?}"
    );
    // What the primary could resolve is listed, and so is the fallback that
    // stands in while the primary is degraded.
    assert_eq!(
        ids(&reg),
        ["ghost", "ok", "seed-walnut"],
        "{:#?}",
        reg.snapshot()
    );
    reg.shutdown().await;
}
