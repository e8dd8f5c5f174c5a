//! The HTTP identity probe: ask an address's health endpoint who answers there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use discovery_core::multiaddr::Protocol;
use discovery_core::{parse_addr, Alias, AliasKind, Metadata, Multiaddr};
use serde_json::{Map, Value};

use crate::ProbeConfig;

/// Larger health answers are refused.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What a health endpoint said about its peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Health {
    /// Agent id (`id` or `agent_id`).
    pub(crate) id: Option<String>,
    /// libp2p peer id (`peer_id`, an alias of kind `peer_id`, or a `/p2p/` suffix).
    pub(crate) peer_id: Option<String>,
    /// Every other identity claim (container id, task id, ...).
    pub(crate) aliases: Vec<Alias>,
    /// Addresses it reports (`addrs`, `multiaddrs`), `/p2p/` suffix removed.
    pub(crate) addrs: Vec<Multiaddr>,
    /// Descriptive fields.
    pub(crate) meta: Metadata,
}

impl Health {
    /// The identity used to tell peers apart: the agent id, else the peer id.
    pub(crate) fn identity(&self) -> Option<&str> {
        self.id.as_deref().or(self.peer_id.as_deref())
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer (refused, timed out, reset).
    Unreachable(String),
    /// An answer with a non-2xx status.
    Status(u16),
    /// An answer that is not a health JSON object.
    Malformed(String),
}

impl Failure {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "unreachable",
            Failure::Status(_) => "http_status",
            Failure::Malformed(_) => "malformed",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(e) => write!(f, "unreachable: {e}"),
            Failure::Status(s) => write!(f, "HTTP status {s}"),
            Failure::Malformed(e) => write!(f, "malformed answer: {e}"),
        }
    }
}

/// Probes with one shared HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct Prober {
    client: reqwest::Client,
    cfg: ProbeConfig,
    source: Arc<str>,
}

impl Prober {
    pub(crate) fn new(cfg: ProbeConfig, source: Arc<str>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            // Health endpoints are on the cluster network: never through a proxy.
            .no_proxy()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("rollcall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Prober {
            client,
            cfg,
            source,
        })
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// The URL probed for a target.
    pub(crate) fn url(&self, target: SocketAddr) -> String {
        format!("http://{target}{}", self.cfg.path)
    }

    /// Probes a target, retrying failures that may pass (no answer, 5xx)
    /// `retries` times with exponential backoff (on tokio time). A malformed
    /// answer or a 4xx is final at once.
    pub(crate) async fn probe(&self, target: SocketAddr) -> Result<Health, Failure> {
        let url = self.url(target);
        let mut delay = self.cfg.backoff;
        let mut attempt = 0u32;
        let outcome = loop {
            let res = self.once(&url).await;
            let retryable = match &res {
                Err(Failure::Unreachable(_)) => true,
                Err(Failure::Status(s)) => *s >= 500,
                _ => false,
            };
            if !retryable || attempt >= self.cfg.retries {
                break res;
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(60));
        };
        let result = match &outcome {
            Ok(_) => "ok",
            Err(f) => f.label(),
        };
        metrics::counter!("rollcall_static_probes_total", "source" => self.source.to_string(), "result" => result).increment(1);
        outcome
    }

