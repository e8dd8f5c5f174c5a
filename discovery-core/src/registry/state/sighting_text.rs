//! A sighting's strings as kept: its key, aliases and addresses in one
//! allocation, the key's text shared with an alias of the same value (nats
//! keys a sighting by its agent id, mdns by its peer id, swarm by its task
//! id). Kept apart (a `Box<str>` key, `Alias`es of 32 bytes with a `String`
//! each, addresses of 24 bytes with a `Box<str>` each) they were a quarter of
//! the registry's memory and five allocations a sighting.

use smallvec::SmallVec;

use crate::model::{match_value, Alias, AliasKind};

/// Longest alias value kept; a longer one is dropped (and counted) like
/// aliases over the per-observation limit. Ids are tens of bytes; host
/// names at most 253.
pub(super) const MAX_ALIAS_LEN: usize = 1024;
/// Longest key accepted; an observation with a longer one is dropped.
pub(super) const MAX_KEY_LEN: usize = 16 * 1024;
/// Longest address text kept; a longer address is dropped (and counted).
pub(super) const MAX_ADDR_LEN: usize = 1024;
/// Most aliases and addresses kept (the per-observation limits).
pub(super) const MAX_ALIASES: usize = 32;
pub(super) const MAX_ADDRS: usize = 64;
/// Ranks beyond this (a preference list that long) count as this.
const MAX_RANK: usize = (1 << 14) - 1;

/// The header at the start of the text: the numbers of aliases and
/// addresses (1 byte each), the key's length and the length of the aliases'
/// own values (3 bytes each: where the addresses start); per alias its
/// kind, with `SHARED` when its value is the key's (1 byte), and its length
/// (2 bytes); per address its rank and length (2 bytes each). Then the key,
/// the aliases' own values and the addresses' texts, back to back. Each
/// header byte holds 7 bits, so the header is ASCII and the whole stays one
/// `str`; the limits above keep every length within 14 bits (the key's 21).
const HEAD_BYTES: usize = 8;
const ALIAS_BYTES: usize = 3;
const ADDR_BYTES: usize = 4;
const SHARED: u8 = 0x40;
const _: () = assert!(MAX_ALIAS_LEN < 1 << 14 && MAX_ADDR_LEN < 1 << 14 && MAX_KEY_LEN < 1 << 21);
const _: () = assert!(MAX_ALIASES * MAX_ALIAS_LEN < 1 << 21);
const _: () = assert!(MAX_ALIASES < 128 && MAX_ADDRS < 128 && AliasKind::ALL.len() <= 8);

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

impl<'a> From<&'a Alias> for AliasRef<'a> {
    fn from(a: &'a Alias) -> Self {
        AliasRef {
            kind: a.kind,
            value: &a.value,
        }
    }
}

/// An address kept by the policy: its text and its rank (preferred
/// networks first), both computed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct AddrRef<'a> {
    pub(super) rank: u32,
    pub(super) text: &'a str,
}

/// The addresses the policy kept of an observation, gathered before they
/// are stored: their texts back to back, with each one's rank and end. A
/// buffer the state reuses.
#[derive(Debug, Default)]
pub(super) struct KeptAddrs {
    text: String,
    entries: SmallVec<[(u32, u32); 4]>,
}

impl KeptAddrs {
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.entries.clear();
    }

    /// Keeps the address whose text `write` appends, unless it is a repeat
    /// of one kept already or longer than `MAX_ADDR_LEN`.
    pub(super) fn push_with(
        &mut self,
        rank: usize,
        write: impl FnOnce(&mut String),
    ) -> Result<(), Refused> {
        let start = self.text.len();
        write(&mut self.text);
        let text = &self.text[start..];
        let refused = if text.len() > MAX_ADDR_LEN {
            Some(Refused::TooLong)
        } else if self.iter().any(|k| k.text == text) {
            Some(Refused::Repeat)
        } else {
            None
        };
        if let Some(r) = refused {
            self.text.truncate(start);
            return Err(r);
        }
        self.entries
            .push((rank.min(MAX_RANK) as u32, self.text.len() as u32));
        Ok(())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = AddrRef<'_>> + Clone {
        let mut start = 0;
        self.entries.iter().map(move |&(rank, end)| {
            let text = self.text.get(start..end as usize).unwrap_or_default();
            start = end as usize;
            AddrRef { rank, text }
        })
    }
}

