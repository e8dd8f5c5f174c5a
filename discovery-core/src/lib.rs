//! discovery-core: the [`DiscoverySource`] trait, the observation model, and
//! the [`Registry`] that merges what every source sees into one roster.
//!
//! A backend implements [`DiscoverySource`]; the registry runs it under
//! supervision (restart with backoff on error or panic) and merges its
//! [`Observation`]s with everyone else's: identity by strong aliases,
//! conflicts reported not merged, per-field priority, filtered and ranked
//! addresses, TTLs, fallback sources, a versioned watch, and a cache file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
mod addr_text;
mod cache;
pub mod config;
#[cfg(feature = "identity")]
pub mod identity;
pub mod labels;
pub mod model;
#[cfg(feature = "tower")]
mod peer_changes;
mod registry;
pub mod roster;
#[cfg(feature = "signed")]
pub mod signed;
pub mod source;
mod status;

pub use addr::{parse_addr, AddrError, AddressClass, AddressPolicy};
pub use config::{IdentityConfig, LocalConfig, RegistryConfig, SourceCommon};
pub use labels::Labels;
pub use model::{Alias, AliasKind, LocalPeer, Metadata, Observation, Role};
pub use multiaddr::{self, Multiaddr};
#[cfg(feature = "tower")]
pub use peer_changes::{PeerChanges, RegistryFailed};
pub use registry::{
    Registry, RegistryBuilder, RegistryError, RosterView, SourceOptions, Watch, WatchUpdate,
};
pub use roster::{Conflict, Peer, PeerSource, Roster, RosterEvent};
pub use source::{
    Closed, DiscoverySource, EventSender, Mode, SourceContext, SourceError, SourceEvent,
};
pub use status::{Health, SourceStatus};
pub use tokio_util::sync::CancellationToken;

/// Internals exposed for the benchmark only; not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use crate::registry::bench::*;
}
