//! Observations sharing a strong alias are one peer, unless that would give
//! one peer two values of a singular kind (two peer ids for one agent id):
//! then they stay apart and the clash is a conflict.

use smallvec::SmallVec;

use super::sighting_text::AliasRef;
use super::{kind_index, Alias, AliasKind, HashMap, Members, ObsIdx, State};

/// One group being formed during a partition.
struct Group<'a> {
    /// Positions in the component (its priority order), ascending.
    members: Members,
    /// Values of the singular kinds, indexed like `AliasKind::ALL`.
    singular: [Option<&'a str>; 5],
    merged_into: Option<usize>,
}

impl State {
    /// Greedy partition in priority order: an observation joins the groups it
    /// shares a strong alias with, unless that would give one peer two values
    /// of a singular kind; then the groups stay apart and a conflict is noted.
    pub(super) fn partition(
        &self,
        comp: &[ObsIdx],
    ) -> (SmallVec<[Members; 2]>, Vec<FoundConflict>) {
        let mut groups: SmallVec<[Group; 2]> = SmallVec::new();
        let mut by_alias = AliasGroups::new(comp.len(), &self.hasher);
        let mut conflicts = Vec::new();
        fn root(groups: &[Group], mut g: usize) -> usize {
            while let Some(n) = groups[g].merged_into {
                g = n;
            }
            g
        }
        for (pos, &o) in comp.iter().enumerate() {
            let pos = pos as ObsIdx;
            let Some(e) = self.entry(o) else { continue };
            let singular = singular_values(e.text.aliases());
            let mut target: Option<usize> = None;
            let mut seen: SmallVec<[usize; 4]> = SmallVec::new();
            for a in e.text.aliases().filter(|a| a.kind.is_strong()) {
                let Some(g) = by_alias.get((a.kind, a.match_value())) else {
                    continue;
                };
                let g = root(&groups, g);
                if seen.contains(&g) || Some(g) == target {
                    continue;
                }
                seen.push(g);
                match target {
                    None => match clash(&groups[g].singular, &singular) {
                        None => {
                            merge_singular(&mut groups[g].singular, &singular);
                            groups[g].members.push(pos);
                            target = Some(g);
                        }
                        Some(k) => conflicts.push(FoundConflict {
                            shared: a.to_alias(),
                            disputed: AliasKind::ALL[k],
                            a: comp[groups[g].members[0] as usize],
                            b: o,
                        }),
                    },
                    Some(t) => match clash(&groups[t].singular, &groups[g].singular) {
                        None => {
                            let moved = std::mem::take(&mut groups[g].members);
                            let sing = std::mem::take(&mut groups[g].singular);
                            merge_singular(&mut groups[t].singular, &sing);
                            // Interleaved, not appended: the merged view
                            // takes each field from the highest priority.
                            groups[t].members = merge_sorted(&groups[t].members, &moved);
                            groups[g].merged_into = Some(t);
                        }
                        Some(k) => conflicts.push(FoundConflict {
                            shared: a.to_alias(),
                            disputed: AliasKind::ALL[k],
                            a: comp[groups[g].members[0] as usize],
                            b: o,
                        }),
                    },
                }
            }
            let t = match target {
                Some(t) => t,
                None => {
                    groups.push(Group {
                        members: smallvec::smallvec![pos],
                        singular,
                        merged_into: None,
                    });
                    groups.len() - 1
                }
            };
            for a in e.text.aliases().filter(|a| a.kind.is_strong()) {
                by_alias.insert_if_absent((a.kind, a.match_value()), t);
            }
        }
        let out = groups
            .into_iter()
            .filter(|g| g.merged_into.is_none() && !g.members.is_empty())
            .map(|g| g.members.iter().map(|&pos| comp[pos as usize]).collect())
            .collect();
        (out, conflicts)
    }
}

pub(super) struct FoundConflict {
    pub(super) shared: Alias,
    pub(super) disputed: AliasKind,
    pub(super) a: ObsIdx,
    pub(super) b: ObsIdx,
}

/// The union of two ascending lists of distinct positions, ascending.
fn merge_sorted(a: &[ObsIdx], b: &[ObsIdx]) -> Members {
    let mut out = Members::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// An observation's value of each singular kind (its first, by `AliasKind::ALL`):
/// what must agree within one peer.
pub(super) fn singular_values<'a>(
    aliases: impl Iterator<Item = AliasRef<'a>>,
) -> [Option<&'a str>; 5] {
    let mut singular: [Option<&str>; 5] = Default::default();
    for a in aliases {
        let k = kind_index(a.kind);
        if a.kind.is_singular() && singular[k].is_none() {
            singular[k] = Some(a.match_value());
        }
    }
    singular
}

/// `PeerEntry::singular_kinds` bit: some sighting holds two values of one
/// singular kind (only the exact check then tells a clash).
pub(super) const REPEATS_A_KIND: u8 = 0x80;

/// The singular kinds `aliases` hold values of, as bits by kind index, with
/// `REPEATS_A_KIND` when one kind comes twice.
pub(super) fn singular_kinds<'a>(aliases: impl Iterator<Item = AliasRef<'a>>) -> u8 {
    let mut kinds = 0u8;
    for a in aliases.filter(|a| a.kind.is_singular()) {
        let bit = 1 << kind_index(a.kind);
        if kinds & bit != 0 {
            kinds |= REPEATS_A_KIND;
        }
        kinds |= bit;
    }
    kinds
}

impl State {
    /// The singular kinds `members` hold (`singular_kinds` of each, joined).
    pub(super) fn singular_kinds_of(&self, members: &[ObsIdx]) -> u8 {
        members
            .iter()
            .filter_map(|&m| self.entry(m))
            .fold(0, |k, e| k | singular_kinds(e.text.aliases()))
    }
}

/// The first singular kind on which `a` and `b` hold different values.
pub(super) fn clash(a: &[Option<&str>; 5], b: &[Option<&str>; 5]) -> Option<usize> {
    (0..5).find(|&k| matches!((a[k], b[k]), (Some(x), Some(y)) if x != y))
}

pub(super) fn merge_singular<'a>(into: &mut [Option<&'a str>; 5], from: &[Option<&'a str>; 5]) {
    for k in 0..5 {
        if into[k].is_none() {
            into[k] = from[k];
        }
    }
}

/// Alias -> group during a partition: a linear list for the usual handful of
/// sightings, a hash map for the rare large component.
#[allow(clippy::large_enum_variant)] // lives on the stack for one partition only
enum AliasGroups<'a> {
    Small(SmallVec<[((AliasKind, &'a str), usize); 16]>),
    Large(HashMap<(AliasKind, &'a str), usize>),
}

impl<'a> AliasGroups<'a> {
    fn new(observations: usize, hasher: &ahash::RandomState) -> Self {
        if observations <= 8 {
            AliasGroups::Small(SmallVec::new())
        } else {
            AliasGroups::Large(HashMap::with_capacity_and_hasher(
                observations * 3,
                hasher.clone(),
            ))
        }
    }

    fn get(&self, key: (AliasKind, &'a str)) -> Option<usize> {
        match self {
            AliasGroups::Small(v) => v.iter().find(|(k, _)| *k == key).map(|(_, g)| *g),
            AliasGroups::Large(m) => m.get(&key).copied(),
        }
    }

    fn insert_if_absent(&mut self, key: (AliasKind, &'a str), group: usize) {
        match self {
            AliasGroups::Small(v) => {
                if !v.iter().any(|(k, _)| *k == key) {
                    v.push((key, group));
                }
            }
            AliasGroups::Large(m) => {
                m.entry(key).or_insert(group);
            }
        }
    }
}
