//! The `[sources.NAME]` keys: defaults, unknown keys, bad addresses.

use backend_dht::{BootstrapAddr, Config, DhtSource};

#[test]
fn defaults_and_humantime() {
    let c: Config =
        toml::from_str("bootstrap = [\"/ip4/10.0.0.1/tcp/4001\"]\nping_interval = \"250ms\"")
            .unwrap();
    assert_eq!(c.listen, vec!["/ip4/0.0.0.0/tcp/0".to_string()]);
    assert_eq!(c.namespace, "rollcall");
    assert_eq!(c.protocol, "/rollcall/kad/1.0.0");
    assert_eq!(c.observation_ttl(), std::time::Duration::from_millis(750));
    DhtSource::new(c).unwrap();
}

#[test]
fn unknown_keys_are_rejected() {
    let e = toml::from_str::<Config>("bootstrapp = []")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn bootstrap_with_and_without_peer_id() {
    let with = BootstrapAddr::parse(
        "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
    )
    .unwrap();
    assert!(with.peer.is_some());
    assert_eq!(with.addr.to_string(), "/ip4/10.0.0.1/tcp/4001");
    let without = BootstrapAddr::parse("/ip4/10.0.0.1/tcp/4001").unwrap();
    assert!(without.peer.is_none());
}

#[test]
fn bad_values_are_clear_errors() {
    for (toml, needle) in [
        ("bootstrap = [\"10.0.0.1:4001\"]", "not a multiaddr"),
        ("bootstrap = [\"/ip4/10.0.0.1/udp/4001\"]", "/tcp/PORT"),
        ("listen = [\"nope\"]", "listen"),
        ("shards = 0", "shards"),
        ("protocol = \"no-slash\"", "protocol"),
    ] {
        let c: Config = toml::from_str(toml).unwrap();
        let e = DhtSource::new(c).unwrap_err().to_string();
        assert!(e.contains(needle), "{toml}: {e}");
    }
}
