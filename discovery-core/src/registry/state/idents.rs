//! A sighting's key and aliases as kept: one allocation, the key's text
//! shared with an alias of the same value (nats keys a sighting by its agent
//! id, mdns by its peer id, swarm by its task id). Kept as a `Box<str>` and
//! `Alias`es (32 bytes each and a `String` each), they were a fifth of the
//! registry's memory.

use crate::model::{match_value, Alias, AliasKind};

/// Longest alias value kept; a longer one is dropped (and counted) like
/// aliases over the per-observation limit. Ids are tens of bytes; host
/// names at most 253.
pub(super) const MAX_ALIAS_LEN: usize = 1024;
/// Longest key accepted; an observation with a longer one is dropped.
pub(super) const MAX_KEY_LEN: usize = 16 * 1024;

/// The header at the end of the text: per alias its kind (1 byte), where its
/// value starts (3 bytes) and its length (2 bytes), then the key's length (3
/// bytes) and the number of aliases (1 byte). Each byte holds 7 bits, so the
/// header is ASCII and the whole stays one `str`. The limits above keep
/// every offset within 21 bits and every length within 14.
const ALIAS_BYTES: usize = 6;
const TAIL_BYTES: usize = 4;
const _: () = assert!(MAX_KEY_LEN + 32 * MAX_ALIAS_LEN < 1 << 21);
const _: () = assert!(MAX_ALIAS_LEN < 1 << 14);
const _: () = assert!(AliasKind::ALL.len() < 128);

/// An alias borrowed from a sighting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AliasRef<'a> {
    pub(super) kind: AliasKind,
    pub(super) value: &'a str,
}

impl<'a> AliasRef<'a> {
    /// The value compared when matching (`Alias::match_value`).
    #[inline]
    pub(super) fn match_value(&self) -> &'a str {
        match_value(self.kind, self.value)
    }
    pub(super) fn to_alias(self) -> Alias {
        Alias::new(self.kind, self.value)
    }
    /// Whether it is `a`.
    pub(super) fn is(&self, a: &Alias) -> bool {
        self.kind == a.kind && self.value == a.value
    }
}

/// Key and aliases in one `str`: the key, then each alias value that is not
/// the key's, then the header (above). An alias with the key's value
/// points at the key's text.
#[derive(Debug)]
pub(super) struct Idents(Box<str>);

/// Whether `input[i]` is kept: not blank, not over the length limit, not a
/// repeat of an earlier one.
fn kept(input: &[Alias], i: usize) -> bool {
    let a = &input[i];
    a.value.len() <= MAX_ALIAS_LEN
        && !crate::model::trim(&a.value).is_empty()
        && !input[..i].contains(a)
}

/// Writes `v` into `out` in bytes of 7 bits, lowest first.
fn put(out: &mut [u8], mut v: usize) {
    for byte in out {
        *byte = (v & 0x7f) as u8;
        v >>= 7;
    }
}

/// Reads what `put` wrote into 3 bytes (offsets) or 2 (lengths).
#[inline]
fn get3(b: &[u8; 3]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 7 | usize::from(b[2]) << 14
}
#[inline]
fn get2(b: &[u8; 2]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 7
}

#[inline]
fn decode<'a>(text: &'a str, e: &[u8; ALIAS_BYTES]) -> AliasRef<'a> {
    let kind = AliasKind::ALL
        .get(usize::from(e[0]))
        .copied()
        .unwrap_or(AliasKind::Hostname);
    let start = get3(&[e[1], e[2], e[3]]);
    let len = get2(&[e[4], e[5]]);
    AliasRef {
        kind,
        value: text.get(start..start + len).unwrap_or_default(),
    }
}

impl Idents {
    /// The key (at most `MAX_KEY_LEN`) and the aliases kept of `aliases`
    /// (at most 32).
    pub(super) fn new(key: &str, aliases: &[Alias]) -> Self {
        let mut header = [0u8; 32 * ALIAS_BYTES + TAIL_BYTES];
        let mut at = 0;
        let mut values = 0;
        // Whether each alias's value follows the key's (bit i: alias i).
        let mut own_text = 0u32;
        // First the header, with where each value will be.
        for (i, a) in aliases.iter().enumerate().take(32) {
            if !kept(aliases, i) {
                continue;
            }
            let (start, len) = if a.value == key {
                (0, key.len())
            } else {
                own_text |= 1 << i;
                values += a.value.len();
                (key.len() + values - a.value.len(), a.value.len())
            };
            let entry = &mut header[at..at + ALIAS_BYTES];
            entry[0] = super::kind_index(a.kind) as u8;
            put(&mut entry[1..4], start);
            put(&mut entry[4..6], len);
            at += ALIAS_BYTES;
        }
        put(&mut header[at..at + 3], key.len());
        header[at + 3] = (at / ALIAS_BYTES) as u8;
        let header = &header[..at + TAIL_BYTES];
        let mut text = String::with_capacity(key.len() + values + header.len());
        text.push_str(key);
        for (i, a) in aliases.iter().enumerate().take(32) {
            if own_text & 1 << i != 0 {
                text.push_str(&a.value);
            }
        }
        // Bytes below 0x80: always valid.
        text.push_str(std::str::from_utf8(header).unwrap_or_default());
        Idents(text.into_boxed_str())
    }