/// Why `KeptAddrs::push_with` left an address out.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Repeat,
    TooLong,
}

/// Key, aliases and addresses in one `str`: the header (above), then the
/// key, each alias value that is not the key's, and each address. An alias
/// with the key's value points at the key's text.
#[derive(Debug)]
pub(super) struct SightingText(Box<str>);

/// Whether `input[i]` is kept: not blank, not over the length limit, not a
/// repeat of an earlier one.
fn kept(input: &[Alias], i: usize) -> bool {
    let a = &input[i];
    a.value.len() <= MAX_ALIAS_LEN
        && !crate::model::trim(&a.value).is_empty()
        && !input[..i].contains(a)
}

/// The aliases kept of `input`.
fn clean(input: &[Alias]) -> impl Iterator<Item = AliasRef<'_>> + Clone {
    let mut mask = 0u64;
    for i in 0..input.len().min(MAX_ALIASES) {
        if kept(input, i) {
            mask |= 1 << i;
        }
    }
    input
        .iter()
        .enumerate()
        .filter(move |(i, _)| mask >> i & 1 != 0)
        .map(|(_, a)| AliasRef::from(a))
}

/// The low 7 bits of `v >> shift`: one header byte.
#[inline]
fn b7(v: usize, shift: u32) -> u8 {
    (v >> shift) as u8 & 0x7f
}

/// The header's first bytes: the counts, the key's length and the length of
/// the aliases' own values (3 bytes each, lowest 7 bits first).
#[inline]
fn head_entry(n_aliases: usize, n_addrs: usize, key_len: usize, values: usize) -> [u8; HEAD_BYTES] {
    [
        n_aliases as u8,
        n_addrs as u8,
        b7(key_len, 0),
        b7(key_len, 7),
        b7(key_len, 14),
        b7(values, 0),
        b7(values, 7),
        b7(values, 14),
    ]
}

/// One alias's header entry: its kind (with `SHARED` when its value is the
/// key's) and its length.
#[inline]
fn alias_entry(kind: AliasKind, shared: bool, len: usize) -> [u8; ALIAS_BYTES] {
    let shared = if shared { SHARED } else { 0 };
    [
        super::kind_index(kind) as u8 | shared,
        b7(len, 0),
        b7(len, 7),
    ]
}

/// One address's header entry: its rank and its length.
#[inline]
fn addr_entry(rank: u32, len: usize) -> [u8; ADDR_BYTES] {
    let rank = rank as usize;
    [b7(rank, 0), b7(rank, 7), b7(len, 0), b7(len, 7)]
}

/// Appends header bytes (all below 0x80) to the text.
#[inline]
fn push_ascii(text: &mut String, bytes: &[u8]) {
    text.extend(bytes.iter().map(|&b| char::from(b)));
}

#[inline]
fn get2(b: &[u8; 2]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 7
}

