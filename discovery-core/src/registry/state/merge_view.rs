//! One peer from its observations: the highest-priority observation that has
//! a field wins it; aliases, labels and addresses are the union, addresses ranked.
//!
//! The merge is first taken by reference (`Merged`, no allocation), compared
//! with the peer's current view, and written only where a field differs, into
//! the view's own buffers when no one else holds it: a status change costs
//! one string copy, not a new peer.

use std::sync::Arc;
use std::time::SystemTime;

use smallvec::SmallVec;

use super::obs_table::ObsTable;
use super::sighting_text::{AddrRef, AliasRef};
use super::{kind_index, ObsEntry, ObsIdx, Peer, SourceMeta};
use crate::roster::PeerSource;

/// A peer's merged fields, borrowed from its observations.
pub(super) struct Merged<'a> {
    /// Deduplicated by match value (the longest spelling kept), by kind.
    pub(super) aliases: SmallVec<[AliasRef<'a>; 8]>,
    name: Option<&'a String>,
    status: Option<&'a String>,
    version: Option<&'a String>,
    capabilities: &'a [String],
    /// Sorted by key; the first (highest-priority) value of a key wins.
    labels: SmallVec<[(&'a String, &'a String); 4]>,
    /// Deduplicated by text, ranked (stable: priority order within a rank).
    addrs: SmallVec<[AddrRef<'a>; 4]>,
    /// With the latest sighting of each, as nanoseconds since the epoch.
    sources: SmallVec<[(&'a Arc<str>, u64); 4]>,
    /// Aliases and addresses merged (`of`), or left out (`of_meta`).
    identity: bool,
}

impl<'a> Merged<'a> {
    /// The merge of `members`, highest priority first.
    pub(super) fn of(obs: &'a ObsTable, sources: &'a [SourceMeta], members: &[ObsIdx]) -> Self {
        Self::collect(obs, sources, members, true)
    }

    /// The merge of everything but aliases and addresses (left empty), for a
    /// change that touched only metadata: `diff` then compares just that.
    pub(super) fn of_meta(
        obs: &'a ObsTable,
        sources: &'a [SourceMeta],
        members: &[ObsIdx],
    ) -> Self {
        Self::collect(obs, sources, members, false)
    }

    fn collect(
        obs: &'a ObsTable,
        sources: &'a [SourceMeta],
        members: &[ObsIdx],
        identity: bool,
    ) -> Self {
        let mut m = Merged {
            aliases: SmallVec::new(),
            name: None,
            status: None,
            version: None,
            capabilities: &[],
            labels: SmallVec::new(),
            addrs: SmallVec::new(),
            sources: SmallVec::new(),
            identity,
        };
        for e in members.iter().filter_map(|&i| obs.get(i)) {
            if identity {
                add_aliases(&mut m.aliases, e);
                m.add_addrs(e);
            }
            let meta = e.meta.read();
            m.name = m.name.or(meta.name);
            m.status = m.status.or(meta.status);
            m.version = m.version.or(meta.version);
            if m.capabilities.is_empty() {
                m.capabilities = meta.capabilities;
            }
            for (k, v) in meta.labels.into_iter().flat_map(|l| l.iter()) {
                if let Err(at) = m.labels.binary_search_by(|(x, _)| x.as_str().cmp(k)) {
                    m.labels.insert(at, (k, v));
                }
            }
            note_seen(
                &mut m.sources,
                &sources[e.source as usize].name,
                e.last_seen_ns,
            );
        }
        m.aliases.sort_by_key(|a| kind_index(a.kind));
        m.addrs.sort_by_key(|a| a.rank);
        m
    }

    fn add_addrs(&mut self, e: &'a ObsEntry) {
        for a in e.text.addrs() {
            if !self.addrs.iter().any(|x| x.text == a.text) {
                self.addrs.push(a);
            }
        }
    }

    /// A new view (uid and id left for the caller), with no spare capacity.
    pub(super) fn to_peer(&self) -> Peer {
        let mut p = blank_peer(0, String::new());
        self.write_into(&mut p, Diff::ALL);
        p
    }

    /// Which fields of the view's content (everything but uid, id and the
    /// times sources last saw it, as `Peer::same_content`) differ from this merge.
    /// After `of_meta`, aliases and addresses count as equal.
    pub(super) fn diff(&self, p: &Peer) -> Diff {
        let identity = self.identity;
        Diff {
            aliases: identity && !self.aliases_equal(p),
            name: p.name.as_ref() != self.name,
            status: p.status.as_ref() != self.status,
            version: p.version.as_ref() != self.version,
            capabilities: p.capabilities[..] != *self.capabilities,
            labels: !self.labels_equal(p),
            addrs: identity && !self.addrs_equal(p),
            sources: !self.source_names_equal(p),
        }
    }

    /// Writes this merge into `p`, touching only the fields `diff` names and
    /// reusing `p`'s buffers; the sources' times are always written.
    pub(super) fn write_into(&self, p: &mut Peer, diff: Diff) {
        if diff.aliases {
            rewrite(
                &mut p.aliases,
                &self.aliases,
                |to, from| from.is(to),
                |to, from| {
                    to.kind = from.kind;
                    to.value.clear();
                    to.value.push_str(from.value);
                },
                |from| from.to_alias(),
            );
        }
        if diff.name {
            p.name = self.name.cloned();
        }
        if diff.status {
            match (&mut p.status, self.status) {
                (Some(to), Some(from)) => to.clone_from(from),
                (to, from) => *to = from.cloned(),
            }
        }
        if diff.version {
            p.version = self.version.cloned();
        }
        if diff.capabilities {
            rewrite(
                &mut p.capabilities,
                self.capabilities,
                |to, from| to == from,
                String::clone_from,
                String::clone,
            );
        }
        if diff.labels {
            // Already sorted by key, each key once.
            rewrite(
                &mut p.labels.0,
                &self.labels,
                |(tk, tv), (k, v)| tk == *k && tv == *v,
                |(tk, tv), (k, v)| {
                    tk.clone_from(k);
                    tv.clone_from(v);
                },
                |(k, v)| ((*k).clone(), (*v).clone()),
            );
        }
        if diff.addrs {
            rewrite(
                &mut p.addrs,
                &self.addrs,
                |to, from| to == from.text,
                |to, from| {
                    to.clear();
                    to.push_str(from.text);
                },
                |from| String::from(from.text),
            );
        }
        if !diff.sources {
            for (s, (_, seen)) in p.sources.iter_mut().zip(&self.sources) {
                s.last_seen = wall_time(*seen);
            }
        } else {
            p.sources.clear();
            p.sources.reserve_exact(self.sources.len());
            p.sources
                .extend(self.sources.iter().map(|(name, seen)| PeerSource {
                    name: Arc::clone(name),
                    last_seen: wall_time(*seen),
                }));
        }
    }

    fn aliases_equal(&self, p: &Peer) -> bool {
        p.aliases.len() == self.aliases.len()
            && p.aliases.iter().zip(&self.aliases).all(|(a, b)| b.is(a))
    }

    fn labels_equal(&self, p: &Peer) -> bool {
        p.labels.len() == self.labels.len()
            && p.labels
                .iter()
                .zip(&self.labels)
                .all(|((k, v), (mk, mv))| k == *mk && v == *mv)
    }

    fn addrs_equal(&self, p: &Peer) -> bool {
        p.addrs.len() == self.addrs.len()
            && p.addrs.iter().zip(&self.addrs).all(|(a, b)| a == b.text)
    }

    fn source_names_equal(&self, p: &Peer) -> bool {
        p.sources.len() == self.sources.len()
            && p.sources
                .iter()
                .zip(&self.sources)
                .all(|(s, (name, _))| s.name == **name)
    }
}

/// Each source seeing `members`, in their order, with its latest sighting
/// (nanoseconds since the epoch).
pub(super) fn seen_by_source<'a>(
    obs: &'a ObsTable,
    sources: &'a [SourceMeta],
    members: &[ObsIdx],
) -> SmallVec<[(&'a Arc<str>, u64); 4]> {
    let mut seen: SmallVec<[(&Arc<str>, u64); 4]> = SmallVec::new();
    for e in members.iter().filter_map(|&i| obs.get(i)) {
        note_seen(&mut seen, &sources[e.source as usize].name, e.last_seen_ns);
    }
    seen
}

/// Records that source `name` saw a member at `ns`: its latest sighting is kept.
fn note_seen<'a>(seen: &mut SmallVec<[(&'a Arc<str>, u64); 4]>, name: &'a Arc<str>, ns: u64) {
    match seen.iter_mut().find(|(n, _)| *n == name) {
        Some((_, t)) => *t = (*t).max(ns),
        None => seen.push((name, ns)),
    }
}

