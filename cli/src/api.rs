//! The HTTP API of `rollcall run`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use discovery_core::{AliasKind, Peer, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::fanout::Fanout;

/// Longest a long-poll `GET /v1/watch?index=N` waits.
const LONG_POLL_MAX: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct App {
    registry: Registry,
    /// `/v1/watch`: one encoding of each snapshot and event for all clients.
    fanout: Fanout,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

/// Serves the API until `shutdown`. `metrics` renders the Prometheus text.
#[allow(dead_code)] // superseded by serve.rs (layers, TLS); kept for embedders of this module
pub async fn serve(
    listen: SocketAddr,
    registry: Registry,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = router(registry, metrics);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "HTTP API stopped");
        }
    });
    Ok((bound, task))
}

pub(crate) fn router(
    registry: Registry,
    metrics: Option<Arc<dyn Fn() -> String + Send + Sync>>,
) -> Router {
    Router::new()
        .route("/v1/peers", get(peers))
        .route("/v1/peers/{id}", get(peer))
        .route("/v1/watch", get(watch))
        .route("/v1/bootstrap", get(bootstrap))
        .route("/v1/sources", get(sources))
        .route("/v1/conflicts", get(conflicts))
        .route("/v1/sd/prometheus", get(prometheus_sd))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(App {
            fanout: Fanout::new(registry.clone()),
            registry,
            metrics,
        })
}

/// Filters of `GET /v1/peers`; every given filter must match.
#[derive(Debug, Default, Deserialize)]
struct PeerFilter {
    capability: Option<String>,
    status: Option<String>,
    source: Option<String>,
    /// `key=value` or `key`.
    label: Option<String>,
}

impl PeerFilter {
    fn matches(&self, p: &Peer) -> bool {
        self.capability
            .as_ref()
            .is_none_or(|c| p.capabilities.iter().any(|x| x == c))
            && self
                .status
                .as_ref()
                .is_none_or(|s| p.status.as_deref() == Some(s.as_str()))
            && self
                .source
                .as_ref()
                .is_none_or(|s| p.sources.iter().any(|x| &*x.name == s.as_str()))
            && self.label.as_ref().is_none_or(|l| match l.split_once('=') {
                Some((k, v)) => p.labels.get(k).is_some_and(|x| x == v),
                None => p.labels.contains_key(l.as_str()),
            })
    }
}

#[derive(Serialize)]
struct RosterBody {
    version: u64,
    peers: Vec<Arc<Peer>>,
}

async fn peers(State(app): State<App>, Query(filter): Query<PeerFilter>) -> Json<RosterBody> {
    let roster = app.registry.snapshot();
    Json(RosterBody {
        version: roster.version,
        peers: roster
            .peers
            .into_iter()
            .filter(|p| filter.matches(p))
            .collect(),
    })
}

