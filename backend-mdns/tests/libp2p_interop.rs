//! Interop with a real rust-libp2p node (`libp2p` 0.57, `mdns::tokio::Behaviour`):
//! two network namespaces on a bridge; in one a rust-libp2p node, in the other a
//! rollcall registry with an mdns source that announces. The rust-libp2p node
//! must discover rollcall's peer id, and rollcall must list the node's peer id.
//! The same over IPv6 alone (ff02::fb, no IPv4 address on the LAN), with the
//! node's `enable_ipv6` set: rust-libp2p then runs on IPv6 only.
//! Needs root (namespaces); `ROLLCALL_SKIP_NETNS=1` skips it, saying so.
//!
//! Each side is this test binary again, run inside its namespace
//! (`ip netns exec NS <exe> --exact child_entry`) with `MDNS_CHILD` set.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::{self, Lan, Proc};

fn child(ns: &str, role: &str, extra: &[(&str, String)]) -> Proc {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("MDNS_CHILD", role);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Proc::spawn(cmd)
}

fn peer_of(p: &mut Proc) -> String {
    let l = p
        .wait_for(Duration::from_secs(30), |l| l.starts_with("PEER "))
        .expect("child printed its peer id");
    l["PEER ".len()..].trim().to_owned()
}

#[test]
fn rust_libp2p_and_rollcall_find_each_other() {
    if std::env::var("MDNS_CHILD").is_ok() || netns::skip("rust-libp2p mdns interop") {
        return;
    }
    interop(false);
}

#[test]
fn rust_libp2p_and_rollcall_find_each_other_over_ipv6_only() {
    if std::env::var("MDNS_CHILD").is_ok() || netns::skip("rust-libp2p mdns IPv6 interop") {
        return;
    }
    interop(true);
}

fn interop(v6: bool) {
    let lan = Lan::with(2, !v6, v6);
    let dir = tempfile::tempdir().unwrap();
    let mut node = child(&lan.hosts[0].ns, if v6 { "libp2p6" } else { "libp2p" }, &[]);
    let addr = if v6 {
        format!("/ip6/{}/tcp/9000", lan.hosts[1].ip6)
    } else {
        format!("/ip4/{}/tcp/9000", lan.hosts[1].ip)
    };
    let mut rc = child(
        &lan.hosts[1].ns,
        "rollcall",
        &[
            ("MDNS_ADDR", addr.clone()),
            // Over IPv4 rollcall signs its packets (the signature rides in
            // rollcall's host TXT; rust-libp2p must not mind), over IPv6 not.
            ("MDNS_SIGN", if v6 { "0" } else { "1" }.into()),
            (
                "MDNS_KEY",
                dir.path().join("id.key").to_string_lossy().into_owned(),
            ),
        ],
    );
    let node_id = peer_of(&mut node);
    let rc_id = peer_of(&mut rc);
    assert_ne!(node_id, rc_id);
    let found = node.wait_for(Duration::from_secs(20), |l| {
        l.starts_with(&format!("DISCOVERED {rc_id} "))
    });
    assert!(
        found.is_some(),
        "rust-libp2p did not discover rollcall ({rc_id}); it saw {:?}",
        node.seen
    );
    // rust-libp2p dials what it found: the address rollcall announced on this LAN.
    let line = found.unwrap();
    assert!(line.contains(&format!("{addr}/p2p/{rc_id}")), "{line}");
    eprintln!("rust-libp2p: {line}");
    let fam = if v6 { "/ip6/" } else { "/ip4/" };
    let seen = rc.wait_for(Duration::from_secs(20), |l| {
        l.starts_with(&format!("FOUND {node_id} ")) && l.contains(fam)
    });
    assert!(
        seen.is_some(),
        "rollcall did not find the rust-libp2p node ({node_id}); it printed {:?}",
        rc.seen
    );
    eprintln!("rollcall: {}", seen.unwrap());
}

/// The two roles; does nothing unless run as a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_entry() {
    match std::env::var("MDNS_CHILD").as_deref() {
        Ok("libp2p") => libp2p_node(false).await,
        Ok("libp2p6") => libp2p_node(true).await,
        Ok("rollcall") => rollcall_node().await,
        _ => {}
    }
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Node {
    mdns: libp2p::mdns::tokio::Behaviour,
}

async fn libp2p_node(v6: bool) {
    use futures::StreamExt;
    use libp2p::{mdns, noise, swarm::SwarmEvent, tcp, yamux};
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            Ok(Node {
                mdns: mdns::tokio::Behaviour::new(
                    mdns::Config {
                        enable_ipv6: v6,
                        ..Default::default()
                    },
                    key.public().to_peer_id(),
                )?,
            })
        })
        .unwrap()
        .build();
    let any = if v6 {
        "/ip6/::/tcp/0"
    } else {
        "/ip4/0.0.0.0/tcp/0"
    };
    swarm.listen_on(any.parse().unwrap()).unwrap();
    println!("\nPEER {}", swarm.local_peer_id());
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(NodeEvent::Mdns(mdns::Event::Discovered(list))) = ev {
                    for (peer, addr) in list {
                        println!("DISCOVERED {peer} {addr}");
                    }
                }
            }
        }
    }
}

async fn rollcall_node() {
    use backend_mdns::{Config, MdnsSource};
    use discovery_core::{AliasKind, LocalPeer, RegistryBuilder, RegistryConfig, SourceOptions};
    let addr = std::env::var("MDNS_ADDR").unwrap();
    let key = std::env::var("MDNS_KEY").unwrap();
    let cfg = Config {
        interfaces: vec!["eth0".into()],
        signing: discovery_core::signed::SigningConfig {
            sign: std::env::var("MDNS_SIGN").as_deref() == Ok("1"),
            ..Default::default()
        },
        ..Default::default()
    };
    let local = LocalPeer {
        id: "rollcall-agent".into(),
        addrs: vec![addr.parse().unwrap()],
        ..Default::default()
    };
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .identity_file(&key)
        .source(
            "mdns",
            SourceOptions::default(),
            MdnsSource::new(cfg).unwrap(),
        )
        .announce(local)
        .start()
        .unwrap();
    let id = discovery_core::identity::load_or_create(std::path::Path::new(&key)).unwrap();
    println!("\nPEER {}", id.peer_id());
    for _ in 0..300 {
        for p in reg.snapshot().peers {
            if let Some(pid) = p.alias(AliasKind::PeerId) {
                let addrs: Vec<String> = p.addrs.iter().map(|a| a.to_string()).collect();
                println!("FOUND {pid} {}", addrs.join(" "));
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
