//! Clear errors, not silence: a port held by a socket without reuse, and no
//! usable interface, mark the source degraded with a message saying what to do.

use std::time::Duration;

use backend_mdns::{Config, MdnsSource};
use discovery_core::{Health, RegistryBuilder, RegistryConfig, SourceOptions};

async fn error_of(cfg: Config) -> String {
    let reg = RegistryBuilder::new(RegistryConfig::default())
        .source(
            "lan",
            SourceOptions::default(),
            MdnsSource::new(cfg).unwrap(),
        )
        .start()
        .unwrap();
    for _ in 0..100 {
        let s = reg.sources().remove(0);
        if s.health == Health::Degraded {
            reg.shutdown().await;
            return s.last_error.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the source never reported its failure");
}

#[tokio::test]
async fn no_multicast_interface_is_a_clear_error() {
    let e = error_of(Config {
        interfaces: vec!["mm-no-such-if".into()],
        ..Default::default()
    })
    .await;
    assert!(e.contains("no usable multicast interface"), "{e}");
}

#[tokio::test]
async fn a_port_held_without_reuse_is_a_clear_error() {
    // A plain socket (no SO_REUSEADDR/SO_REUSEPORT) on a free port.
    let holder = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let e = error_of(Config {
        interfaces: vec!["lo".into()],
        allow_loopback: true,
        port,
        ..Default::default()
    })
    .await;
    assert!(
        e.contains(&format!("cannot bind UDP 0.0.0.0:{port}")),
        "{e}"
    );
}

#[test]
fn bad_config_values_are_refused() {
    let bad = |c: Config| MdnsSource::new(c).unwrap_err().to_string();
    assert!(bad(Config {
        service_name: Some("_p2p._udp".into()),
        ..Default::default()
    })
    .contains("must end in `.local`"));
    assert!(bad(Config {
        max_packet_size: 9000,
        ..Default::default()
    })
    .contains("max_packet_size"));
    assert!(bad(Config {
        flavour: backend_mdns::Flavour::DnsSd,
        service_name: Some("CHORUS-peer-discovery.local".into()),
        ..Default::default()
    })
    .contains("_name._tcp.local"));
    let unknown: Result<Config, _> = toml::from_str("typo = 1");
    assert!(unknown.is_err(), "unknown keys are refused");
    let c: Config = toml::from_str("flavour = \"dns-sd\"\nttl = \"10s\"").unwrap();
    assert_eq!(c.ttl, Duration::from_secs(10));
}
