//! `[sources.NAME] type = "nats"`: the keys of this backend.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use discovery_core::signed::SigningConfig;

use crate::limits::Limits;
use crate::Error;

/// How agents publish themselves and how discoverers read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsMode {
    /// Core NATS: heartbeat announcements, leave messages, and a query every
    /// agent answers at once (scatter-gather).
    #[default]
    Announce,
    /// JetStream key-value: each agent keeps its record under its id in a
    /// bucket; discoverers read the current values, then watch.
    Kv,
}

/// A secret given inline, read from a file, or read from an environment variable.
///
/// In TOML: `token = "s3cr3t"`, `token = { file = "/run/secrets/nats_token" }`
/// or `token = { env = "NATS_TOKEN" }`. Files are read (and trimmed of
/// surrounding whitespace) each time the source connects, so a rotated secret
/// is picked up at the next restart of the source.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// The secret itself.
    Value(String),
    /// A file holding the secret.
    File {
        /// Path of the file.
        file: PathBuf,
    },
    /// An environment variable holding the secret.
    Env {
        /// Name of the variable.
        env: String,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
        }
    }
}

impl Secret {
    /// Reads the secret. `key` names the config key in errors.
    pub(crate) fn resolve(&self, key: &'static str) -> Result<String, Error> {
        let value = match self {
            Secret::Value(v) => v.clone(),
            Secret::File { file } => std::fs::read_to_string(file)
                .map_err(|e| Error::Secret {
                    key,
                    reason: format!("cannot read {}: {e}", file.display()),
                })?
                .trim()
                .to_owned(),
            Secret::Env { env } => std::env::var(env).map_err(|e| Error::Secret {
                key,
                reason: format!("environment variable `{env}`: {e}"),
            })?,
        };
        if value.is_empty() {
            return Err(Error::Secret {
                key,
                reason: "the secret is empty".into(),
            });
        }
        Ok(value)
    }

    fn check(&self, key: &'static str) -> Result<(), Error> {
        let bad = |reason: &str| Error::Config {
            key,
            reason: reason.to_owned(),
        };
        match self {
            Secret::Value(v) if v.is_empty() => Err(bad("empty secret")),
            Secret::File { file } if file.as_os_str().is_empty() => Err(bad("empty file path")),
            Secret::Env { env } if env.is_empty() => Err(bad("empty variable name")),
            _ => Ok(()),
        }
    }
}

/// The keys of a `type = "nats"` source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// NATS server URL (`nats://host:4222`, `tls://host:4222`), or a list of
    /// URLs of one cluster; the client picks one and fails over to the others.
    #[serde(default = "default_url", deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// First subject tokens of every subject this source uses
    /// (`{prefix}.announce.{id}`, `{prefix}.leave.{id}`, `{prefix}.query`).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// How often an agent renews its announcement (or KV record). Its
    /// observations live 3 x `heartbeat` without renewal.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// `announce` (core NATS subjects) or `kv` (JetStream key-value bucket).
    #[serde(default)]
    pub mode: NatsMode,
    /// Whether an agent (`rollcall agent`) also discovers the other peers
    /// through this source. A process that does not announce always discovers.
    #[serde(default = "default_true")]
    pub discover: bool,
    /// A query's replies are complete once none arrived for this long
    /// (unless `expected_peers` replied first).
    #[serde(default = "default_query_quiet_gap", with = "humantime_serde")]
    pub query_quiet_gap: Duration,
    /// Longest a query (or a KV initial read) is waited for, however replies trickle in.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// When set, a query is complete as soon as this many distinct agents replied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_peers: Option<usize>,
    /// `kv` mode: the JetStream key-value bucket (created if missing).
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// `kv` mode: the bucket's max_age when this source creates it; default
    /// 3 x `heartbeat`. An existing bucket keeps its own.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub kv_max_age: Option<Duration>,
    /// Agents also register with the NATS services API (`$SRV.PING`,
    /// `$SRV.INFO`, `$SRV.STATS`) under `micro_name`.
    #[serde(default)]
    pub micro: bool,
    /// The service name an agent registers with `micro = true`.
    #[serde(default = "default_micro_name")]
    pub micro_name: String,
    /// Discover every instance of these NATS micro services (registered by
    /// anyone with the services API) through `$SRV.PING.<name>`.
    #[serde(default)]
    pub micro_services: Vec<String>,
    /// How often `micro_services` are pinged; an instance is kept 3 x this long
    /// without an answer.
    #[serde(default = "default_micro_poll", with = "humantime_serde")]
    pub micro_poll: Duration,
    /// Authentication token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// User name (with `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (with `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// NKey seed (`SU...`) to sign the server's challenge with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<Secret>,
    /// Credentials file (`.creds`: user JWT and NKey seed) for decentralised auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// Require TLS even for `nats://` URLs (`tls://` URLs always require it).
    #[serde(default)]
    pub tls_required: bool,
    /// PEM file of the CA certificate(s) the server's certificate is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `tls_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// How long one connection attempt may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest delay between two reconnection attempts (they start at once
    /// and back off up to this).
    #[serde(default = "default_reconnect_delay_max", with = "humantime_serde")]
    pub reconnect_delay_max: Duration,
    /// Connection name shown by the server (`nats server report connections`);
    /// default `rollcall-<source name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// `[sources.NAME.signing]`: sign records, require signatures, trusted
    /// keys, trust on first use (protocol 1.1).
    #[serde(default)]
    pub signing: SigningConfig,
    /// `[sources.NAME.limits]`: peers, addresses, metadata and record rate
    /// one discoverer accepts.
    #[serde(default)]
    pub limits: Limits,
}

