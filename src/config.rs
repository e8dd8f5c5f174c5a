//! The rollcall configuration file: `[registry]`, `[local]`, `[api]` and
//! `[sources.NAME]`, read from TOML and overridden by `ROLLCALL__...` variables.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use config::{Environment, File, FileFormat, Value, ValueKind};
use discovery_core::{DiscoverySource, IdentityConfig, LocalConfig, RegistryConfig, SourceCommon};
use serde::Deserialize;

use crate::backends::{self, BackendConfig};

/// A configuration that cannot be used; the message names the key and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or is not valid TOML.
    #[error("{path}: {message}")]
    Load {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A key is unknown, missing or has a bad value.
    #[error("{path}: {key}: {message}")]
    Key {
        /// The file.
        path: String,
        /// The dotted key path, e.g. `sources.seeds.peers[0].addrs`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Keys whose environment value is a comma-separated list.
const ENV_LIST_KEYS: [&str; 4] = [
    "local.addrs",
    "local.capabilities",
    "registry.exclude_addresses",
    "registry.prefer_networks",
];

/// `[api]`: where `rollcall run` serves its HTTP API.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address of the HTTP API.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token every route but `/healthz` requires.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// Environment variable holding the bearer token (used when `token_file` is unset).
    #[serde(default)]
    pub token_env: Option<String>,
    /// TLS certificate chain (PEM); with `tls_key`, the API speaks HTTPS.
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
}

/// `[dns]`: `rollcall run` answers DNS queries about the roster.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// UDP and TCP listen address, e.g. "127.0.0.1:8600".
    pub listen: SocketAddr,
    /// The zone answered, e.g. "rollcall." (a trailing dot is added if missing).
    #[serde(default = "default_dns_domain")]
    pub domain: String,
    /// TTL of every record.
    #[serde(default = "default_dns_ttl", with = "humantime_serde")]
    pub ttl: std::time::Duration,
}

fn default_dns_domain() -> String {
    "rollcall.".to_owned()
}

fn default_dns_ttl() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7373))
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            token_file: None,
            token_env: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// One `[sources.NAME]` section.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// The section name.
    pub name: String,
    /// The keys every source accepts.
    pub common: SourceCommon,
    /// The backend and its own keys.
    pub backend: BackendConfig,
}

impl SourceConfig {
    /// Builds the source (validates backend settings; no I/O).
    pub fn build(&self) -> Result<Arc<dyn DiscoverySource>, String> {
        backends::build(&self.backend)
    }

    /// The backend type name, as written in `type`.
    pub fn type_name(&self) -> &'static str {
        self.backend.type_name()
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// How observations are merged.
    pub registry: RegistryConfig,
    /// The peer this process announces as an agent.
    pub local: Option<LocalConfig>,
    /// The daemon's HTTP API.
    pub api: ApiConfig,
    /// The daemon's DNS server (off when absent).
    pub dns: Option<DnsConfig>,
    /// The libp2p identity key file, for the sources that need one.
    pub identity: IdentityConfig,
    /// Every source, by name.
    pub sources: Vec<SourceConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    registry: RegistryConfig,
    #[serde(default)]
    local: Option<LocalConfig>,
    #[serde(default)]
    api: ApiConfig,
    #[serde(default)]
    dns: Option<DnsConfig>,
    #[serde(default)]
    identity: IdentityConfig,
    #[serde(default)]
    sources: BTreeMap<String, Value>,
}

