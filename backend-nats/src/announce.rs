//! `mode = "announce"`: heartbeats, leaves and the query on core NATS subjects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Message, StatusCode};
use discovery_core::LocalPeer;
use futures::StreamExt;
use tokio::time::{Instant, MissedTickBehavior};

use crate::admission::{Admission, Admitted, Over};
use crate::conn;
use crate::gather::{End, Gather};
use crate::sign;
use crate::wire::{self, encode_token, Record, MAX_PAYLOAD};
use crate::{publish, Error, Part, RunCtx};

/// The query's payload. Agents of v1 answer whatever the payload is.
const QUERY_PAYLOAD: &[u8] = br#"{"version":1}"#;
/// Freshness entries remembered at most (one per agent id seen recently).
const MAX_SEEN: usize = 100_000;

pub(crate) fn announce_subject(prefix: &str, id: &str) -> String {
    format!("{prefix}.announce.{}", encode_token(id))
}
pub(crate) fn leave_subject(prefix: &str, id: &str) -> String {
    format!("{prefix}.leave.{}", encode_token(id))
}
pub(crate) fn query_subject(prefix: &str) -> String {
    format!("{prefix}.query")
}

/// Builds and size-checks the local record.
pub(crate) fn local_record(
    rc: &RunCtx,
    local: &LocalPeer,
    ttl: Duration,
) -> Result<Vec<u8>, Error> {
    let mut rec = Record::local(local, ttl, rc.next_sequence());
    if let Some(id) = &rc.identity {
        sign::sign_record(&mut rec, id);
    }
    let bytes = rec.to_bytes();
    if bytes.len() > MAX_PAYLOAD {
        return Err(Error::RecordTooLarge {
            size: bytes.len(),
            limit: MAX_PAYLOAD,
        });
    }
    Ok(bytes)
}

/// The agent: announce now and every heartbeat, answer queries, re-announce
/// after a reconnection, leave on shutdown.
pub(crate) async fn agent(
    rc: &RunCtx,
    local: Arc<LocalPeer>,
    mut part: Option<Part<'_>>,
) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let prefix = &cfg.subject_prefix;
    let ttl = cfg.ttl();
    let subject = announce_subject(prefix, &local.id);
    // Fails early (and clearly) when the record is too large.
    let first = local_record(rc, &local, ttl)?;
    let query = query_subject(prefix);
    let mut queries = rc
        .client
        .subscribe(query.clone())
        .await
        .map_err(|e| Error::nats(format!("subscribe {query}"), e))?;
    publish(rc, subject.clone(), None, first).await?;
    tracing::info!(source = %rc.name, id = %local.id, subject = %subject, ttl = ?ttl, "announcing");
    if let Some(p) = part.as_mut() {
        p.done().await;
    }

    let mut link = rc.link.clone();
    let mut epoch = link.borrow().epoch;
    let mut tick = tokio::time::interval_at(Instant::now() + cfg.heartbeat, cfg.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rc.stop.cancelled() => break,
            q = queries.next() => {
                let Some(q) = q else {
                    return Err(Error::nats(format!("subscription {query}"), "closed by the client"));
                };
                // Every query is answered at once, whatever its payload.
                if let Some(reply) = q.reply {
                    publish(rc, reply.to_string(), None, local_record(rc, &local, ttl)?).await?;
                }
            }
            _ = tick.tick() => {
                if rc.connected() {
                    publish(rc, subject.clone(), None, local_record(rc, &local, ttl)?).await?;
                }
            }
            _ = conn::reconnected(&mut link, &mut epoch) => {
                tracing::info!(source = %rc.name, id = %local.id, "re-announcing after reconnection");
                publish(rc, subject.clone(), None, local_record(rc, &local, ttl)?).await?;
                tick.reset();
            }
        }
    }
    if rc.shutdown.is_cancelled() {
        let leave = leave_subject(prefix, &local.id);
        let bytes = local_record(rc, &local, Duration::ZERO)?;
        match tokio::time::timeout(
            Duration::from_secs(1),
            rc.client.publish(leave.clone(), bytes.into()),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(source = %rc.name, id = %local.id, subject = %leave, "sent leave")
            }
            Ok(Err(e)) => tracing::warn!(source = %rc.name, error = %e, "cannot send leave"),
            Err(_) => {
                tracing::warn!(source = %rc.name, "cannot send leave: the client is blocked (disconnected?)")
            }
        }
    }
    Ok(())
}

/// Where a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Announce,
    Leave,
    Reply,
}

/// Per-id freshness: drops records older than one already accepted from the
/// same agent process (a lower sequence and a timestamp no newer), so a late
/// heartbeat cannot resurrect an agent that left.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    seen: HashMap<String, (u64, u64, Instant)>,
}

