//! The NATS record decoder: subject token + payload, as a discoverer gets them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: the subject token; the rest: the payload.
    let (token, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"a"[..], data),
    };
    let token = String::from_utf8_lossy(token);
    backend_nats::fuzz::record(&token, payload);
});