impl SightingText {
    /// The key (at most `MAX_KEY_LEN`), the aliases kept of `aliases`, and
    /// `addrs`.
    pub(super) fn new(key: &str, aliases: &[Alias], addrs: &KeptAddrs) -> Self {
        // What every new sighting stores: written out plainly, one pass to
        // size and head it, one to copy the texts.
        let aliases = &aliases[..aliases.len().min(MAX_ALIASES)];
        let addr_entries = &addrs.entries[..addrs.entries.len().min(MAX_ADDRS)];
        let addr_text = addrs
            .text
            .get(..addr_entries.last().map_or(0, |&(_, end)| end as usize))
            .unwrap_or_default();
        let mut head = [0u8; HEAD_BYTES + MAX_ALIASES * ALIAS_BYTES + MAX_ADDRS * ADDR_BYTES];
        let mut at = HEAD_BYTES;
        let mut values = 0;
        // Bit i: alias i has a value of its own to copy.
        let mut own = 0u64;
        for (i, a) in aliases.iter().enumerate() {
            if !kept(aliases, i) {
                continue;
            }
            let len = a.value.len();
            let shared = a.value == key;
            if !shared {
                own |= 1 << i;
                values += len;
            }
            head[at..at + ALIAS_BYTES].copy_from_slice(&alias_entry(a.kind, shared, len));
            at += ALIAS_BYTES;
        }
        let n_aliases = (at - HEAD_BYTES) / ALIAS_BYTES;
        let mut start = 0;
        for &(rank, end) in addr_entries {
            let len = end as usize - start;
            start = end as usize;
            head[at..at + ADDR_BYTES].copy_from_slice(&addr_entry(rank, len));
            at += ADDR_BYTES;
        }
        head[..HEAD_BYTES].copy_from_slice(&head_entry(
            n_aliases,
            addr_entries.len(),
            key.len(),
            values,
        ));
        let mut text = String::with_capacity(at + key.len() + values + addr_text.len());
        // Bytes below 0x80: always valid.
        text.push_str(std::str::from_utf8(&head[..at]).unwrap_or_default());
        text.push_str(key);
        for (i, a) in aliases.iter().enumerate() {
            if own >> i & 1 != 0 {
                text.push_str(&a.value);
            }
        }
        text.push_str(addr_text);
        SightingText(text.into_boxed_str())
    }

    /// The same key and addresses with other aliases.
    pub(super) fn with_aliases(&self, aliases: &[Alias]) -> Self {
        Self::build(self.key(), clean(aliases), self.addrs())
    }

    /// The same key and aliases with other addresses.
    pub(super) fn with_addrs(&self, addrs: &KeptAddrs) -> Self {
        Self::build(self.key(), self.aliases(), addrs.iter())
    }

    #[inline]
    fn build<'a, 'b>(
        key: &str,
        aliases: impl Iterator<Item = AliasRef<'a>> + Clone,
        addrs: impl Iterator<Item = AddrRef<'b>> + Clone,
    ) -> Self {
        let aliases = aliases.take(MAX_ALIASES);
        let addrs = addrs.take(MAX_ADDRS);
        let (mut n_aliases, mut n_addrs, mut values) = (0, 0, 0);
        for a in aliases.clone() {
            n_aliases += 1;
            values += if a.value == key { 0 } else { a.value.len() };
        }
        let mut len = HEAD_BYTES + key.len() + values + n_aliases * ALIAS_BYTES;
        for a in addrs.clone() {
            n_addrs += 1;
            len += ADDR_BYTES + a.text.len();
        }
        let mut text = String::with_capacity(len);
        push_ascii(
            &mut text,
            &head_entry(n_aliases, n_addrs, key.len(), values),
        );
        for a in aliases.clone() {
            push_ascii(
                &mut text,
                &alias_entry(a.kind, a.value == key, a.value.len()),
            );
        }
        for a in addrs.clone() {
            push_ascii(&mut text, &addr_entry(a.rank, a.text.len()));
        }
        text.push_str(key);
        for a in aliases {
            if a.value != key {
                text.push_str(a.value);
            }
        }
        for a in addrs {
            text.push_str(a.text);
        }
        SightingText(text.into_boxed_str())
    }

    /// The header's alias and address entries, and where the key starts
    /// and ends.
    #[inline]
    fn parts(&self) -> (&[u8], &[u8], usize, usize) {
        let b = self.0.as_bytes();
        let Some((&[n_aliases, n_addrs, k0, k1, k2, ..], rest)) =
            b.split_first_chunk::<HEAD_BYTES>()
        else {
            return (&[], &[], 0, 0);
        };
        let aliases_len = usize::from(n_aliases) * ALIAS_BYTES;
        let addrs_len = usize::from(n_addrs) * ADDR_BYTES;
        let key_at = HEAD_BYTES + aliases_len + addrs_len;
        let key_len = get2(&[k0, k1]) | usize::from(k2) << 14;
        let aliases = rest.get(..aliases_len).unwrap_or_default();
        let addrs = rest
            .get(aliases_len..aliases_len + addrs_len)
            .unwrap_or_default();
        (aliases, addrs, key_at, key_at + key_len)
    }

    #[inline]
    pub(super) fn key(&self) -> &str {
        let (_, _, start, end) = self.parts();
        self.0.get(start..end).unwrap_or_default()
    }