fn default_url() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".to_owned()]
}
fn default_subject_prefix() -> String {
    "rollcall".to_owned()
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(5)
}
fn default_true() -> bool {
    true
}
fn default_query_quiet_gap() -> Duration {
    Duration::from_millis(300)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_bucket() -> String {
    "rollcall".to_owned()
}
fn default_micro_name() -> String {
    "rollcall".to_owned()
}
fn default_micro_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_reconnect_delay_max() -> Duration {
    Duration::from_secs(2)
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        // A comma-separated string is a list too (handy in environment variables).
        OneOrMany::One(s) => s
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: default_url(),
            subject_prefix: default_subject_prefix(),
            heartbeat: default_heartbeat(),
            mode: NatsMode::default(),
            discover: true,
            query_quiet_gap: default_query_quiet_gap(),
            query_timeout: default_query_timeout(),
            expected_peers: None,
            bucket: default_bucket(),
            kv_max_age: None,
            micro: false,
            micro_name: default_micro_name(),
            micro_services: Vec::new(),
            micro_poll: default_micro_poll(),
            token: None,
            user: None,
            password: None,
            nkey: None,
            credentials_file: None,
            tls_required: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            connect_timeout: default_connect_timeout(),
            reconnect_delay_max: default_reconnect_delay_max(),
            client_name: None,
            signing: SigningConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// Shortest heartbeat accepted.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest heartbeat accepted (the TTL, 3 x heartbeat, must fit the wire format comfortably).
const MAX_HEARTBEAT: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// The TTL an agent announces: 3 x heartbeat.
    pub(crate) fn ttl(&self) -> Duration {
        self.heartbeat * 3
    }

    /// The bucket max_age used when creating the bucket.
    pub(crate) fn kv_max_age(&self) -> Duration {
        self.kv_max_age.unwrap_or_else(|| self.ttl())
    }

    /// Checks every key without I/O.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |key: &'static str, reason: String| Err(Error::Config { key, reason });
        if self.url.is_empty() {
            return bad("url", "no NATS server URL given".into());
        }
        for u in &self.url {
            if let Err(e) = async_nats::ServerAddr::from_str(u) {
                return bad("url", format!("`{u}`: {e}"));
            }
        }
        if let Err(reason) = check_subject_prefix(&self.subject_prefix) {
            return bad(
                "subject_prefix",
                format!("`{}`: {reason}", self.subject_prefix),
            );
        }
        if self.heartbeat < MIN_HEARTBEAT || self.heartbeat > MAX_HEARTBEAT {
            return bad(
                "heartbeat",
                format!("{:?} is out of range: use 100ms to 24h", self.heartbeat),
            );
        }
        if self.query_quiet_gap.is_zero() {
            return bad(
                "query_quiet_gap",
                "must be more than 0 (e.g. \"300ms\")".into(),
            );
        }
        if self.query_timeout < self.query_quiet_gap {
            return bad(
                "query_timeout",
                format!(
                    "{:?} is shorter than query_quiet_gap ({:?})",
                    self.query_timeout, self.query_quiet_gap
                ),
            );
        }
        if self.expected_peers == Some(0) {
            return bad("expected_peers", "must be at least 1 (or left out)".into());
        }
        if !is_name(&self.bucket) {
            return bad(
                "bucket",
                format!("`{}`: use letters, digits, `-` and `_` only", self.bucket),
            );
        }
        if let Some(age) = self.kv_max_age {
            if age < self.heartbeat {
                return bad(
                    "kv_max_age",
                    format!("{age:?} is shorter than heartbeat ({:?}): records would vanish between renewals", self.heartbeat),
                );
            }
        }
        if !is_name(&self.micro_name) {
            return bad(
                "micro_name",
                format!(
                    "`{}`: use letters, digits, `-` and `_` only",
                    self.micro_name
                ),
            );
        }
        for name in &self.micro_services {
            if !is_name(name) {
                return bad(
                    "micro_services",
                    format!("`{name}`: a NATS service name has letters, digits, `-` and `_` only"),
                );
            }
        }
        if self.micro_poll < MIN_HEARTBEAT {
            return bad(
                "micro_poll",
                format!("{:?} is too short: use at least 100ms", self.micro_poll),
            );
        }
        let mut methods = Vec::new();
        if let Some(t) = &self.token {
            t.check("token")?;
            methods.push("token");
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => {
                if u.is_empty() {
                    return bad("user", "empty user name".into());
                }
                p.check("password")?;
                methods.push("user/password");
            }
            (Some(_), None) => {
                return bad("password", "`user` is set but `password` is not".into())
            }
            (None, Some(_)) => return bad("user", "`password` is set but `user` is not".into()),
            (None, None) => {}
        }
        if let Some(n) = &self.nkey {
            n.check("nkey")?;
            methods.push("nkey");
        }
        if let Some(c) = &self.credentials_file {
            if c.as_os_str().is_empty() {
                return bad("credentials_file", "empty path".into());
            }
            methods.push("credentials_file");
        }
        if methods.len() > 1 {
            return bad(
                "token",
                format!(
                    "several authentication methods are set ({}): keep one",
                    methods.join(", ")
                ),
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return bad("tls_key", "`tls_cert` is set but `tls_key` is not".into())
            }
            (None, Some(_)) => {
                return bad("tls_cert", "`tls_key` is set but `tls_cert` is not".into())
            }
            _ => {}
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be more than 0".into());
        }
        if self.reconnect_delay_max.is_zero() {
            return bad("reconnect_delay_max", "must be more than 0".into());
        }
        if let Err((key, reason)) = self.signing.validate() {
            return bad(key, reason);
        }
        if let Err((key, reason)) = self.limits.validate() {
            return bad(key, reason);
        }
        if self.signing.require_signed && !self.micro_services.is_empty() {
            return bad(
                "micro_services",
                "NATS micro services cannot be verified: leave micro_services empty with signing.require_signed".into(),
            );
        }
        Ok(())
    }
}

