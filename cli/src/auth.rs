//! Bearer-token auth of the HTTP API: every route but `/healthz` needs
//! `Authorization: Bearer <token>` once a token is configured.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcall::config::ApiConfig;

/// The token could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `token_file` unreadable or empty.
    #[error("api.token_file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `token_env` names an unset or empty variable.
    #[error("api.token_env: environment variable `{0}` is unset or empty")]
    Env(String),
}

/// The configured token: `token_file` first, else `token_env`; `None` = no auth.
pub fn load_token(api: &ApiConfig) -> Result<Option<Arc<str>>, TokenError> {
    if let Some(path) = &api.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::File {
                path: path.display().to_string(),
                message: "is empty".into(),
            });
        }
        return Ok(Some(Arc::from(t)));
    }
    if let Some(var) = &api.token_env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Arc::from(v.trim()))),
            _ => Err(TokenError::Env(var.clone())),
        };
    }
    Ok(None)
}

/// Compares without an early exit, so timing does not leak the prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: lets `/healthz` through, checks the token on the rest.
pub async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if same(t.trim().as_bytes(), token.as_bytes()) => next.run(req).await,
        given => {
            let why = if given.is_some() {
                "wrong bearer token"
            } else {
                "missing `Authorization: Bearer <token>` header"
            };
            metrics::counter!("rollcall_api_unauthorized_requests_total").increment(1);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({ "error": why })),
            )
                .into_response()
        }
    }
}
