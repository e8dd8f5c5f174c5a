//! examples/swarm.toml is valid: every `type = "swarm"` section deserializes
//! (after the facade's common keys are stripped) and validates.
#![allow(clippy::unwrap_used)]

use backend_swarm::{Config, SwarmSource};

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/swarm.toml");
    let doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let sources = doc["sources"].as_table().unwrap();
    let mut n = 0;
    for (name, section) in sources {
        let mut t = section.as_table().unwrap().clone();
        if t.get("type").and_then(|v| v.as_str()) != Some("swarm") {
            continue;
        }
        for common in ["type", "priority", "role", "enabled", "max_staleness"] {
            t.remove(common);
        }
        let config: Config = t
            .try_into()
            .unwrap_or_else(|e| panic!("[sources.{name}]: {e}"));
        SwarmSource::new(config).unwrap_or_else(|e| panic!("[sources.{name}]: {e}"));
        n += 1;
    }
    assert_eq!(n, 3);
}
