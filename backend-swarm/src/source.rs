//! [`SwarmSource`]: the run loops of the three modes.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use discovery_core::{DiscoverySource, SourceContext, SourceError};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use crate::config::{Config, Mode, Settings};
use crate::containers::{self, COMPOSE_SERVICE};
use crate::dns::DnsLookup;
use crate::docker::Conn;
use crate::observe::Drops;
use crate::schedule::{Schedule, FIRST_RETRY};
use crate::swarm::{self, NodeNames, Refresh};
use crate::Error;

/// How far back a new event subscription replays, so that nothing falls
/// between a refresh and the subscription (duplicates only cost a refresh).
const EVENT_REPLAY: Duration = Duration::from_secs(5);
/// An event stream that lived this long was fine; shorter ones back off.
const STREAM_HEALTHY: Duration = Duration::from_secs(10);

/// A rollcall source for Docker Swarm tasks, `tasks.<service>` DNS, or plain
/// containers (see [`Mode`]).
///
/// Build it with [`SwarmSource::new`], which checks the configuration without
/// touching Docker; connection problems (missing socket, permission, worker
/// node, TLS) are reported at run time as the source's degraded reason, and
/// the source keeps retrying with backoff (0.5 s doubling up to `resync`).
///
/// In `api` and `containers` modes every good refresh replaces the whole set
/// (`replace`); a failed one keeps the last good set and marks the source
/// degraded. Refreshes run on Docker events (debounced), every `resync`, and
/// every `converge_poll` while a selected service is converging.
#[derive(Debug, Clone)]
pub struct SwarmSource {
    settings: Arc<Settings>,
}

impl SwarmSource {
    /// Validates the configuration (no I/O besides reading `DOCKER_HOST`,
    /// `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` and `HOME` when `docker_host` is unset).
    pub fn new(config: Config) -> Result<SwarmSource, Error> {
        let settings = config.validate()?;
        Ok(SwarmSource {
            settings: Arc::new(settings),
        })
    }
}

#[async_trait]
impl DiscoverySource for SwarmSource {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        match self.settings.mode {
            Mode::Dns => run_dns(&self.settings, ctx).await,
            Mode::Api | Mode::Containers => {
                DockerRun::new(self.settings.clone(), &ctx).run(ctx).await
            }
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<EventMessage, bollard::errors::Error>> + Send>>;

/// The state of one run in `api` or `containers` mode.
struct DockerRun {
    s: Arc<Settings>,
    drops: Drops,
    nodes: NodeNames,
    conn: Option<Conn>,
    events: Option<EventStream>,
    /// Selected service names (api) or container ids (containers).
    known: HashSet<String>,
    last_reason: Option<String>,
    /// When the current event stream was opened.
    subscribed_at: Option<Instant>,
    /// Consecutive event streams that ended early, and when to try again.
    short_streams: u32,
    resubscribe_after: Option<Instant>,
}

impl DockerRun {
    fn new(s: Arc<Settings>, ctx: &SourceContext) -> Self {
        DockerRun {
            s,
            drops: Drops::new(ctx.name.clone()),
            nodes: NodeNames::default(),
            conn: None,
            events: None,
            known: HashSet::new(),
            last_reason: None,
            subscribed_at: None,
            short_streams: 0,
            resubscribe_after: None,
        }
    }

    /// The event stream broke or ended: resubscribe at the next refresh, or
    /// later if streams keep ending early (a daemon or proxy that cuts them).
    fn stream_ended(&mut self, now: Instant, sched: &mut Schedule) {
        self.events = None;
        let lived = self.subscribed_at.map(|t| now - t).unwrap_or_default();
        if lived >= STREAM_HEALTHY {
            self.short_streams = 0;
            self.resubscribe_after = None;
            // Events may have been missed while it was down.
            sched.poke(now);
        } else {
            self.short_streams = self.short_streams.saturating_add(1);
            let backoff =
                (FIRST_RETRY * 2u32.saturating_pow(self.short_streams.min(16))).min(self.s.resync);
            self.resubscribe_after = Some(now + backoff);
        }
    }