/// A service or bucket name: `[A-Za-z0-9_-]+`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_subject_prefix(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty");
    }
    for token in p.split('.') {
        if token.is_empty() {
            return Err("empty token (leading, trailing or double `.`)");
        }
        if token.contains(['*', '>']) {
            return Err("wildcards `*` and `>` are not allowed");
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("whitespace is not allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_src: &str) -> Result<Config, String> {
        let v: toml::Value = toml::from_str(toml_src).map_err(|e| e.to_string())?;
        Config::deserialize(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.url, vec!["nats://127.0.0.1:4222"]);
        assert_eq!(c.subject_prefix, "rollcall");
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        assert_eq!(c.mode, NatsMode::Announce);
        assert_eq!(c.ttl(), Duration::from_secs(15));
        c.validate().unwrap();
    }

    #[test]
    fn url_is_one_or_many() {
        let c = parse(r#"url = "nats://a:4222""#).unwrap();
        assert_eq!(c.url, vec!["nats://a:4222"]);
        let c = parse(r#"url = ["nats://a:4222", "nats://b:4222"]"#).unwrap();
        assert_eq!(c.url.len(), 2);
        let c = parse(r#"url = "nats://a:4222, nats://b:4222""#).unwrap();
        assert_eq!(c.url, vec!["nats://a:4222", "nats://b:4222"]);
    }

    #[test]
    fn secrets_take_three_forms_and_debug_hides_values() {
        let c = parse(
            r#"
            token = "hunter2"
            "#,
        )
        .unwrap();
        assert_eq!(c.token, Some(Secret::Value("hunter2".into())));
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = parse(
            r#"user = "u"
password = { file = "/run/secrets/p" }"#,
        )
        .unwrap();
        assert_eq!(
            c.password,
            Some(Secret::File {
                file: "/run/secrets/p".into()
            })
        );
        let c = parse(r#"nkey = { env = "NATS_NKEY" }"#).unwrap();
        assert_eq!(
            c.nkey,
            Some(Secret::Env {
                env: "NATS_NKEY".into()
            })
        );
        assert!(parse(r#"token = { nope = "x" }"#).is_err());
    }

    #[test]
    fn secret_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "  abc\n").unwrap();
        assert_eq!(Secret::File { file: f }.resolve("token").unwrap(), "abc");
        assert!(Secret::File {
            file: dir.path().join("missing")
        }
        .resolve("token")
        .is_err());
        assert!(Secret::Env {
            env: "ROLLCALL_TEST_SURELY_UNSET_VAR".into()
        }
        .resolve("token")
        .is_err());
        assert_eq!(Secret::Value("x".into()).resolve("token").unwrap(), "x");
    }

    #[test]
    fn unknown_keys_and_common_keys_are_refused() {
        let e = parse(r#"heartbeet = "5s""#).unwrap_err();
        assert!(e.contains("heartbeet"), "{e}");
        assert!(parse(r#"type = "nats""#).is_err());
        assert!(parse(r#"mode = "gossip""#).is_err());
        assert_eq!(parse(r#"mode = "kv""#).unwrap().mode, NatsMode::Kv);
    }

    #[test]
    fn validation_names_the_key() {
        let cases: Vec<(&str, &str)> = vec![
            (r#"url = []"#, "url"),
            (r#"url = "http://x:1""#, "url"),
            (r#"subject_prefix = "a..b""#, "subject_prefix"),
            (r#"subject_prefix = "a.*""#, "subject_prefix"),
            (r#"heartbeat = "10ms""#, "heartbeat"),
            (r#"query_quiet_gap = "5s""#, "query_timeout"),
            (r#"expected_peers = 0"#, "expected_peers"),
            (r#"bucket = "a.b""#, "bucket"),
            (r#"micro_services = ["a b"]"#, "micro_services"),
            ("user = \"u\"", "password"),
            ("token = \"t\"\nnkey = \"SU\"", "token"),
            (r#"tls_cert = "c.pem""#, "tls_key"),
            (r#"kv_max_age = "1s""#, "kv_max_age"),
        ];
        for (src, key) in cases {
            let c = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            match c.validate() {
                Err(Error::Config { key: k, .. }) => assert_eq!(k, key, "{src}"),
                other => panic!("{src}: {other:?}"),
            }
        }
    }

    #[test]
    fn round_trips_through_serde() {
        let c = parse(
            r#"
            url = ["nats://a:4222"]
            heartbeat = "2s"
            mode = "kv"
            expected_peers = 10
            micro = true
            micro_services = ["orders"]
            token = { env = "T" }
            "#,
        )
        .unwrap();
        let s = toml::to_string(&c).unwrap();
        let back: Config = toml::from_str(&s).unwrap();
        assert_eq!(back, c);
    }
}