    async fn once(&self, url: &str) -> Result<Health, Failure> {
        let mut resp = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failure::Status(status.as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_BODY_BYTES as u64)
        {
            return Err(Failure::Malformed(format!(
                "larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure::Malformed(format!(
                    "larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let (health, dropped) = parse_health(&body).map_err(Failure::Malformed)?;
        if dropped > 0 {
            metrics::counter!("rollcall_static_addresses_dropped_total", "source" => self.source.to_string()).increment(dropped as u64);
            tracing::debug!(source = %self.source, url, dropped, "health answer has invalid addresses; dropped them");
        }
        Ok(health)
    }
}

/// The error and its causes in one line ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

/// Parses a health answer leniently: rollcall's agent health JSON
/// (`id`, `aliases`, `addrs`, `name`, `status`, `capabilities`, `labels`) and
/// the CHORUS style (`peer_id`, `multiaddrs`); unknown fields are ignored,
/// fields of the wrong type are skipped. Returns the invalid addresses' count.
pub(crate) fn parse_health(body: &[u8]) -> Result<(Health, usize), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".to_owned());
    };
    let mut h = Health {
        id: string(&o, "id").or_else(|| string(&o, "agent_id")),
        peer_id: string(&o, "peer_id"),
        ..Default::default()
    };
    if let Some(Value::Array(list)) = o.get("aliases") {
        for a in list {
            let (Some(kind), Some(value)) = (
                a.get("kind").and_then(Value::as_str),
                a.get("value").and_then(Value::as_str),
            ) else {
                continue;
            };
            let (Ok(kind), value) = (
                serde_json::from_value::<AliasKind>(Value::String(kind.to_owned())),
                value.trim(),
            ) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            match kind {
                AliasKind::AgentId => {
                    h.id.get_or_insert_with(|| value.to_owned());
                }
                AliasKind::PeerId => {
                    h.peer_id.get_or_insert_with(|| value.to_owned());
                }
                _ => {
                    let a = Alias::new(kind, value);
                    if !h.aliases.contains(&a) {
                        h.aliases.push(a);
                    }
                }
            }
        }
    }
    let mut dropped = 0;
    for key in ["addrs", "multiaddrs"] {
        let Some(Value::Array(list)) = o.get(key) else {
            continue;
        };
        for a in list {
            let Some(s) = a.as_str() else {
                dropped += 1;
                continue;
            };
            let Ok(mut m) = parse_addr(s) else {
                dropped += 1;
                continue;
            };
            if let Some(Protocol::P2p(pid)) = m.iter().last() {
                m.pop();
                h.peer_id.get_or_insert_with(|| pid.to_string());
            }
            if !m.is_empty() && !h.addrs.contains(&m) {
                h.addrs.push(m);
            }
        }
    }
    h.meta = Metadata {
        name: string(&o, "name"),
        status: string(&o, "status"),
        capabilities: match o.get("capabilities") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        version: string(&o, "version"),
        labels: match o.get("labels") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect(),
            _ => Default::default(),
        },
    };
    Ok((h, dropped))
}

fn string(o: &Map<String, Value>, key: &str) -> Option<String> {
    o.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: &str = "12D3KooWGBfVmtXPRmsNHU7bUbh6JXvMmzHjr8gnVtdQ1fpjUMGs";

    #[test]
    fn rollcall_agent_health() {
        let body = format!(
            r#"{{"id": "agent-7", "aliases": [{{"kind": "agent_id", "value": "agent-7"}}, {{"kind": "peer_id", "value": "{PID}"}},
               {{"kind": "container_id", "value": "abcdef123456"}}, {{"kind": "martian", "value": "x"}}],
               "addrs": ["/ip4/10.0.1.7/tcp/9000", "not an address"], "name": "Seven", "status": "idle",
               "capabilities": ["go_development"], "labels": {{"model": "llama3.1:8b", "n": 3}}, "extra": {{"ignored": true}}}}"#
        );
        let (h, dropped) = parse_health(body.as_bytes()).expect("parses");
        assert_eq!(h.id.as_deref(), Some("agent-7"));
        assert_eq!(h.peer_id.as_deref(), Some(PID));
        assert_eq!(h.aliases, vec![Alias::container_id("abcdef123456")]);
        assert_eq!(
            h.addrs,
            vec![parse_addr("/ip4/10.0.1.7/tcp/9000").expect("valid")]
        );
        assert_eq!(dropped, 1);
        assert_eq!(h.meta.name.as_deref(), Some("Seven"));
        assert_eq!(h.meta.status.as_deref(), Some("idle"));
        assert_eq!(h.meta.capabilities, ["go_development"]);
        assert_eq!(h.meta.labels.len(), 1);
        assert_eq!(h.identity(), Some("agent-7"));
    }

    #[test]
    fn chorus_health() {
        let body = format!(
            r#"{{"peer_id": "{PID}", "multiaddrs": ["/ip4/127.0.0.1/tcp/9000/p2p/{PID}", "/ip4/10.0.1.7/tcp/9000/p2p/{PID}"],
               "connected_peers": 5, "gossipsub_topics": ["a"], "status": "healthy"}}"#
        );
        let (h, dropped) = parse_health(body.as_bytes()).expect("parses");
        assert_eq!(dropped, 0);
        assert_eq!(h.id, None);
        assert_eq!(h.identity(), Some(PID));
        assert_eq!(
            h.addrs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            ["/ip4/127.0.0.1/tcp/9000", "/ip4/10.0.1.7/tcp/9000"]
        );
    }

    #[test]
    fn peer_id_from_a_p2p_suffix() {
        let body = format!(r#"{{"multiaddrs": ["/ip4/10.0.1.7/tcp/9000/p2p/{PID}"]}}"#);
        let (h, _) = parse_health(body.as_bytes()).expect("parses");
        assert_eq!(h.peer_id.as_deref(), Some(PID));
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for bad in ["", "{", "[]", "42", "\"x\"", "{\"id\": "] {
            assert!(parse_health(bad.as_bytes()).is_err(), "{bad}");
        }
        let (h, _) =
            parse_health(br#"{"id": 5, "addrs": "x", "aliases": [1, {"kind": 2}], "labels": []}"#)
                .expect("lenient");
        assert_eq!(h, Health::default());
    }
}