    /// The header's alias entries and the key's length.
    #[inline]
    fn header(&self) -> (&[u8], usize) {
        let Some((rest, tail)) = self.0.as_bytes().split_last_chunk::<TAIL_BYTES>() else {
            return (&[], 0);
        };
        let key_len = get3(&[tail[0], tail[1], tail[2]]);
        let entries = rest.len().saturating_sub(usize::from(tail[3]) * ALIAS_BYTES);
        (&rest[entries..], key_len)
    }

    #[inline]
    pub(super) fn key(&self) -> &str {
        let (_, key_len) = self.header();
        self.0.get(..key_len).unwrap_or_default()
    }

    /// The same key with other aliases.
    pub(super) fn with_aliases(&self, aliases: &[Alias]) -> Self {
        Idents::new(self.key(), aliases)
    }

    #[inline]
    pub(super) fn aliases(&self) -> Aliases<'_> {
        Aliases {
            text: &self.0,
            entries: self.header().0,
        }
    }

    /// The alias at position `at`.
    #[inline]
    pub(super) fn alias(&self, at: usize) -> Option<AliasRef<'_>> {
        let entry = self.header().0.get(at * ALIAS_BYTES..)?.first_chunk()?;
        Some(decode(&self.0, entry))
    }

    /// Whether `Idents::new(key, input)` would keep exactly these aliases.
    pub(super) fn same_aliases_as(&self, input: &[Alias]) -> bool {
        let mut stored = self.aliases();
        (0..input.len())
            .filter(|&i| kept(input, i))
            .all(|i| stored.next().is_some_and(|s| s.is(&input[i])))
            && stored.next().is_none()
    }
}

/// The aliases of `Idents`, in the source's order.
pub(super) struct Aliases<'a> {
    text: &'a str,
    /// The header entries not yet read.
    entries: &'a [u8],
}

impl<'a> Iterator for Aliases<'a> {
    type Item = AliasRef<'a>;

    // Inlined: every rule walks a sighting's aliases, several times a merge.
    #[inline]
    fn next(&mut self) -> Option<AliasRef<'a>> {
        let (entry, rest) = self.entries.split_first_chunk::<ALIAS_BYTES>()?;
        self.entries = rest;
        Some(decode(self.text, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(i: &Idents) -> Vec<Alias> {
        i.aliases().map(AliasRef::to_alias).collect()
    }

    #[test]
    fn keeps_key_and_aliases_sharing_the_key_text() {
        let aliases = vec![
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::ContainerId, "c12c12c12c12"),
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::Hostname, "  "),
            Alias::peer_id("12D3KooWx"),
            Alias::new(AliasKind::TaskId, "agent-7"),
        ];
        let i = Idents::new("agent-7", &aliases);
        assert_eq!(i.key(), "agent-7");
        let want = vec![
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::ContainerId, "c12c12c12c12"),
            Alias::peer_id("12D3KooWx"),
            Alias::new(AliasKind::TaskId, "agent-7"),
        ];
        assert_eq!(owned(&i), want);
        // The key's text is held once: the repeats point at it.
        assert!(i.0.starts_with("agent-7c12c12c12c1212D3KooWx\u{0}"), "{:?}", i.0);
        assert_eq!(i.0.len(), 28 + 4 * ALIAS_BYTES + TAIL_BYTES);
        assert_eq!(i.alias(2).map(|a| a.value), Some("12D3KooWx"));
        assert_eq!(i.alias(4), None);
        assert!(i.same_aliases_as(&aliases));
        assert!(i.same_aliases_as(&want));
        assert!(!i.same_aliases_as(&want[..3]));
        assert!(!i.same_aliases_as(&[]));
        let renamed = i.with_aliases(&[Alias::peer_id("p")]);
        assert_eq!(renamed.key(), "agent-7");
        assert_eq!(owned(&renamed), vec![Alias::peer_id("p")]);
    }

    #[test]
    fn an_empty_key_and_no_aliases_and_overlong_values() {
        let long = Alias::agent_id("x".repeat(MAX_ALIAS_LEN + 1));
        let i = Idents::new("", &[Alias::agent_id(""), long.clone()]);
        assert_eq!(i.key(), "");
        assert_eq!(i.aliases().count(), 0);
        assert!(i.same_aliases_as(&[long]));
        let j = Idents::new("", &[Alias::new(AliasKind::Hostname, "h")]);
        assert_eq!(owned(&j), vec![Alias::new(AliasKind::Hostname, "h")]);
        for kind in AliasKind::ALL {
            let k = Idents::new("k", &[Alias::new(kind, "k"), Alias::new(kind, "v")]);
            assert_eq!(
                owned(&k),
                vec![Alias::new(kind, "k"), Alias::new(kind, "v")],
                "{kind:?}"
            );
        }
    }
}
