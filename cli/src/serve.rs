//! Serving the HTTP API: the routes of `api.rs` behind the JSON-error and
//! bearer-token layers, over plain TCP or TLS (rustls, cert + key files).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use rollcall::config::ApiConfig;
use rollcall::Registry;
use tokio_util::sync::CancellationToken;

use crate::{api, auth, errors};

/// Most TLS connections served at once; further ones wait in the backlog.
const MAX_TLS_CONNECTIONS: usize = 1024;

/// Metrics text renderer.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Builds the app with its layers.
pub fn app(registry: Registry, metrics: Option<Render>, token: Option<Arc<str>>) -> Router {
    let mut app = api::router(registry, metrics);
    if let Some(token) = token {
        app = app.layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    }
    app.layer(axum::middleware::from_fn(errors::json_errors))
}

/// Loads the TLS settings of `[api]`, if both files are set.
pub fn tls_config(api: &ApiConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let (cert, key) = match (&api.tls_cert, &api.tls_key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err("api.tls_cert and api.tls_key must be set together".into()),
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| shown(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| shown(cert, &e))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| shown(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("api.tls_cert/tls_key: {e}"))?;
    Ok(Some(Arc::new(cfg)))
}

/// Serves `app` until `shutdown`; returns the bound address once listening.
pub async fn serve(
    listen: SocketAddr,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let task = match tls {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
            {
                tracing::warn!(error = %e, "HTTP API stopped");
            }
        }),
        Some(tls) => tokio::spawn(serve_tls(listener, app, tls, shutdown)),
    };
    Ok((bound, task))
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TLS_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let app = app.clone();
        conns.spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    metrics::counter!("rollcall_api_tls_handshake_failures_total").increment(1);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
    conns.shutdown().await;
}

/// Whether `addr` is reachable from beyond this host.
pub fn beyond_loopback(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}
