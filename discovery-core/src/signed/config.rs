//! `[sources.NAME.signing]`: whether this source signs, and what it accepts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Signing and verification keys of one source. The defaults sign nothing
/// and accept unsigned records, as before signing existed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// Sign every record this process sends with its identity key
    /// (`[identity] file`).
    #[serde(default)]
    pub sign: bool,
    /// Reject unsigned records (and, with `tofu` or `trusted_keys`, records
    /// from keys not bound to their agent id).
    #[serde(default)]
    pub require_signed: bool,
    /// Keys allowed to sign; when not empty, a signed record from any other
    /// key is rejected (`untrusted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<TrustedKey>,
    /// Trust on first use: the first key seen for an agent id is pinned (for
    /// the life of the process); another key claiming that id is an identity
    /// conflict, rejected and reported.
    #[serde(default = "default_tofu")]
    pub tofu: bool,
    /// A signed record whose timestamp is further than this from the local
    /// clock is rejected (`replayed`).
    #[serde(default = "default_max_clock_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Keys (and pinned agent ids) remembered at most; records of further new
    /// keys are rejected (`capacity`) until old ones age out.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// One trusted key: a libp2p peer id (`12D3KooW...`), optionally bound to
/// one agent id. In TOML: `"12D3KooW..."` or `{ peer_id = "12D3KooW...", id = "agent-7" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrustedKey {
    /// Any agent id may be signed by this key.
    Any(String),
    /// Only this agent id may be signed by this key.
    Bound {
        /// The key's peer id.
        peer_id: String,
        /// The one agent id it may sign for.
        id: String,
    },
}

impl TrustedKey {
    /// The peer id.
    pub fn peer_id(&self) -> &str {
        match self {
            TrustedKey::Any(p) | TrustedKey::Bound { peer_id: p, .. } => p,
        }
    }
}

fn default_tofu() -> bool {
    true
}
/// Default of `max_clock_skew`: 5 minutes.
pub fn default_max_clock_skew() -> Duration {
    Duration::from_secs(300)
}
fn default_max_keys() -> usize {
    100_000
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            sign: false,
            require_signed: false,
            trusted_keys: Vec::new(),
            tofu: default_tofu(),
            max_clock_skew: default_max_clock_skew(),
            max_keys: default_max_keys(),
        }
    }
}

impl SigningConfig {
    /// A discoverer's strict settings: unsigned records are rejected, the
    /// rest as by default (trust on first use, no `trusted_keys`).
    pub fn strict() -> Self {
        SigningConfig {
            require_signed: true,
            ..SigningConfig::default()
        }
    }

    /// Checks the keys; the error names the key and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for k in &self.trusted_keys {
            if k.peer_id().parse::<crate::identity::PeerId>().is_err() {
                return Err((
                    "signing.trusted_keys",
                    format!("`{}` is not a libp2p peer id", k.peer_id()),
                ));
            }
        }
        if self.max_clock_skew.is_zero() {
            return Err(("signing.max_clock_skew", "must be more than 0".into()));
        }
        if self.max_keys == 0 {
            return Err(("signing.max_keys", "must be at least 1".into()));
        }
        Ok(())
    }
}