impl Freshness {
    /// Whether the record is new; remembers it until `keep` from `now`.
    pub(crate) fn accept(&mut self, rec: &Record, now: Instant, keep: Duration) -> bool {
        if let Some(&(seq, ts, _)) = self.seen.get(&rec.id) {
            if rec.sequence <= seq && rec.timestamp <= ts {
                return false;
            }
        }
        if self.seen.len() >= MAX_SEEN && !self.seen.contains_key(&rec.id) {
            self.prune(now);
            if self.seen.len() >= MAX_SEEN {
                self.seen.clear();
            }
        }
        self.seen
            .insert(rec.id.clone(), (rec.sequence, rec.timestamp, now + keep));
        true
    }

    pub(crate) fn prune(&mut self, now: Instant) {
        self.seen.retain(|_, (_, _, until)| *until > now);
    }
}

/// The discoverer: subscribe, query at start and after each reconnection,
/// upsert every record with its TTL, remove on leave.
pub(crate) async fn discover(rc: &RunCtx, mut part: Part<'_>) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let prefix = &cfg.subject_prefix;
    let sub = |subject: String| async move {
        rc.client
            .subscribe(subject.clone())
            .await
            .map_err(|e| Error::nats(format!("subscribe {subject}"), e))
    };
    let mut announces = sub(format!("{prefix}.announce.*")).await?;
    let mut leaves = sub(format!("{prefix}.leave.*")).await?;
    let inbox = rc.client.new_inbox();
    let mut replies = sub(format!("{inbox}.*")).await?;

    let mut d = Discoverer {
        rc,
        fresh: Freshness::default(),
        admission: Admission::new(cfg.limits.clone()),
        round: 0,
        gather: None,
    };
    d.query(&inbox).await?;

    let mut link = rc.link.clone();
    let mut epoch = link.borrow().epoch;
    let mut prune = tokio::time::interval(cfg.ttl().max(Duration::from_secs(1)));
    prune.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = d.gather.as_ref().map(Gather::deadline);
        tokio::select! {
            _ = rc.stop.cancelled() => return Ok(()),
            m = announces.next() => {
                let Some(m) = m else { return Err(Error::nats("subscription announce.*", "closed by the client")) };
                d.on_message(Channel::Announce, m).await;
            }
            m = leaves.next() => {
                let Some(m) = m else { return Err(Error::nats("subscription leave.*", "closed by the client")) };
                d.on_message(Channel::Leave, m).await;
            }
            m = replies.next() => {
                let Some(m) = m else { return Err(Error::nats("subscription of the query inbox", "closed by the client")) };
                d.on_reply(&inbox, m).await;
            }
            _ = sleep_until_opt(deadline) => {}
            _ = conn::reconnected(&mut link, &mut epoch) => {
                tracing::info!(source = %rc.name, "querying again after reconnection");
                d.query(&inbox).await?;
            }
            _ = prune.tick() => d.fresh.prune(Instant::now()),
        }
        if let Some(g) = d.gather.as_mut() {
            if let Some(end) = g.poll(Instant::now()) {
                let (count, took) = (g.count(), g.started.elapsed());
                d.gather = None;
                tracing::debug!(source = %rc.name, replies = count, took = ?took, end = ?end, "query complete");
                metrics::histogram!("rollcall_nats_query_seconds", "source" => rc.name.to_string())
                    .record(took.as_secs_f64());
                if end == End::Timeout {
                    tracing::debug!(source = %rc.name, "query replies still trickling at query_timeout");
                }
                part.done().await;
            }
        }
    }
}

pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Discoverer<'a> {
    rc: &'a RunCtx,
    fresh: Freshness,
    admission: Admission,
    round: u64,
    gather: Option<Gather>,
}

