//! Connecting to NATS (auth, TLS, reconnect policy) and following the link state.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};
use tokio::sync::watch;

use crate::config::Config;
use crate::Error;

/// The connection as the source's tasks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    /// Connected now.
    pub connected: bool,
    /// Bumped at every reconnection (0 for the first connection).
    pub epoch: u64,
}

/// A connected client and its link state.
#[derive(Debug)]
pub(crate) struct Conn {
    pub client: Client,
    pub link: watch::Receiver<Link>,
}

/// Delay before reconnection attempt `attempts` (1-based): the first at once,
/// then 50 ms doubling up to `max`, with up to 20 % jitter so a fleet of
/// agents does not reconnect in lockstep.
pub(crate) fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = (attempts - 2).min(16) as u32;
    let base = Duration::from_millis(50).saturating_mul(1 << exp).min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = base.mul_f64(f64::from(nanos % 200) / 1000.0);
    (base + jitter).min(max)
}

/// Connects once. Secrets are read here (not in `new`), so a missing file or
/// variable is a failure of this attempt that names the key.
pub(crate) async fn connect(cfg: &Config, source: &str) -> Result<Conn, Error> {
    let addrs = cfg
        .url
        .iter()
        .map(|u| {
            ServerAddr::from_str(u).map_err(|e| Error::Config {
                key: "url",
                reason: format!("`{u}`: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let (tx, rx) = watch::channel(Link {
        connected: true,
        epoch: 0,
    });
    let tx = Arc::new(tx);
    // The first `Connected` event is the initial connection, already reflected.
    let initial = Arc::new(AtomicBool::new(true));
    let src: Arc<str> = Arc::from(source);
    let max = cfg.reconnect_delay_max;
    let mut opts = ConnectOptions::new()
        .name(cfg.client_name.clone().unwrap_or_else(|| format!("rollcall-{source}")))
        .connection_timeout(cfg.connect_timeout)
        .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max))
        .event_callback(move |event| {
            let tx = tx.clone();
            let initial = initial.clone();
            let src = src.clone();
            async move {
                match event {
                    Event::Connected => {
                        if initial.swap(false, Ordering::SeqCst) {
                            return;
                        }
                        tracing::info!(source = %src, "reconnected to NATS");
                        tx.send_modify(|l| {
                            l.connected = true;
                            l.epoch += 1;
                        });
                    }
                    Event::Disconnected => {
                        tracing::warn!(source = %src, "disconnected from NATS; reconnecting");
                        tx.send_modify(|l| l.connected = false);
                    }
                    Event::Closed => tx.send_modify(|l| l.connected = false),
                    Event::SlowConsumer(sid) => {
                        metrics::counter!("rollcall_nats_slow_consumer_total", "source" => src.to_string()).increment(1);
                        tracing::warn!(source = %src, subscription = sid, "slow consumer: the server dropped messages for this source");
                    }
                    // Failed reconnection attempts: the disconnection was already reported.
                    Event::ClientError(e) => tracing::debug!(source = %src, error = %e, "NATS client error"),
                    other => tracing::warn!(source = %src, event = %other, "NATS connection event"),
                }
            }
        });

    if let Some(t) = &cfg.token {
        opts = opts.token(t.resolve("token")?);
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.resolve("password")?);
    }
    if let Some(n) = &cfg.nkey {
        opts = opts.nkey(n.resolve("nkey")?);
    }
    if let Some(path) = &cfg.credentials_file {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| Error::Secret {
                key: "credentials_file",
                reason: format!("{}: {e}", path.display()),
            })?;
    }
    if cfg.tls_required || cfg.tls_ca.is_some() || cfg.tls_cert.is_some() {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }

    let client = opts.connect(addrs).await.map_err(|e| Error::Connect {
        url: cfg.url.join(", "),
        reason: e.to_string(),
    })?;
    Ok(Conn { client, link: rx })
}

/// Waits for the next reconnection (an epoch after `seen` while connected);
/// never returns if the link state is gone.
pub(crate) async fn reconnected(link: &mut watch::Receiver<Link>, seen: &mut u64) {
    loop {
        if link.changed().await.is_err() {
            return std::future::pending().await;
        }
        let l = *link.borrow_and_update();
        if l.connected && l.epoch != *seen {
            *seen = l.epoch;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_starts_at_once_and_is_capped() {
        let max = Duration::from_secs(2);
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        let d2 = reconnect_delay(2, max);
        assert!(
            d2 >= Duration::from_millis(50) && d2 < Duration::from_millis(61),
            "{d2:?}"
        );
        for n in 3..200 {
            assert!(reconnect_delay(n, max) <= max);
        }
        assert!(reconnect_delay(100, max) >= Duration::from_secs(2) - Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn reconnected_fires_on_a_new_epoch_only() {
        let (tx, mut rx) = watch::channel(Link {
            connected: true,
            epoch: 0,
        });
        let mut seen = 0;
        tx.send_modify(|l| l.connected = false);
        let mut fut = Box::pin(async {
            reconnected(&mut rx, &mut seen).await;
            seen
        });
        assert!(
            futures::poll!(&mut fut).is_pending(),
            "a disconnection is not a reconnection"
        );
        tx.send_modify(|l| {
            l.connected = true;
            l.epoch = 1;
        });
        assert_eq!(fut.await, 1);
    }
}