    #[inline]
    pub(super) fn aliases(&self) -> Aliases<'_> {
        let (entries, _, key_at, key_end) = self.parts();
        Aliases {
            text: &self.0,
            entries,
            key: (key_at, key_end),
            next: key_end,
        }
    }

    pub(super) fn addrs(&self) -> Addrs<'_> {
        // The addresses' texts follow the aliases' own values.
        let (_, entries, _, key_end) = self.parts();
        let values = match self.0.as_bytes() {
            [_, _, _, _, _, v0, v1, v2, ..] => get2(&[*v0, *v1]) | usize::from(*v2) << 14,
            _ => 0,
        };
        Addrs {
            text: &self.0,
            entries,
            next: key_end + values,
        }
    }

    /// Whether `SightingText::new(key, input, ..)` would keep exactly these aliases.
    pub(super) fn same_aliases_as(&self, input: &[Alias]) -> bool {
        let mut stored = self.aliases();
        (0..input.len().min(MAX_ALIASES))
            .filter(|&i| kept(input, i))
            .all(|i| stored.next().is_some_and(|s| s.is(&input[i])))
            && stored.next().is_none()
    }
}

/// The aliases of a `SightingText`, in the source's order.
#[derive(Clone)]
pub(super) struct Aliases<'a> {
    text: &'a str,
    /// The header entries not yet read.
    entries: &'a [u8],
    /// Where the key is (an alias may share its text).
    key: (usize, usize),
    /// Where the next alias value of its own starts.
    next: usize,
}

impl<'a> Iterator for Aliases<'a> {
    type Item = AliasRef<'a>;

    // Inlined: every rule walks a sighting's aliases, several times a merge.
    #[inline]
    fn next(&mut self) -> Option<AliasRef<'a>> {
        let (&[kind, l0, l1], rest) = self.entries.split_first_chunk::<ALIAS_BYTES>()?;
        self.entries = rest;
        let (start, end) = if kind & SHARED != 0 {
            self.key
        } else {
            let start = self.next;
            self.next += get2(&[l0, l1]);
            (start, self.next)
        };
        Some(AliasRef {
            kind: AliasKind::ALL
                .get(usize::from(kind & !SHARED))
                .copied()
                .unwrap_or(AliasKind::Hostname),
            value: self.text.get(start..end).unwrap_or_default(),
        })
    }
}

/// The addresses of a `SightingText`, in the source's order.
#[derive(Clone)]
pub(super) struct Addrs<'a> {
    text: &'a str,
    entries: &'a [u8],
    next: usize,
}