impl Config {
    /// Reads `path` (TOML) with `ROLLCALL__SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Like [`Config::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Load {
            path: shown.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_toml_str(&shown, &text, env)
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml_str(
        origin: &str,
        text: &str,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        let load_err = |message: String| ConfigError::Load {
            path: origin.to_owned(),
            message,
        };
        // `config` reports TOML syntax errors without the offending line; the toml crate shows it.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(load_err(format!("not valid TOML: {e}")));
        }
        // Lists from the environment are comma-separated, for the keys that are lists.
        let mut environment = Environment::with_prefix("ROLLCALL")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for key in ENV_LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        if env.is_some() {
            environment = environment.source(env.map(|m| m.into_iter().collect()));
        }
        let built = config::Config::builder()
            .add_source(File::from_str(text, FileFormat::Toml))
            .add_source(environment)
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(built).map_err(|e| key_error(origin, "", e))?;
        let mut sources = Vec::new();
        for (name, value) in raw.sources {
            sources.push(parse_source(origin, &name, value)?);
        }
        if let Some(local) = &raw.local {
            if local.id.trim().is_empty() {
                return Err(ConfigError::Key {
                    path: origin.to_owned(),
                    key: "local.id".into(),
                    message: "must not be empty: give this agent a cluster-unique id".into(),
                });
            }
            local.to_local_peer().map_err(|e| ConfigError::Key {
                path: origin.to_owned(),
                key: "local.addrs".into(),
                message: e.to_string(),
            })?;
        }
        let cfg = Config {
            registry: raw.registry,
            local: raw.local,
            api: raw.api,
            dns: raw.dns,
            identity: raw.identity,
            sources,
        };
        Ok(cfg)
    }

    /// Sources with `enabled = true`.
    pub fn enabled_sources(&self) -> impl Iterator<Item = &SourceConfig> {
        self.sources.iter().filter(|s| s.common.enabled)
    }
}

fn key_error<E: std::fmt::Display>(
    origin: &str,
    prefix: &str,
    e: serde_path_to_error::Error<E>,
) -> ConfigError {
    let inner = e.path().to_string();
    let key = match (prefix.is_empty(), inner.as_str()) {
        (true, _) => inner,
        (false, ".") | (false, "") => prefix.to_owned(),
        (false, _) => format!("{prefix}.{inner}"),
    };
    let message = e.into_inner().to_string();
    let hint = if message.contains("unknown field") {
        " (check the spelling; the README lists every key)"
    } else if message.contains("missing field") {
        " (add it to this section)"
    } else {
        ""
    };
    ConfigError::Key {
        path: origin.to_owned(),
        key,
        message: format!("{message}{hint}"),
    }
}

fn parse_source(origin: &str, name: &str, value: Value) -> Result<SourceConfig, ConfigError> {
    let prefix = format!("sources.{name}");
    let key_err = |key: String, message: String| ConfigError::Key {
        path: origin.to_owned(),
        key,
        message,
    };
    let mut table = value.into_table().map_err(|_| {
        key_err(
            prefix.clone(),
            "must be a table: [sources.NAME] with a `type` key".into(),
        )
    })?;
    let ty = match table.remove("type") {
        Some(v) => v
            .into_string()
            .map_err(|_| key_err(format!("{prefix}.type"), "must be a string".into()))?,
        None => {
            return Err(key_err(
                format!("{prefix}.type"),
                format!(
                    "missing: say which backend this source uses, one of {}",
                    backends::ALL_TYPES.join(", ")
                ),
            ))
        }
    };
    let mut common_table = config::Map::new();
    for k in SourceCommon::KEYS {
        if let Some(v) = table.remove(k) {
            common_table.insert(k.to_owned(), v);
        }
    }
    let common: SourceCommon =
        serde_path_to_error::deserialize(Value::new(None, ValueKind::Table(common_table)))
            .map_err(|e| key_error(origin, &prefix, e))?;
    let rest = Value::new(None, ValueKind::Table(table));
    let backend = backends::parse(&ty, rest).map_err(|e| match e {
        backends::ParseError::Unknown => key_err(
            format!("{prefix}.type"),
            format!("unknown backend `{ty}`: use one of {}", backends::ALL_TYPES.join(", ")),
        ),
        backends::ParseError::Planned => key_err(
            format!("{prefix}.type"),
            format!("the `{ty}` backend is not part of this release yet; available: {}", backends::ALL_TYPES.join(", ")),
        ),
        backends::ParseError::NotCompiled(feature) => key_err(
            format!("{prefix}.type"),
            format!(
                "backend `{ty}` is not compiled into this rollcall; rebuild with `--features {feature}` (or `--features full`)"
            ),
        ),
        backends::ParseError::Invalid(e) => key_error(origin, &prefix, *e),
    })?;
    Ok(SourceConfig {
        name: name.to_owned(),
        common,
        backend,
    })
}
