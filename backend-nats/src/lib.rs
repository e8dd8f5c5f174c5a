//! rollcall source for NATS: heartbeat announcements with a TTL, a leave on
//! shutdown, and a query every agent answers at once, so that a cold
//! discoverer has the whole roster after one round trip; optionally a
//! JetStream key-value roster instead, and NATS micro (`$SRV`) interop.
//!
//! The wire protocol (v1) is in `PROTOCOL.md` beside this crate's manifest.
//!
//! # Roles
//! * **Agent** (the process announces, `ctx.announce()` is `Some`): publishes
//!   its record on `{prefix}.announce.{id}` every `heartbeat` with
//!   `ttl = 3 x heartbeat`, answers every `{prefix}.query` at once, re-announces
//!   after a reconnection and publishes `{prefix}.leave.{id}` on shutdown. In
//!   `kv` mode it puts its record in the bucket instead, and deletes it on
//!   shutdown. With `micro = true` it also registers with the NATS services API.
//! * **Discoverer**: subscribes to announcements and leaves; at start and after
//!   every reconnection it queries and gathers the replies (ends at
//!   `expected_peers` or after `query_quiet_gap`). In `kv` mode it reads the
//!   bucket's current values, then watches it. An agent also discovers unless
//!   `discover = false`; its own record is included in the roster like any other.
//!
//! Every observation carries the record's TTL and expires in the registry if
//! not renewed, so a crashed agent leaves after 3 heartbeats, and a discoverer
//! that loses the server keeps what it saw until then (the source is reported
//! degraded meanwhile).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admission;
mod announce;
mod config;
mod conn;
mod drops;
mod gather;
mod kv;
mod limits;
mod micro;
mod sign;
mod wire;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use discovery_core::identity::Identity;
use discovery_core::signed::Verifier;
use discovery_core::{
    CancellationToken, DiscoverySource, EventSender, LocalPeer, SourceContext, SourceError,
};
use tokio::sync::watch;

pub use config::{Config, NatsMode, Secret};
pub use discovery_core::signed::{SigningConfig, TrustedKey};
pub use limits::Limits;

use conn::Link;
use drops::Drops;