impl<'a> Iterator for Addrs<'a> {
    type Item = AddrRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<AddrRef<'a>> {
        let (&[r0, r1, l0, l1], rest) = self.entries.split_first_chunk::<ADDR_BYTES>()?;
        self.entries = rest;
        let start = self.next;
        self.next += get2(&[l0, l1]);
        Some(AddrRef {
            rank: get2(&[r0, r1]) as u32,
            text: self.text.get(start..self.next).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(t: &SightingText) -> Vec<Alias> {
        t.aliases().map(AliasRef::to_alias).collect()
    }

    fn addrs(list: &[(usize, &str)]) -> KeptAddrs {
        let mut k = KeptAddrs::default();
        for (rank, text) in list {
            let _ = k.push_with(*rank, |s| s.push_str(text));
        }
        k
    }

    #[test]
    fn keeps_key_aliases_and_addresses_sharing_the_key_text() {
        let aliases = vec![
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::ContainerId, "c12c12c12c12"),
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::Hostname, "  "),
            Alias::peer_id("12D3KooWx"),
            Alias::new(AliasKind::TaskId, "agent-7"),
        ];
        let kept = addrs(&[(1, "/ip4/10.0.0.7/tcp/9000"), (0, "/dns/a/tcp/1")]);
        let t = SightingText::new("agent-7", &aliases, &kept);
        assert_eq!(t.key(), "agent-7");
        let want = vec![
            Alias::agent_id("agent-7"),
            Alias::new(AliasKind::ContainerId, "c12c12c12c12"),
            Alias::peer_id("12D3KooWx"),
            Alias::new(AliasKind::TaskId, "agent-7"),
        ];
        assert_eq!(owned(&t), want);
        assert!(t.addrs().eq(kept.iter()));
        assert_eq!(
            t.addrs().map(|a| (a.rank, a.text)).collect::<Vec<_>>(),
            [(1, "/ip4/10.0.0.7/tcp/9000"), (0, "/dns/a/tcp/1")]
        );
        // The key's text is held once: the repeats point at it.
        let texts = "agent-7c12c12c12c1212D3KooWx/ip4/10.0.0.7/tcp/9000/dns/a/tcp/1";
        assert!(t.0.ends_with(texts), "{:?}", t.0);
        assert_eq!(
            t.0.len(),
            HEAD_BYTES + 4 * ALIAS_BYTES + 2 * ADDR_BYTES + texts.len()
        );
        assert_eq!(t.aliases().nth(2).map(|a| a.value), Some("12D3KooWx"));
        assert_eq!(t.aliases().nth(4), None);
        assert!(t.same_aliases_as(&aliases));
        assert!(t.same_aliases_as(&want));
        assert!(!t.same_aliases_as(&want[..3]));
        assert!(!t.same_aliases_as(&[]));
        // Both ways of writing one agree byte for byte.
        assert_eq!(t.with_addrs(&kept).0, t.0);
        assert_eq!(t.with_aliases(&aliases).0, t.0);
        let renamed = t.with_aliases(&[Alias::peer_id("p")]);
        assert_eq!(renamed.key(), "agent-7");
        assert_eq!(owned(&renamed), vec![Alias::peer_id("p")]);
        assert!(renamed.addrs().eq(kept.iter()));
        let moved = renamed.with_addrs(&addrs(&[(3, "/ip4/10.0.0.8")]));
        assert_eq!(owned(&moved), vec![Alias::peer_id("p")]);
        assert_eq!(
            moved.addrs().collect::<Vec<_>>(),
            [AddrRef {
                rank: 3,
                text: "/ip4/10.0.0.8"
            }]
        );
    }

    #[test]
    fn empty_parts_overlong_values_and_repeated_addresses() {
        let long = Alias::agent_id("x".repeat(MAX_ALIAS_LEN + 1));
        let t = SightingText::new(
            "",
            &[Alias::agent_id(""), long.clone()],
            &KeptAddrs::default(),
        );
        assert_eq!(t.key(), "");
        assert_eq!(t.aliases().count(), 0);
        assert_eq!(t.addrs().count(), 0);
        assert!(t.same_aliases_as(&[long]));
        let h = SightingText::new(
            "",
            &[Alias::new(AliasKind::Hostname, "h")],
            &KeptAddrs::default(),
        );
        assert_eq!(owned(&h), vec![Alias::new(AliasKind::Hostname, "h")]);
        for kind in AliasKind::ALL {
            let k = SightingText::new(
                "k",
                &[Alias::new(kind, "k"), Alias::new(kind, "v")],
                &KeptAddrs::default(),
            );
            assert_eq!(
                owned(&k),
                vec![Alias::new(kind, "k"), Alias::new(kind, "v")],
                "{kind:?}"
            );
        }
        let mut k = KeptAddrs::default();
        assert_eq!(k.push_with(0, |s| s.push_str("/ip4/1.2.3.4")), Ok(()));
        assert_eq!(
            k.push_with(1, |s| s.push_str("/ip4/1.2.3.4")),
            Err(Refused::Repeat)
        );
        let long = format!("/dns/{}", "a".repeat(MAX_ADDR_LEN));
        assert_eq!(k.push_with(0, |s| s.push_str(&long)), Err(Refused::TooLong));
        assert_eq!(
            k.push_with(MAX_RANK + 9, |s| s.push_str("/ip4/1.2.3.5")),
            Ok(())
        );
        assert_eq!(
            k.iter().collect::<Vec<_>>(),
            [
                AddrRef {
                    rank: 0,
                    text: "/ip4/1.2.3.4"
                },
                AddrRef {
                    rank: MAX_RANK as u32,
                    text: "/ip4/1.2.3.5"
                }
            ]
        );
        k.clear();
        assert_eq!(k.iter().count(), 0);
    }
}
