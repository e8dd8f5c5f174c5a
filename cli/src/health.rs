//! The agent's `GET /health` endpoint: answers with its identity as JSON, as
//! the agents of the context doc do.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use rollcall::agent::HealthBody;
use rollcall::LocalPeer;
use tokio_util::sync::CancellationToken;

/// Serves `GET /health` until `shutdown`. Returns the bound address once listening.
pub async fn serve_health(
    listen: SocketAddr,
    peer: &LocalPeer,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let body = HealthBody::of(peer);
    let app = Router::new().route(
        "/health",
        get(move || std::future::ready(Json(body.clone()))),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "health endpoint stopped");
        }
    });
    Ok((bound, task))
}