impl Discoverer<'_> {
    async fn query(&mut self, inbox: &str) -> Result<(), Error> {
        self.round += 1;
        let cfg = &self.rc.cfg;
        self.gather = Some(Gather::new(
            Instant::now(),
            cfg.query_quiet_gap,
            cfg.query_timeout,
            cfg.expected_peers,
        ));
        let subject = query_subject(&cfg.subject_prefix);
        publish(
            self.rc,
            subject,
            Some(format!("{inbox}.{}", self.round)),
            QUERY_PAYLOAD.to_vec(),
        )
        .await
    }

    async fn on_reply(&mut self, inbox: &str, m: Message) {
        let current = m
            .subject
            .strip_prefix(inbox)
            .and_then(|s| s.strip_prefix('.'))
            .and_then(|s| s.parse::<u64>().ok())
            == Some(self.round);
        if m.status == Some(StatusCode::NO_RESPONDERS) {
            if current {
                if let Some(g) = self.gather.as_mut() {
                    g.no_responders();
                }
            }
            return;
        }
        if let Some(id) = self.on_message(Channel::Reply, m).await {
            if current {
                if let Some(g) = self.gather.as_mut() {
                    g.reply(&id, Instant::now());
                }
            }
        }
    }

    /// Handles one record; returns its id if it was valid.
    async fn on_message(&mut self, channel: Channel, m: Message) -> Option<String> {
        let rc = self.rc;
        let subject = m.subject.as_str();
        let token = match channel {
            Channel::Reply => None,
            _ => Some(subject.rsplit('.').next().unwrap_or_default()),
        };
        let rec = match Record::parse(&m.payload, token) {
            Ok(r) => r,
            Err(rej) => {
                rc.drops.count(rej.reason.as_str(), subject, &rej.detail);
                return None;
            }
        };
        let ttl = rec.ttl();
        if channel != Channel::Leave && ttl.is_none() {
            rc.drops.count(
                wire::Drop::Malformed.as_str(),
                subject,
                "ttl 0 outside a leave",
            );
            return None;
        }
        // Verified before anything is remembered about it, so that a forged
        // record cannot block or rate-limit the real agent.
        let verified = match sign::verify_record(&rc.verifier, &rec) {
            Ok(v) => v,
            Err(_) => return None,
        };
        let keep = ttl.unwrap_or_else(|| rc.cfg.ttl()).max(rc.cfg.ttl());
        if channel != Channel::Leave {
            match self.admission.admit(&rec.id, keep, Instant::now()) {
                Ok(Admitted::Yes) => {}
                Ok(Admitted::Displacing(newcomer)) => {
                    rc.drops.count(
                        Over::Peers.as_str(),
                        subject,
                        &format!(
                            "id `{newcomer}` gave its place to `{}`, which renewed before",
                            rec.id
                        ),
                    );
                    let _ = rc.events.remove(newcomer).await;
                }
                Err(over) => {
                    rc.drops
                        .count(over.as_str(), subject, &format!("id `{}`", rec.id));
                    return None;
                }
            }
            if crate::limits::metadata_bytes(&rec) > self.admission.max_metadata_bytes() {
                rc.drops.count(
                    "metadata_limit",
                    subject,
                    &format!(
                        "id `{}`: over {} bytes of metadata",
                        rec.id,
                        self.admission.max_metadata_bytes()
                    ),
                );
                return None;
            }
        }
        if !self.fresh.accept(&rec, Instant::now(), keep) {
            // Subscriptions are read in no fixed order: a record older than
            // one already applied is not applied, but its sender did answer.
            metrics::counter!("rollcall_nats_stale_total", "source" => rc.name.to_string())
                .increment(1);
            tracing::debug!(source = %rc.name, id = %rec.id, sequence = rec.sequence, "ignoring an out-of-date record");
            return Some(rec.id);
        }
        match channel {
            Channel::Leave => {
                tracing::debug!(source = %rc.name, id = %rec.id, "leave");
                self.admission.forget(&rec.id);
                let _ = rc.events.remove(rec.id.clone()).await;
            }
            Channel::Announce | Channel::Reply => {
                let (mut obs, bad) = rec.observation(rec.id.clone(), ttl);
                crate::limits::finish(
                    &mut obs,
                    &verified,
                    self.admission.max_addrs(),
                    &rc.drops,
                    subject,
                );
                for a in bad {
                    rc.drops.count(
                        "bad_addr",
                        subject,
                        &format!("id `{}`: address `{a}`", rec.id),
                    );
                }
                let _ = rc.events.upsert(obs).await;
            }
        }
        Some(rec.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, sequence: u64, timestamp: u64) -> Record {
        let mut r = Record::local(
            &LocalPeer {
                id: id.into(),
                ..Default::default()
            },
            Duration::from_secs(15),
            sequence,
        );
        r.timestamp = timestamp;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn freshness_drops_late_records_but_not_restarts() {
        let mut f = Freshness::default();
        let keep = Duration::from_secs(15);
        let now = Instant::now();
        assert!(f.accept(&rec("a", 5, 1000), now, keep));
        assert!(!f.accept(&rec("a", 4, 999), now, keep), "late heartbeat");
        assert!(!f.accept(&rec("a", 5, 1000), now, keep), "duplicate");
        assert!(
            f.accept(&rec("a", 6, 1000), now, keep),
            "next one, same millisecond"
        );
        assert!(
            f.accept(&rec("a", 1, 2000), now, keep),
            "restarted agent: sequence reset, newer time"
        );
        assert!(f.accept(&rec("b", 1, 1), now, keep), "ids are independent");
        tokio::time::advance(Duration::from_secs(16)).await;
        f.prune(Instant::now());
        assert!(
            f.accept(&rec("a", 1, 1), Instant::now(), keep),
            "forgotten after keep"
        );
    }

    #[test]
    fn subjects() {
        assert_eq!(
            announce_subject("rollcall", "a.b"),
            "rollcall.announce.a=2Eb"
        );
        assert_eq!(leave_subject("x.y", "n1"), "x.y.leave.n1");
        assert_eq!(query_subject("rollcall"), "rollcall.query");
    }
}