async fn peer(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.registry.peer(&id) {
        Some(p) => Json(p).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no peer `{id}`") })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct WatchQuery {
    /// Long-poll: answer once the roster version is above this.
    index: Option<u64>,
    /// Long-poll: longest wait ("30s"), at most 60 s.
    wait: Option<String>,
}

async fn watch(State(app): State<App>, Query(q): Query<WatchQuery>) -> Response {
    if let Some(index) = q.index {
        let wait = q
            .wait
            .as_deref()
            .and_then(|w| humantime::parse_duration(w).ok())
            .unwrap_or(LONG_POLL_MAX)
            .min(LONG_POLL_MAX);
        app.registry.wait_version_after(index, wait).await;
        return match app.fanout.current().await {
            Ok(snap) => {
                let mut resp =
                    ([(header::CONTENT_TYPE, "application/json")], snap.json()).into_response();
                if let Ok(v) = snap.version.to_string().parse() {
                    resp.headers_mut().insert("x-rollcall-index", v);
                }
                resp
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(serde_json::json!({ "error": e })),
            )
                .into_response(),
        };
    }
    app.fanout.sse()
}

/// Dialable libp2p multiaddrs: every address of every peer with a peer id, with `/p2p/<id>`.
async fn bootstrap(State(app): State<App>) -> Json<Vec<String>> {
    let mut out = Vec::new();
    for p in app.registry.snapshot().peers {
        let Some(pid) = p.alias(AliasKind::PeerId) else {
            continue;
        };
        for a in &p.addrs {
            // Only transport addresses (ip/dns + tcp/udp) can be dialled by libp2p.
            if a.contains("/http") {
                continue;
            }
            if a.contains("/p2p/") {
                out.push(a.clone());
            } else {
                out.push(format!("{a}/p2p/{pid}"));
            }
        }
    }
    out.sort();
    out.dedup();
    Json(out)
}

async fn sources(State(app): State<App>) -> Json<Vec<discovery_core::SourceStatus>> {
    Json(app.registry.sources())
}

async fn conflicts(State(app): State<App>) -> Json<Vec<discovery_core::Conflict>> {
    Json(app.registry.conflicts())
}

#[derive(Serialize)]
struct SdGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// Prometheus `http_sd_config` format: one group per peer, its addresses as `host:port`.
async fn prometheus_sd(State(app): State<App>) -> Json<Vec<SdGroup>> {
    let mut groups = Vec::new();
    for p in app.registry.snapshot().peers {
        let targets: Vec<String> = p.addrs.iter().filter_map(|a| host_port(a)).collect();
        if targets.is_empty() {
            continue;
        }
        let mut labels = BTreeMap::new();
        labels.insert("__meta_rollcall_id".to_owned(), p.id.clone());
        if let Some(s) = &p.status {
            labels.insert("__meta_rollcall_status".to_owned(), s.clone());
        }
        for (k, v) in &p.labels {
            let key: String = k
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            labels.insert(format!("__meta_rollcall_label_{key}"), v.clone());
        }
        labels.insert(
            "__meta_rollcall_sources".to_owned(),
            p.sources
                .iter()
                .map(|s| &*s.name)
                .collect::<Vec<_>>()
                .join(","),
        );
        groups.push(SdGroup { targets, labels });
    }
    Json(groups)
}

fn host_port(addr: &str) -> Option<String> {
    let parts: Vec<&str> = addr.split('/').collect();
    // ["", "ip4", "10.0.0.1", "tcp", "9000", ...]
    match parts.as_slice() {
        ["", "ip4" | "dns" | "dns4", host, "tcp", port, ..] => Some(format!("{host}:{port}")),
        // A /dns6/ host is a name: brackets belong around IPv6 literals only.
        ["", "dns6", host, "tcp", port, ..] => Some(format!("{host}:{port}")),
        ["", "ip6", host, "tcp", port, ..] => Some(format!("[{host}]:{port}")),
        _ => None,
    }
}

async fn readyz(State(app): State<App>) -> Response {
    // One rule with `Registry::ready()`: every primary completed a successful sync.
    let not_ready = app.registry.not_ready_reasons();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, not_ready.join("\n")).into_response()
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    match &app.metrics {
        Some(render) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_targets_from_multiaddrs() {
        assert_eq!(
            host_port("/ip4/10.0.0.1/tcp/9000").as_deref(),
            Some("10.0.0.1:9000")
        );
        assert_eq!(
            host_port("/ip6/::1/tcp/9000/p2p/x").as_deref(),
            Some("[::1]:9000")
        );
        assert_eq!(
            host_port("/dns/walnut/tcp/80/http").as_deref(),
            Some("walnut:80")
        );
        assert_eq!(host_port("/ip4/10.0.0.1/udp/9000/quic-v1"), None);
        assert_eq!(
            host_port("/dns6/walnut.example/tcp/9000").as_deref(),
            Some("walnut.example:9000")
        );
    }
}
