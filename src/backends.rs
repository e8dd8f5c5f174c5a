//! The closed set of backends. Adding one: a crate, a feature in Cargo.toml,
//! and one line in the `backends!` call below.

use std::sync::Arc;

use config::Value;
use discovery_core::DiscoverySource;

pub(crate) enum ParseError {
    Unknown,
    Planned,
    NotCompiled(&'static str),
    // Never built when no backend is compiled in (a facade for `tower` alone).
    #[allow(dead_code)]
    Invalid(Box<serde_path_to_error::Error<config::ConfigError>>),
}

/// Backends named in the design that this release does not ship yet.
pub const PLANNED_TYPES: &[&str] = &[];

macro_rules! backends {
    ($( $ty:literal => $variant:ident ($krate:ident :: $source:ident) ),* $(,)?) => {
        /// A source's backend with its own settings, chosen by `type`.
        #[derive(Clone, Debug)]
        #[non_exhaustive]
        // Built once per source when the config is read: boxing the larger
        // variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        pub enum BackendConfig {
            $(
                #[cfg(feature = $ty)]
                #[doc = concat!("`type = \"", $ty, "\"`")]
                $variant($krate::Config),
            )*
        }

        $(
            #[cfg(feature = $ty)]
            pub use $krate;
        )*

        /// Every backend type rollcall knows, compiled in or not.
        pub const ALL_TYPES: &[&str] = &[$($ty),*];

        /// The backend types compiled into this build.
        pub fn compiled_types() -> Vec<&'static str> {
            let mut v = Vec::new();
            $( if cfg!(feature = $ty) { v.push($ty); } )*
            v
        }

        impl BackendConfig {
            /// The `type` value.
            pub fn type_name(&self) -> &'static str {
                match *self {
                    $( #[cfg(feature = $ty)] BackendConfig::$variant(_) => $ty, )*
                }
            }
        }

        pub(crate) fn parse(ty: &str, value: Value) -> Result<BackendConfig, ParseError> {
            match ty {
                $(
                    #[cfg(feature = $ty)]
                    $ty => serde_path_to_error::deserialize(value)
                        .map(BackendConfig::$variant)
                        .map_err(|e| ParseError::Invalid(Box::new(e))),
                )*
                other => match ALL_TYPES.iter().find(|t| **t == other) {
                    Some(t) => { let _ = value; Err(ParseError::NotCompiled(t)) }
                    None if PLANNED_TYPES.contains(&other) => Err(ParseError::Planned),
                    None => Err(ParseError::Unknown),
                },
            }
        }

        pub(crate) fn build(cfg: &BackendConfig) -> Result<Arc<dyn DiscoverySource>, String> {
            match *cfg {
                $(
                    #[cfg(feature = $ty)]
                    BackendConfig::$variant(ref c) => $krate::$source::new(c.clone())
                        .map(|s| Arc::new(s) as Arc<dyn DiscoverySource>)
                        .map_err(|e| e.to_string()),
                )*
            }
        }
    };
}

// Adding a backend (3 of 3): its line here (see Cargo.toml for 1 and 2).
backends! {
    "static" => Static(backend_static::StaticSource),
    "nats" => Nats(backend_nats::NatsSource),
    "swarm" => Swarm(backend_swarm::SwarmSource),
    "mdns" => Mdns(backend_mdns::MdnsSource),
    "dht" => Dht(backend_dht::DhtSource),
}