/// The wall time `ns` nanoseconds after the epoch.
pub(super) fn wall_time(ns: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns)
}

/// The fields of a view that differ from a merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Diff {
    aliases: bool,
    name: bool,
    status: bool,
    version: bool,
    capabilities: bool,
    labels: bool,
    addrs: bool,
    sources: bool,
}

impl Diff {
    const ALL: Diff = Diff {
        aliases: true,
        name: true,
        status: true,
        version: true,
        capabilities: true,
        labels: true,
        addrs: true,
        sources: true,
    };
    const NONE: Diff = Diff {
        aliases: false,
        name: false,
        status: false,
        version: false,
        capabilities: false,
        labels: false,
        addrs: false,
        sources: false,
    };

    pub(super) fn any(self) -> bool {
        self != Diff::NONE
    }
}

/// The merged aliases of `members` (highest priority first), as `Merged`
/// has them: all a display id needs, without merging anything else.
pub(super) fn merged_aliases<'a>(
    obs: &'a ObsTable,
    members: &[ObsIdx],
) -> SmallVec<[AliasRef<'a>; 8]> {
    let mut aliases = SmallVec::new();
    for e in members.iter().filter_map(|&i| obs.get(i)) {
        add_aliases(&mut aliases, e);
    }
    aliases.sort_by_key(|a| kind_index(a.kind));
    aliases
}

