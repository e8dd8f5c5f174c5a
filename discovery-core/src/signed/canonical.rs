//! The bytes that are signed: a domain tag, then each field as a 4-byte
//! big-endian length and its bytes. Numbers are 8-byte big-endian; an
//! optional string is a presence byte (0 or 1) then the string; a list is its
//! count (as a number) then its items. No field can be mistaken for another,
//! and a signature made for one backend's domain is worthless in another's.

/// Builder of canonical bytes. See the module documentation for the format.
#[derive(Clone, Debug)]
pub struct Canonical(Vec<u8>);

/// First bytes of every canonical encoding.
const MAGIC: &[u8] = b"rollcall-signed-v1\0";

impl Canonical {
    /// Starts an encoding for `domain` (e.g. `rollcall/nats/v1`).
    pub fn new(domain: &str) -> Self {
        let mut c = Canonical(Vec::with_capacity(256));
        c.0.extend_from_slice(MAGIC);
        c.bytes(domain.as_bytes())
    }

    /// Appends raw bytes (length-prefixed).
    pub fn bytes(mut self, b: &[u8]) -> Self {
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(&b[..len as usize]);
        self
    }

    /// Appends a string.
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    /// Appends a number.
    pub fn u64(self, n: u64) -> Self {
        self.bytes(&n.to_be_bytes())
    }

    /// Appends an optional string.
    pub fn opt(self, s: Option<&str>) -> Self {
        match s {
            None => self.bytes(&[0]),
            Some(s) => self.bytes(&[1]).str(s),
        }
    }

    /// Appends a list of strings.
    pub fn strs<'a>(self, items: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let mut c = self.u64(items.len() as u64);
        for s in items {
            c = c.str(s);
        }
        c
    }

    /// Appends metadata: name, status, capabilities, version, then the
    /// labels as a count and key, value pairs (sorted, as a `BTreeMap` is).
    pub fn metadata(self, m: &crate::Metadata) -> Self {
        let mut c = self
            .opt(m.name.as_deref())
            .opt(m.status.as_deref())
            .strs(m.capabilities.iter().map(String::as_str))
            .opt(m.version.as_deref())
            .u64(m.labels.len() as u64);
        for (k, v) in &m.labels {
            c = c.str(k).str(v);
        }
        c
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_be_shifted() {
        let a = Canonical::new("d").str("ab").str("c").finish();
        let b = Canonical::new("d").str("a").str("bc").finish();
        assert_ne!(a, b);
        assert_ne!(Canonical::new("d1").finish(), Canonical::new("d2").finish());
        assert_ne!(
            Canonical::new("d").opt(None).finish(),
            Canonical::new("d").opt(Some("")).finish()
        );
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let got = Canonical::new("x").u64(1).opt(Some("h")).finish();
        let mut want = b"rollcall-signed-v1\0".to_vec();
        want.extend([0, 0, 0, 1, b'x']);
        want.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend([0, 0, 0, 1, 1, 0, 0, 0, 1, b'h']);
        assert_eq!(got, want);
    }
}
