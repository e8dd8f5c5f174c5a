//! `mode = "kv"`: a JetStream key-value bucket holds one record per agent.
//!
//! nats-server 2.9 sends no event when a key ages out of the bucket
//! (`max_age`), so the discoverer gives every observation the record's
//! remaining TTL (its `ttl` minus the entry's age) and the registry expires it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use discovery_core::LocalPeer;
use futures::StreamExt;
use tokio::time::{Instant, MissedTickBehavior};

use crate::announce::{local_record, sleep_until_opt};
use crate::conn;
use crate::wire::{self, decode_token, encode_token, Record, MAX_PAYLOAD};
use crate::{Error, Part, RunCtx};

/// Opens the bucket, creating it when missing.
async fn open_bucket(rc: &RunCtx) -> Result<kv::Store, Error> {
    let cfg = &rc.cfg;
    let js = jetstream::new(rc.client.clone());
    let get_err = match js.get_key_value(cfg.bucket.clone()).await {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    // The stream is created directly with the key-value conventions (what
    // `create_key_value` would make): async-nats 0.51's `create_key_value`
    // first reads the account info, whose 2.9.x shape it cannot parse.
    let stream = jetstream::stream::Config {
        name: format!("KV_{}", cfg.bucket),
        description: Some("rollcall roster (protocol v1): one record per agent id".into()),
        subjects: vec![format!("$KV.{}.>", cfg.bucket)],
        max_messages_per_subject: 1,
        max_age: cfg.kv_max_age(),
        max_message_size: MAX_PAYLOAD as i32,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    let created = js.create_stream(stream).await;
    // Opened through `get_key_value` either way (another process may have
    // created it meanwhile, maybe with another max_age: that one is kept).
    match js.get_key_value(cfg.bucket.clone()).await {
        Ok(store) => {
            if created.is_ok() {
                // Also when it existed with this very configuration (creation is idempotent).
                tracing::debug!(source = %rc.name, bucket = %cfg.bucket, max_age = ?cfg.kv_max_age(), "KV bucket created or found");
            }
            Ok(store)
        }
        Err(e) => Err(Error::Kv {
            bucket: cfg.bucket.clone(),
            reason: format!(
                "cannot open it ({get_err}; then {e}) nor create it ({}); is JetStream enabled on the server (`nats-server -js`)?",
                created.err().map(|e| e.to_string()).unwrap_or_else(|| "created, then not found".into())
            ),
        }),
    }
}

/// The agent: put the record now and every heartbeat (and after a
/// reconnection), delete it on shutdown.
pub(crate) async fn agent(
    rc: &RunCtx,
    local: Arc<LocalPeer>,
    mut part: Option<Part<'_>>,
) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let ttl = cfg.ttl();
    let key = encode_token(&local.id);
    local_record(rc, &local, ttl)?;
    let store = open_bucket(rc).await?;
    let put = |bytes: Vec<u8>| {
        let store = &store;
        let key = &key;
        async move {
            match tokio::time::timeout(cfg.connect_timeout, store.put(key, bytes.into())).await {
                Ok(Ok(_)) => true,
                Ok(Err(e)) => {
                    tracing::warn!(source = %rc.name, bucket = %cfg.bucket, error = %e, "cannot put the record");
                    false
                }
                Err(_) => {
                    tracing::warn!(source = %rc.name, bucket = %cfg.bucket, "putting the record timed out");
                    false
                }
            }
        }
    };
    put(local_record(rc, &local, ttl)?).await;
    tracing::info!(source = %rc.name, id = %local.id, bucket = %cfg.bucket, key = %key, "announcing in KV");
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
            _ = tick.tick() => {
                if rc.connected() {
                    put(local_record(rc, &local, ttl)?).await;
                }
            }
            _ = conn::reconnected(&mut link, &mut epoch) => {
                put(local_record(rc, &local, ttl)?).await;
                tick.reset();
            }
        }
    }
    if rc.shutdown.is_cancelled() {
        match tokio::time::timeout(Duration::from_secs(1), store.delete(&key)).await {
            Ok(Ok(())) => tracing::info!(source = %rc.name, id = %local.id, "deleted KV record"),
            Ok(Err(e)) => {
                tracing::warn!(source = %rc.name, error = %e, "cannot delete the KV record")
            }
            Err(_) => tracing::warn!(source = %rc.name, "deleting the KV record timed out"),
        }
    }
    Ok(())
}