/// What can go wrong in this backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration key has a bad value.
    #[error("invalid `{key}`: {reason}")]
    Config {
        /// The key, as written in the `[sources.NAME]` section.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A secret (token, password, nkey, credentials) could not be read.
    #[error("cannot read the secret of `{key}`: {reason}")]
    Secret {
        /// The key that names the secret.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The configured URL(s).
        url: String,
        /// The client's error.
        reason: String,
    },
    /// A NATS operation failed on an established connection.
    #[error("NATS {op} failed: {reason}")]
    Nats {
        /// What was attempted (e.g. `subscribe rollcall.query`).
        op: String,
        /// The client's error.
        reason: String,
    },
    /// The JetStream key-value bucket could not be opened or used.
    #[error("JetStream KV bucket `{bucket}`: {reason}")]
    Kv {
        /// The bucket.
        bucket: String,
        /// Why.
        reason: String,
    },
    /// The local peer's record is larger than the protocol allows.
    #[error("the local peer's record is {size} bytes, over the {limit}-byte limit of the protocol: announce fewer addresses, aliases or labels")]
    RecordTooLarge {
        /// Its size.
        size: usize,
        /// The limit (64 KiB).
        limit: usize,
    },
    /// The NATS services API refused to register the agent.
    #[error("cannot register NATS micro service `{name}`: {reason}")]
    Micro {
        /// The service name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl Error {
    pub(crate) fn nats(op: impl Into<String>, e: impl std::fmt::Display) -> Error {
        Error::Nats {
            op: op.into(),
            reason: e.to_string(),
        }
    }
}

/// The NATS discovery source. See the crate documentation for what it does.
#[derive(Debug)]
pub struct NatsSource {
    config: Arc<Config>,
    /// Sequence numbers of this process's records; kept across restarts of `run`.
    sequence: Arc<AtomicU64>,
    /// Replay state and pinned keys; kept across restarts of `run`.
    verifier: std::sync::OnceLock<Verifier>,
}

impl NatsSource {
    /// Checks the configuration (no I/O: secrets and certificates are read at connect time).
    pub fn new(config: Config) -> Result<NatsSource, Error> {
        config.validate()?;
        // A signing agent's sequence must keep rising across restarts (the
        // receivers' replay check is per key): it starts at the Unix time in ms.
        let first = if config.signing.sign {
            wire::now_millis()
        } else {
            0
        };
        Ok(NatsSource {
            config: Arc::new(config),
            sequence: Arc::new(AtomicU64::new(first)),
            verifier: std::sync::OnceLock::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

/// Shared by the tasks of one run.
pub(crate) struct RunCtx {
    pub cfg: Arc<Config>,
    pub client: async_nats::Client,
    pub events: EventSender,
    pub name: Arc<str>,
    pub drops: Drops,
    /// Ends this run (shutdown, or a failed task).
    pub stop: CancellationToken,
    /// The process is stopping: agents say goodbye.
    pub shutdown: CancellationToken,
    pub link: watch::Receiver<Link>,
    pub sequence: Arc<AtomicU64>,
    /// The key records are signed with (`signing.sign`).
    pub identity: Option<Arc<Identity>>,
    /// Checks received records (`signing`).
    pub verifier: Verifier,
}

impl RunCtx {
    pub(crate) fn next_sequence(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn connected(&self) -> bool {
        self.link.borrow().connected
    }
}

/// The first sync is reported once every part (announce query, KV read, micro
/// poll, or the agent's first announcement when it only announces) finished
/// its first round; later rounds report a sync again.
pub(crate) struct SyncGate {
    remaining: AtomicUsize,
    events: EventSender,
}

pub(crate) struct Part<'a> {
    gate: &'a SyncGate,
    first: bool,
}

impl SyncGate {
    fn new(parts: usize, events: EventSender) -> Self {
        SyncGate {
            remaining: AtomicUsize::new(parts),
            events,
        }
    }
    fn part(&self) -> Part<'_> {
        Part {
            gate: self,
            first: true,
        }
    }
}

impl Part<'_> {
    /// This part finished a round.
    pub(crate) async fn done(&mut self) {
        let all = if std::mem::take(&mut self.first) {
            self.gate.remaining.fetch_sub(1, Ordering::SeqCst) == 1
        } else {
            self.gate.remaining.load(Ordering::SeqCst) == 0
        };
        if all {
            let _ = self.gate.events.synced().await;
        }
    }
}

/// Longest wait between two failed initial connection attempts.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(10);

#[async_trait]
impl DiscoverySource for NatsSource {
    fn uses_identity(&self) -> bool {
        self.config.signing.sign
    }

    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let cfg = self.config.clone();
        let identity = if cfg.signing.sign {
            Some(
                discovery_core::identity::load_or_create(&ctx.identity_file)
                    .map_err(|e| SourceError(Box::new(e)))?,
            )
        } else {
            None
        };
        // Connect, retrying with backoff; the source is degraded meanwhile.
        let mut delay = Duration::from_millis(250);
        let conn = loop {
            let attempt = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                r = conn::connect(&cfg, &ctx.name) => r,
            };
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(source = %ctx.name, error = %e, retry_in = ?delay, "cannot connect to NATS");
                    if ctx.events.degraded(e.to_string()).await.is_err() {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(CONNECT_RETRY_MAX);
                }
            }
        };
        // Not `healthy()` yet: that would count as a finished first attempt;
        // the first complete round reports `synced()`.
        tracing::info!(source = %ctx.name, url = %cfg.url.join(", "), mode = ?cfg.mode, "connected to NATS");

        let local: Option<Arc<LocalPeer>> = ctx.announce().map(|l| Arc::new(l.clone()));
        let discover = local.is_none() || cfg.discover;
        let rc = RunCtx {
            cfg: cfg.clone(),
            client: conn.client.clone(),
            events: ctx.events.clone(),
            name: ctx.name.clone(),
            drops: Drops::new(ctx.name.clone()),
            stop: ctx.shutdown.child_token(),
            shutdown: ctx.shutdown.clone(),
            link: conn.link.clone(),
            sequence: self.sequence.clone(),
            identity,
            verifier: self
                .verifier
                .get_or_init(|| Verifier::new(cfg.signing.clone(), ctx.name.clone()))
                .clone(),
        };
        let micro_discover = discover && !cfg.micro_services.is_empty();
        let parts = usize::from(discover) + usize::from(micro_discover) + usize::from(!discover);
        let gate = SyncGate::new(parts, ctx.events.clone());

        type Task<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>>;
        let mut tasks: Vec<Task<'_>> = vec![Box::pin(monitor(&rc))];
        if let Some(local) = &local {
            let part = (!discover).then(|| gate.part());
            tasks.push(match cfg.mode {
                NatsMode::Announce => Box::pin(announce::agent(&rc, local.clone(), part)),
                NatsMode::Kv => Box::pin(kv::agent(&rc, local.clone(), part)),
            });
            if cfg.micro {
                tasks.push(Box::pin(micro::serve(&rc, local.clone())));
            }
        }
        if discover {
            tasks.push(match cfg.mode {
                NatsMode::Announce => Box::pin(announce::discover(&rc, gate.part())),
                NatsMode::Kv => Box::pin(kv::discover(&rc, gate.part())),
            });
        }
        if micro_discover {
            tasks.push(Box::pin(micro::discover(&rc, gate.part())));
        }
        // A failing task ends the run (the registry restarts it with backoff);
        // the others stop through `rc.stop`.
        let results = futures::future::join_all(tasks.into_iter().map(|t| {
            let stop = rc.stop.clone();
            async move {
                let r = t.await;
                if r.is_err() {
                    stop.cancel();
                }
                r
            }
        }))
        .await;
        // Let goodbyes reach the server before the connection is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.client.flush()).await;
        match results.into_iter().find_map(Result::err) {
            Some(e) if !ctx.shutdown.is_cancelled() => Err(SourceError(Box::new(e))),
            _ => Ok(()),
        }
    }
}

