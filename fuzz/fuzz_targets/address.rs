//! Address parsing: multiaddrs, ip:port, host:port, URLs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(a) = discovery_core::parse_addr(s) {
            // What was parsed prints and parses back to the same address.
            let again = discovery_core::parse_addr(&a.to_string());
            assert_eq!(again.as_ref().ok(), Some(&a), "{s:?} -> {a}");
        }
    }
});
