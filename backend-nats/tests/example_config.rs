//! examples/nats.toml's `[sources.nats]` section is a valid `Config`.

use backend_nats::{Config, NatsMode, NatsSource};
use serde::Deserialize;

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/nats.toml");
    let text = std::fs::read_to_string(path).expect("examples/nats.toml");
    let doc: toml::Value = toml::from_str(&text).expect("TOML");
    let mut section = doc["sources"]["nats"]
        .as_table()
        .expect("[sources.nats]")
        .clone();
    assert_eq!(
        section
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_owned))
            .as_deref(),
        Some("nats")
    );
    // The facade strips the keys every source accepts.
    for common in ["priority", "role", "enabled", "max_staleness"] {
        section.remove(common);
    }
    let cfg = Config::deserialize(toml::Value::Table(section)).expect("valid keys");
    assert_eq!(cfg.mode, NatsMode::Announce);
    assert_eq!(cfg.url, vec!["nats://127.0.0.1:4222"]);
    NatsSource::new(cfg).expect("valid values");
    assert!(doc["local"]["id"].as_str().is_some());
}