/// Reports the source degraded while disconnected, healthy once reconnected.
async fn monitor(rc: &RunCtx) -> Result<(), Error> {
    let mut link = rc.link.clone();
    let mut was = *link.borrow_and_update();
    loop {
        tokio::select! {
            _ = rc.stop.cancelled() => return Ok(()),
            r = link.changed() => {
                if r.is_err() {
                    rc.stop.cancelled().await;
                    return Ok(());
                }
            }
        }
        let now = *link.borrow_and_update();
        if was.connected && !now.connected {
            metrics::counter!("rollcall_nats_disconnects_total", "source" => rc.name.to_string())
                .increment(1);
            let _ = rc
                .events
                .degraded("disconnected from the NATS server; reconnecting (observations are kept until their TTL)")
                .await;
        } else if now.connected && (!was.connected || now.epoch != was.epoch) {
            let _ = rc.events.healthy().await;
        }
        was = now;
    }
}

/// Publishes, mapping a dead client to an error that ends the run; other
/// failures are logged and skipped.
pub(crate) async fn publish(
    rc: &RunCtx,
    subject: String,
    reply: Option<String>,
    payload: Vec<u8>,
) -> Result<(), Error> {
    let r = match reply {
        Some(reply) => {
            rc.client
                .publish_with_reply(subject.clone(), reply, payload.into())
                .await
        }
        None => rc.client.publish(subject.clone(), payload.into()).await,
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), async_nats::client::PublishErrorKind::Send) => {
            Err(Error::nats(format!("publish {subject}"), e))
        }
        Err(e) => {
            tracing::warn!(source = %rc.name, subject = %subject, error = %e, "cannot publish");
            Ok(())
        }
    }
}

/// Entry points for the fuzz targets (`fuzz/` at the repository root); not a
/// stable API.
#[doc(hidden)]
pub mod fuzz {
    use std::sync::Arc;

    use discovery_core::signed::{SigningConfig, Verifier};

    use crate::{sign, wire};

    /// Decodes `payload` as a discoverer does on `{prefix}.announce.{token}`
    /// and on a reply inbox, then builds its observation and checks its
    /// signature. Must never panic.
    pub fn record(token: &str, payload: &[u8]) {
        let _ = wire::decode_token(token);
        for expect in [Some(token), None] {
            if let Ok(rec) = wire::Record::parse(payload, expect) {
                let _ = rec.observation(rec.id.clone(), rec.ttl());
                let _ = crate::limits::metadata_bytes(&rec);
                let v = Verifier::new(SigningConfig::default(), Arc::from("fuzz"));
                let _ = sign::verify_record(&v, &rec);
                // Re-encoding may add empty lists, so only well below the limit.
                if payload.len() < wire::MAX_PAYLOAD / 2 {
                    let back = wire::Record::parse(&rec.to_bytes(), None);
                    assert_eq!(
                        back.as_ref().ok(),
                        Some(&rec),
                        "a record survives re-encoding"
                    );
                }
            }
        }
    }
}
