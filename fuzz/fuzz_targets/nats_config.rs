//! `[sources.NAME]` of `type = "nats"`: TOML to Config, then validation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = toml::from_str::<backend_nats::Config>(src) {
        let _ = backend_nats::NatsSource::new(cfg);
    }
    let _ = toml::from_str::<discovery_core::RegistryConfig>(src);
});
