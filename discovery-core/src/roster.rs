//! The merged view: peers, the roster, and the events a watcher receives.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::model::{Alias, AliasKind};

/// A source that currently sees a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSource {
    /// Source name.
    pub name: Arc<str>,
    /// When that source last confirmed the peer.
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
}

/// One peer of the roster: every observation that shares its identity, merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Registry-assigned identity, stable while the peer lives: it never
    /// changes when the display `id` improves (a container id giving way to an
    /// agent id). Key a replica of the roster by `uid`.
    #[serde(default)]
    pub uid: u64,
    /// Display id: agent id, else peer id, else container id, else task id,
    /// else host name, else `source/key`.
    pub id: String,
    /// Every identity claim, deduplicated.
    pub aliases: Vec<Alias>,
    /// Name, from the highest-priority source that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Status, from the highest-priority source that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Capabilities, from the highest-priority source that has any.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Software version, from the highest-priority source that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Labels, per key from the highest-priority source that has it.
    #[serde(default)]
    pub labels: Labels,
    /// Union of every source's addresses, filtered and ranked.
    pub addrs: Vec<String>,
    /// The sources that see it, highest priority first.
    pub sources: Vec<PeerSource>,
}

impl Peer {
    /// The first alias of a kind.
    pub fn alias(&self, kind: AliasKind) -> Option<&str> {
        self.aliases
            .iter()
            .find(|a| a.kind == kind)
            .map(|a| a.value.as_str())
    }

    /// Equal ignoring `last_seen` (a renewal is not a change).
    pub fn same_content(&self, other: &Peer) -> bool {
        self.uid == other.uid
            && self.id == other.id
            && self.aliases == other.aliases
            && self.name == other.name
            && self.status == other.status
            && self.capabilities == other.capabilities
            && self.version == other.version
            && self.labels == other.labels
            && self.addrs == other.addrs
            && self.sources.len() == other.sources.len()
            && self
                .sources
                .iter()
                .zip(&other.sources)
                .all(|(a, b)| a.name == b.name)
    }
}

/// The whole roster at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// Increases by one with every change event.
    pub version: u64,
    /// Peers sorted by id.
    pub peers: Vec<Arc<Peer>>,
}

/// Two observations claim one identity but disagree on another: not merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The alias both claim (e.g. the agent id).
    pub shared: Alias,
    /// The kind on which they disagree (e.g. peer id).
    pub disputed: AliasKind,
    /// The ids of the peers kept apart.
    pub peers: Vec<String>,
    /// The sources and keys involved, `source/key`.
    pub observations: Vec<String>,
}

/// A change of the roster.
///
/// Replaying the events after a snapshot, in order, on a map keyed by
/// [`Peer::uid`] (insert on `Joined` and `Updated`, remove on `Left`) gives
/// exactly the roster at the last event's version. Change events have
/// consecutive versions. A peer that stays alive is never `Left`: a better
/// display id is an `Updated` with `renamed_from`, and two entries found to be
/// one peer are a `Left` of the absorbed entry with `merged_into` (sent before
/// the `Updated` of the survivor). A map keyed by display id instead must
/// remove an id (on `Left`, or the `renamed_from` of an `Updated`) only while
/// it still names that event's uid: one change can pass an id from one peer
/// to another, or swap two peers' ids. Several changes to one peer within
/// one batch of the merge loop arrive as one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RosterEvent {
    /// A new peer.
    Joined {
        /// Roster version after this event.
        version: u64,
        /// The peer.
        peer: Arc<Peer>,
    },
    /// A peer's fields, addresses, sources or display id changed (same `uid`).
    Updated {
        /// Roster version after this event.
        version: u64,
        /// The peer as it is now.
        peer: Arc<Peer>,
        /// The previous display id, when this change renamed the peer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renamed_from: Option<String>,
    },
    /// A roster entry is gone: every observation of it was removed or expired,
    /// or (with `merged_into`) it turned out to be the same peer as another entry.
    Left {
        /// Roster version after this event.
        version: u64,
        /// The peer as it was last.
        peer: Arc<Peer>,
        /// The `uid` of the entry that absorbed this one; `None` for a real departure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        merged_into: Option<u64>,
    },
    /// An identity conflict appeared (does not change the version).
    Conflict {
        /// Roster version when it was found.
        version: u64,
        /// What disagrees.
        conflict: Conflict,
    },
}

impl RosterEvent {
    /// The roster version after this event.
    pub fn version(&self) -> u64 {
        match self {
            RosterEvent::Joined { version, .. }
            | RosterEvent::Updated { version, .. }
            | RosterEvent::Left { version, .. }
            | RosterEvent::Conflict { version, .. } => *version,
        }
    }
}

/// RFC 3339 timestamps for `SystemTime`.
pub mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    /// Formats a time as RFC 3339 (UTC).
    pub fn format(t: SystemTime) -> String {
        OffsetDateTime::from(t)
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
    }

    /// Serde serializer.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }

    /// Serde deserializer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339)
            .map(SystemTime::from)
            .map_err(serde::de::Error::custom)
    }
}