/// Adds `e`'s aliases, one per kind and match value.
fn add_aliases<'a>(aliases: &mut SmallVec<[AliasRef<'a>; 8]>, e: &'a ObsEntry) {
    for a in e.text.aliases() {
        let value = a.match_value();
        match aliases
            .iter_mut()
            .find(|x| x.kind == a.kind && x.match_value() == value)
        {
            // Keep the longest spelling (the full container id over the short one).
            Some(x) if a.value.len() > x.value.len() => *x = a,
            Some(_) => {}
            None => aliases.push(a),
        }
    }
}

/// A view with its uid and id and nothing else yet.
pub(super) fn blank_peer(uid: u64, id: String) -> Peer {
    Peer {
        uid,
        id,
        aliases: Vec::new(),
        name: None,
        status: None,
        capabilities: Vec::new(),
        version: None,
        labels: Default::default(),
        addrs: Vec::new(),
        sources: Vec::new(),
    }
}

/// Makes `to` hold `from`'s values, growing to exactly the new length (a
/// view lives as long as its peer) and reusing what it holds: an element
/// already there is moved into place, one no longer needed is written
/// over, and only a value it lacks is made (a new sighting's aliases
/// shift the old ones down; they are kept, not copied again).
fn rewrite<T, F>(
    to: &mut Vec<T>,
    from: &[F],
    same: impl Fn(&T, &F) -> bool,
    write: impl Fn(&mut T, &F),
    make: impl Fn(&F) -> T,
) {
    to.reserve_exact(from.len().saturating_sub(to.len()));
    for (i, f) in from.iter().enumerate() {
        if to.get(i).is_some_and(|t| same(t, f)) {
            continue;
        }
        if let Some(j) = (i + 1..to.len()).find(|&j| same(&to[j], f)) {
            to.swap(i, j);
            continue;
        }
        match to.get_mut(i) {
            Some(t) if !from[i + 1..].iter().any(|g| same(t, g)) => write(t, f),
            _ => to.insert(i, make(f)),
        }
    }
    to.truncate(from.len());
    if to.capacity() > to.len() {
        to.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    /// Every pair of short lists over a small alphabet (repeats included):
    /// the result equals the target, with no spare capacity.
    #[test]
    fn rewrite_makes_the_target_exactly() {
        let lists: Vec<Vec<String>> = (0..5u32.pow(3) + 5u32.pow(2) + 6)
            .map(|n| {
                let (len, mut k) = match n {
                    0 => (0, 0),
                    1..=5 => (1, n - 1),
                    6..=30 => (2, n - 6),
                    _ => (3, n - 31),
                };
                (0..len)
                    .map(|_| {
                        let c = k % 5;
                        k /= 5;
                        format!("v{c}")
                    })
                    .collect()
            })
            .collect();
        for old in &lists {
            for new in &lists {
                let mut to = old.clone();
                rewrite(
                    &mut to,
                    new,
                    |t, f| t == f,
                    String::clone_from,
                    String::clone,
                );
                assert_eq!(&to, new, "{old:?} -> {new:?}");
                assert_eq!(to.capacity(), to.len(), "{old:?} -> {new:?}");
            }
        }
    }
}