/// The discoverer: read the current values, then watch; again after every
/// reconnection or watch failure.
pub(crate) async fn discover(rc: &RunCtx, mut part: Part<'_>) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let store = open_bucket(rc).await?;
    let mut link = rc.link.clone();
    let mut epoch = link.borrow().epoch;
    let mut retry = false;
    loop {
        if std::mem::take(&mut retry) {
            tokio::select! {
                _ = rc.stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let started = Instant::now();
        // An empty bucket delivers nothing: know it up front to sync at once.
        let empty = matches!(store.status().await, Ok(s) if s.values() == 0);
        let mut watch = match store.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(source = %rc.name, bucket = %cfg.bucket, error = %e, "cannot watch the bucket; retrying");
                let _ = rc
                    .events
                    .degraded(format!("cannot watch KV bucket `{}`: {e}", cfg.bucket))
                    .await;
                retry = true;
                continue;
            }
        };
        // Until the initial values are read; `query_timeout` caps the wait.
        let mut initial = (!empty).then(|| started + cfg.query_timeout);
        if empty {
            part.done().await;
        }
        loop {
            tokio::select! {
                _ = rc.stop.cancelled() => return Ok(()),
                e = watch.next() => match e {
                    None => {
                        tracing::warn!(source = %rc.name, bucket = %cfg.bucket, "KV watch ended; watching again");
                        retry = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(source = %rc.name, bucket = %cfg.bucket, error = %e, "KV watch error");
                    }
                    Some(Ok(entry)) => {
                        let caught_up = entry.delta == 0;
                        on_entry(rc, entry).await;
                        if caught_up && initial.take().is_some() {
                            tracing::debug!(source = %rc.name, took = ?started.elapsed(), "KV initial values read");
                            part.done().await;
                        }
                    }
                },
                _ = sleep_until_opt(initial) => {
                    initial = None;
                    tracing::debug!(source = %rc.name, "KV initial read hit query_timeout");
                    part.done().await;
                }
                _ = conn::reconnected(&mut link, &mut epoch) => {
                    tracing::info!(source = %rc.name, "reading the bucket again after reconnection");
                    break;
                }
            }
        }
    }
}

async fn on_entry(rc: &RunCtx, entry: kv::Entry) {
    let channel = format!("$KV.{}.{}", entry.bucket, entry.key);
    let Some(id) = decode_token(&entry.key) else {
        rc.drops.count(
            wire::Drop::IdMismatch.as_str(),
            &channel,
            "the key is not an encoded id",
        );
        return;
    };
    match entry.operation {
        kv::Operation::Delete | kv::Operation::Purge => {
            if rc.cfg.signing.require_signed {
                // A tombstone carries no signature: anyone allowed to write
                // the bucket could make one. The record expires at its TTL.
                metrics::counter!("rollcall_records_rejected_total",
                    "source" => rc.name.to_string(), "reason" => "unsigned")
                .increment(1);
                tracing::debug!(source = %rc.name, id = %id, "ignoring an unsigned KV delete (require_signed)");
                return;
            }
            let _ = rc.events.remove(id).await;
        }
        kv::Operation::Put => {
            let rec = match Record::parse(&entry.value, Some(&entry.key)) {
                Ok(r) => r,
                Err(rej) => {
                    rc.drops.count(rej.reason.as_str(), &channel, &rej.detail);
                    return;
                }
            };
            let Some(ttl) = rec.ttl() else {
                rc.drops
                    .count(wire::Drop::Malformed.as_str(), &channel, "ttl 0");
                return;
            };
            let age = SystemTime::now()
                .duration_since(SystemTime::from(entry.created))
                .unwrap_or(Duration::ZERO);
            let remaining = ttl.saturating_sub(age);
            if remaining.is_zero() {
                // Aged out already; the server drops it at max_age.
                let _ = rc.events.remove(id).await;
                return;
            }
            let Ok(verified) = crate::sign::verify_record(&rc.verifier, &rec) else {
                return;
            };
            let (mut obs, bad) = rec.observation(id, Some(remaining));
            crate::limits::finish(
                &mut obs,
                &verified,
                rc.cfg.limits.max_addrs,
                &rc.drops,
                &channel,
            );
            for a in bad {
                rc.drops.count(
                    "bad_addr",
                    &channel,
                    &format!("id `{}`: address `{a}`", rec.id),
                );
            }
            let _ = rc.events.upsert(obs).await;
        }
    }
}