    async fn run(mut self, ctx: SourceContext) -> Result<(), SourceError> {
        let name = ctx.name.to_string();
        let mut sched = Schedule::new(
            Instant::now(),
            self.s.resync,
            self.s.debounce,
            self.s.converge_poll,
        );
        loop {
            let due = sched.next_due();
            let next_event = async {
                match self.events.as_mut() {
                    Some(st) => st.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(()),
                ev = next_event => match ev {
                    Some(Ok(msg)) => {
                        metrics::counter!("rollcall_swarm_events_total", "source" => name.clone()).increment(1);
                        if self.relevant(&msg) {
                            sched.event(Instant::now());
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(source = %name, error = %crate::error::chain(&e), "Docker event stream failed; resubscribing at the next refresh");
                        self.stream_ended(Instant::now(), &mut sched);
                    }
                    None => {
                        tracing::debug!(source = %name, "Docker event stream ended; resubscribing at the next refresh");
                        self.stream_ended(Instant::now(), &mut sched);
                    }
                },
                _ = tokio::time::sleep_until(due) => {
                    let started = Instant::now();
                    let result = tokio::select! {
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                        r = self.attempt() => r,
                    };
                    let now = Instant::now();
                    match result {
                        Ok(r) => {
                            metrics::counter!("rollcall_swarm_refreshes_total", "source" => name.clone(), "result" => "ok").increment(1);
                            metrics::gauge!("rollcall_swarm_observations", "source" => name.clone()).set(r.observations.len() as f64);
                            tracing::debug!(source = %name, peers = r.observations.len(), converged = r.converged, took = ?(now - started), "refreshed");
                            if self.last_reason.take().is_some() {
                                tracing::info!(source = %name, "Docker reachable again");
                            }
                            self.known = r.known;
                            if ctx.events.replace(r.observations).await.is_err() {
                                return Ok(());
                            }
                            sched.refreshed(now, true, r.converged);
                        }
                        Err(e) => {
                            metrics::counter!("rollcall_swarm_refreshes_total", "source" => name.clone(), "result" => "error").increment(1);
                            let reason = e.to_string();
                            if !matches!(e, Error::Api { .. } | Error::Protocol { .. }) {
                                self.conn = None;
                                self.events = None;
                            }
                            sched.refreshed(now, false, false);
                            if self.last_reason.as_deref() != Some(reason.as_str()) {
                                tracing::warn!(source = %name, error = %reason, retry_in = ?(sched.next_due() - now), "swarm source degraded; keeping the last good set");
                                self.last_reason = Some(reason.clone());
                                if ctx.events.degraded(reason).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Connects if needed, subscribes to events if needed, and refreshes.
    async fn attempt(&mut self) -> Result<Refresh, Error> {
        let endpoint = self
            .s
            .endpoint
            .as_ref()
            .ok_or_else(|| Error::Config("no Docker endpoint in api/containers mode".into()))?;
        if self.conn.is_none() {
            let conn = Conn::connect(endpoint, self.s.timeout).await?;
            if self.s.mode == Mode::Api {
                swarm::check_manager(&conn).await?;
            }
            self.nodes.forget();
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_ref() else {
            return Err(Error::Config("lost the Docker connection".into()));
        };
        let now = Instant::now();
        if self.events.is_none() && self.resubscribe_after.is_none_or(|t| now >= t) {
            self.events = Some(subscribe(conn, self.s.mode));
            self.subscribed_at = Some(now);
        }
        match self.s.mode {
            Mode::Api => swarm::refresh(conn, &self.s, &mut self.nodes, &mut self.drops).await,
            _ => containers::refresh(conn, &self.s, &mut self.drops).await,
        }
    }

    /// Whether an event may change what this source sees.
    fn relevant(&self, msg: &EventMessage) -> bool {
        let empty = HashMap::new();
        let actor = msg.actor.as_ref();
        let attrs = actor.and_then(|a| a.attributes.as_ref()).unwrap_or(&empty);
        let id = actor.and_then(|a| a.id.as_deref()).unwrap_or("");
        match (self.s.mode, msg.typ) {
            (Mode::Api, Some(EventMessageTypeEnum::SERVICE)) => {
                if self.s.labels.is_empty() {
                    attrs
                        .get("name")
                        .is_some_and(|n| self.s.services.contains(n))
                } else {
                    true
                }
            }
            (Mode::Api, Some(EventMessageTypeEnum::CONTAINER)) => attrs
                .get("com.docker.swarm.service.name")
                .is_some_and(|n| self.known.contains(n)),
            (Mode::Api, Some(EventMessageTypeEnum::NODE)) => true,
            (Mode::Containers, Some(EventMessageTypeEnum::CONTAINER)) => {
                self.known.contains(id)
                    || (self.s.labels.iter().all(|l| l.matches(attrs))
                        && (self.s.services.is_empty()
                            || attrs
                                .get(COMPOSE_SERVICE)
                                .is_some_and(|v| self.s.services.contains(v))))
            }
            (Mode::Containers, Some(EventMessageTypeEnum::NETWORK)) => attrs
                .get("container")
                .is_some_and(|c| self.known.contains(c)),
            _ => false,
        }
    }
}

fn subscribe(conn: &Conn, mode: Mode) -> EventStream {
    let (types, actions): (&[&str], &[&str]) = match mode {
        Mode::Api => (
            &["service", "container", "node"],
            &["create", "update", "remove", "start", "die"],
        ),
        _ => (
            &["container", "network"],
            &["start", "die", "rename", "connect", "disconnect"],
        ),
    };
    let mut filters = HashMap::new();
    filters.insert(
        "type".to_owned(),
        types.iter().map(|s| s.to_string()).collect(),
    );
    filters.insert(
        "event".to_owned(),
        actions.iter().map(|s| s.to_string()).collect(),
    );
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(EVENT_REPLAY)
        .as_secs();
    let opts = EventsOptions {
        since: Some(since.to_string()),
        until: None,
        filters: Some(filters),
    };
    Box::pin(conn.api.events(Some(opts)))
}

async fn run_dns(s: &Settings, ctx: SourceContext) -> Result<(), SourceError> {
    let name = ctx.name.to_string();
    let mut drops = Drops::new(ctx.name.clone());
    let lookup = match DnsLookup::new(s.dns_server, s.timeout) {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx.events.degraded(e.to_string()).await;
            return Err(SourceError(Box::new(e)));
        }
    };
    let mut next = Instant::now();
    let mut retry = FIRST_RETRY.min(s.resync);
    let mut last_reason: Option<String> = None;
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(next) => {}
        }
        let result = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return Ok(()),
            r = lookup.refresh(&s.services, s.port) => r,
        };
        let now = Instant::now();
        match result {
            Ok((observations, empty)) => {
                metrics::counter!("rollcall_swarm_refreshes_total", "source" => name.clone(), "result" => "ok").increment(1);
                for svc in empty {
                    drops.note(
                        "empty_answer",
                        &format!("tasks.{svc} has no address: no running task, a wrong service name, or this container is not on the service's network"),
                    );
                }
                last_reason = None;
                retry = FIRST_RETRY.min(s.resync);
                if ctx.events.replace(observations).await.is_err() {
                    return Ok(());
                }
                next = now + s.resync;
            }
            Err(e) => {
                metrics::counter!("rollcall_swarm_refreshes_total", "source" => name.clone(), "result" => "error").increment(1);
                let mut reason = e.to_string();
                if s.dns_server.ip() == std::net::IpAddr::from([127, 0, 0, 11]) {
                    reason.push_str(" (Docker's embedded DNS at 127.0.0.11 answers only inside a container on a user-defined or overlay network)");
                }
                if last_reason.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(source = %name, error = %reason, "swarm dns source degraded; keeping the last good set");
                    last_reason = Some(reason.clone());
                    if ctx.events.degraded(reason).await.is_err() {
                        return Ok(());
                    }
                }
                next = now + retry;
                retry = (retry * 2).min(s.resync);
            }
        }
    }
}
