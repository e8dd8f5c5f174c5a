//! A multiaddr's text, as `Multiaddr`'s `Display` writes it, without its cost:
//! `Display` formats every protocol into a `String` of its own first, which
//! was a fifth of the registry's time per new observation. The common parts
//! (`/ip4/`, `/tcp/`, `/udp/`) are written directly, the rest by each
//! protocol's own `Display`, so the text is the same for every address.

use std::fmt::Write;

use multiaddr::{Multiaddr, Protocol};

/// The text of `addr`, equal to `addr.to_string()`.
#[cfg(test)]
pub(crate) fn text(addr: &Multiaddr) -> String {
    let mut s = String::with_capacity(24);
    write_text(&mut s, addr);
    s
}

/// Appends the text of `addr` to `s` (a reused buffer: no allocation of its own).
pub(crate) fn write_text(s: &mut String, addr: &Multiaddr) {
    // The usual shapes, read from the bytes (code 4 = ip4, 6 = tcp) and
    // written through a stack buffer in one push.
    let mut buf = Digits::default();
    match *addr.as_ref() {
        [4, a, b, c, d, 6, hi, lo] => {
            buf.ipv4([a, b, c, d]);
            buf.text(b"/tcp/");
            buf.number(u16::from_be_bytes([hi, lo]));
            return buf.push_to(s);
        }
        [4, a, b, c, d] => {
            buf.ipv4([a, b, c, d]);
            return buf.push_to(s);
        }
        _ => {}
    }
    for p in addr.iter() {
        let mut buf = Digits::default();
        match p {
            Protocol::Ip4(ip) => buf.ipv4(ip.octets()),
            Protocol::Tcp(port) => {
                buf.text(b"/tcp/");
                buf.number(port);
            }
            Protocol::Udp(port) => {
                buf.text(b"/udp/");
                buf.number(port);
            }
            other => {
                let _ = write!(s, "{other}");
                continue;
            }
        }
        buf.push_to(s);
    }
}

/// Room for `/ip4/255.255.255.255/tcp/65535` (30 bytes).
#[derive(Default)]
struct Digits {
    bytes: [u8; 32],
    len: usize,
}

impl Digits {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }
    fn text(&mut self, t: &[u8]) {
        // Byte by byte: a few bytes each time, where a copy was a call.
        for &b in t {
            self.byte(b);
        }
    }
    fn number(&mut self, n: u16) {
        // Leading digits only when there are any; divisions by constants.
        let n = u32::from(n);
        for unit in [10_000, 1_000, 100, 10] {
            if n >= unit {
                self.byte(b'0' + (n / unit % 10) as u8);
            }
        }
        self.byte(b'0' + (n % 10) as u8);
    }
    fn ipv4(&mut self, octets: [u8; 4]) {
        self.text(b"/ip4/");
        for (i, o) in octets.into_iter().enumerate() {
            if i > 0 {
                self.text(b".");
            }
            self.number(u16::from(o));
        }
    }
    fn push_to(&self, s: &mut String) {
        // ASCII only: always valid UTF-8.
        s.push_str(std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn the_text_is_what_display_writes() {
        let fixed = [
            "/ip4/10.0.0.7/tcp/9000",
            "/ip4/0.0.0.0/tcp/0",
            "/ip4/10.0.0.7",
            "/ip4/10.0.0.7/tcp/80/http",
            "/ip4/255.255.255.255/udp/65535",
            "/ip6/fe80::1/tcp/4001",
            "/ip6zone/eth0/ip6/fe80::1/tcp/4001",
            "/dns/agent-7/tcp/8081",
            "/dns4/example.com/tcp/443/tls/http",
            "/ip4/192.0.2.1/udp/4001/quic-v1",
            "/ip4/10.1.2.3/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "/unix/tmp%2Fsock",
        ];
        for t in fixed {
            let a: Multiaddr = t.parse().unwrap();
            assert_eq!(text(&a), a.to_string(), "{t}");
        }
        // Every octet and a spread of ports.
        for n in 0..=255u16 {
            let ip = Ipv4Addr::new(n as u8, (255 - n) as u8, (n * 7 % 256) as u8, 1);
            let port = n.wrapping_mul(257);
            assert_eq!(text(&Multiaddr::from(ip)), Multiaddr::from(ip).to_string());
            for p in [Protocol::Tcp(port), Protocol::Udp(port)] {
                let a = Multiaddr::from(ip).with(p);
                assert_eq!(text(&a), a.to_string());
            }
        }
    }
}
