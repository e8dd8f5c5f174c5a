//! `mode = "dns"` against a small real DNS server on 127.0.0.1 that answers
//! like Docker's embedded DNS does for many replicas: a UDP answer truncated
//! (TC bit) and the full answer over TCP. No Docker needed. The test against
//! Docker's own embedded DNS is in tests/swarm.rs.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backend_swarm::{Config, Mode};
use discovery_core::Health;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// `tasks.<name>.` → these addresses; anything else → NXDOMAIN.
struct Zone {
    name: String,
    ips: Vec<Ipv4Addr>,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
}

impl Zone {
    fn answer(&self, query: &[u8], over_tcp: bool) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut resp = Message::response(q.metadata.id, q.metadata.op_code);
        resp.metadata.recursion_desired = q.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.add_queries(q.queries.clone());
        let question = &q.queries[0];
        let name = question.name().to_ascii().to_lowercase();
        if name != format!("tasks.{}.", self.name) {
            resp.metadata.response_code = ResponseCode::NXDomain;
            return resp.to_vec().unwrap();
        }
        if question.query_type() == RecordType::A {
            // Like Docker's resolver: over UDP only what fits 512 bytes, with TC set.
            let fit = if over_tcp {
                self.ips.len()
            } else {
                self.ips.len().min(20)
            };
            resp.metadata.truncation = fit < self.ips.len();
            for ip in &self.ips[..fit] {
                resp.add_answer(Record::from_rdata(
                    question.name().clone(),
                    600,
                    RData::A(A(*ip)),
                ));
            }
        }
        resp.to_vec().unwrap()
    }
}

/// Serves the zone on 127.0.0.1:PORT over UDP and TCP.
async fn serve(zone: Arc<Zone>) -> SocketAddr {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let z = zone.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                return;
            };
            z.udp_queries.fetch_add(1, Ordering::Relaxed);
            let _ = udp.send_to(&z.answer(&buf[..n], false), from).await;
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                return;
            };
            let z = zone.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    z.tcp_queries.fetch_add(1, Ordering::Relaxed);
                    let a = z.answer(&q, true);
                    let mut out = (a.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&a);
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn zone(n: u8) -> Arc<Zone> {
    Arc::new(Zone {
        name: "chorus".into(),
        ips: (1..=n).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect(),
        udp_queries: AtomicUsize::new(0),
        tcp_queries: AtomicUsize::new(0),
    })
}

fn dns_config(server: SocketAddr, services: &[&str]) -> Config {
    Config {
        mode: Mode::Dns,
        service: services.iter().map(|s| s.to_string()).collect(),
        dns_server: server.to_string(),
        port: Some(9000),
        resync: Duration::from_millis(300),
        debounce: Duration::from_millis(10),
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_truncated_udp_answer_is_retried_over_tcp() {
    let z = zone(40);
    let server = serve(z.clone()).await;
    let reg = common::start(dns_config(server, &["chorus"]));
    common::wait_for(&reg, Duration::from_secs(10), |r| r.peers.len() == 40)
        .await
        .unwrap_or_else(|r| panic!("saw {} of 40: {:?}", r.peers.len(), reg.sources()));
    let roster = reg.snapshot();
    let addrs: std::collections::BTreeSet<_> =
        roster.peers.iter().flat_map(|p| p.addrs.clone()).collect();
    assert_eq!(addrs.len(), 40);
    assert!(addrs.contains("/ip4/10.0.1.40/tcp/9000"));
    for p in &roster.peers {
        assert!(
            p.aliases.is_empty(),
            "an IP is not an identity: no alias is claimed ({p:?})"
        );
        assert_eq!(p.labels["swarm.service"], "chorus");
    }
    assert!(z.udp_queries.load(Ordering::Relaxed) >= 1);
    assert!(
        z.tcp_queries.load(Ordering::Relaxed) >= 1,
        "the truncated answer was retried over TCP"
    );
    reg.shutdown().await;
}

#[tokio::test]
async fn every_poll_asks_again_and_an_unknown_name_is_an_empty_healthy_answer() {
    let z = zone(3);
    let server = serve(z.clone()).await;
    let reg = common::start(dns_config(server, &["chorus", "nobody"]));
    common::wait_for(&reg, Duration::from_secs(10), |r| r.peers.len() == 3)
        .await
        .unwrap();
    let before = z.udp_queries.load(Ordering::Relaxed);
    // Docker answers with TTL 600: a cached answer would never see a scale-up.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        z.udp_queries.load(Ordering::Relaxed) >= before + 4,
        "polled every resync despite the 600 s TTL"
    );
    let st = reg.sources().remove(0);
    assert_eq!(st.health, Health::Ok, "{st:?}");
    reg.shutdown().await;
}

#[tokio::test]
async fn no_dns_server_degrades_with_a_hint() {
    // A UDP port nobody answers on.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = sock.local_addr().unwrap();
    drop(sock);
    let reg = common::start(dns_config(server, &["chorus"]));
    assert!(reg.wait_first_sync(Duration::from_secs(15)).await);
    let st = reg.sources().remove(0);
    assert_eq!(st.health, Health::Degraded, "{st:?}");
    let reason = st.last_error.unwrap_or_default();
    assert!(reason.contains("DNS lookup of tasks.chorus."), "{reason}");
    reg.shutdown().await;
}
