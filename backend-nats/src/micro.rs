//! NATS micro (services API) interop: agents answer `$SRV.PING`/`INFO`/`STATS`
//! with `micro = true`; discoverers list the instances of `micro_services`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::service::ServiceExt;
use async_nats::{Message, StatusCode};
use discovery_core::{parse_addr, Alias, LocalPeer, Metadata, Observation};
use futures::StreamExt;
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use crate::announce::sleep_until_opt;
use crate::conn;
use crate::gather::Gather;
use crate::wire::{self, alias_kind, Record, MAX_PAYLOAD};
use crate::{publish, Error, Part, RunCtx};

/// Metadata key holding the agent's full v1 record (JSON) in its micro service.
pub(crate) const RECORD_KEY: &str = "rollcall";
const PING_TYPE: &str = "io.nats.micro.v1.ping_response";

/// Registers the agent with the services API until the run stops.
pub(crate) async fn serve(rc: &RunCtx, local: Arc<LocalPeer>) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let record = Record::local(&local, cfg.ttl(), rc.next_sequence()).to_bytes();
    let mut metadata = HashMap::new();
    metadata.insert(
        RECORD_KEY.to_owned(),
        String::from_utf8_lossy(&record).into_owned(),
    );
    metadata.insert("agent_id".to_owned(), local.id.clone());
    let service = rc
        .client
        .service_builder()
        .description(format!("rollcall agent {}", local.id))
        .metadata(metadata)
        .start(cfg.micro_name.clone(), env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Error::Micro {
            name: cfg.micro_name.clone(),
            reason: e.to_string(),
        })?;
    tracing::info!(source = %rc.name, service = %cfg.micro_name, id = %local.id, "registered with the NATS services API");
    rc.stop.cancelled().await;
    let _ = service.stop().await;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Ping {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    id: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

/// Pings every name in `micro_services` now, every `micro_poll` and after each
/// reconnection; each instance that answers is an observation kept 3 polls.
pub(crate) async fn discover(rc: &RunCtx, mut part: Part<'_>) -> Result<(), Error> {
    let cfg = &rc.cfg;
    let inbox = rc.client.new_inbox();
    let subject = format!("{inbox}.*");
    let mut replies = rc
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| Error::nats(format!("subscribe {subject}"), e))?;
    let ttl = cfg.micro_poll * 3;
    let mut round = 0u64;
    let mut no_responders = 0usize;
    let mut gather: Option<Gather> = None;
    let ping = |round: u64| {
        let inbox = &inbox;
        async move {
            for name in &cfg.micro_services {
                publish(
                    rc,
                    format!("$SRV.PING.{name}"),
                    Some(format!("{inbox}.{round}")),
                    Vec::new(),
                )
                .await?;
            }
            Ok::<_, Error>(())
        }
    };
    let mut link = rc.link.clone();
    let mut epoch = link.borrow().epoch;
    let mut poll = tokio::time::interval(cfg.micro_poll);
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let deadline = gather.as_ref().map(Gather::deadline);
        let mut start = false;
        tokio::select! {
            _ = rc.stop.cancelled() => return Ok(()),
            _ = poll.tick() => start = true,
            _ = conn::reconnected(&mut link, &mut epoch) => start = true,
            _ = sleep_until_opt(deadline) => {}
            m = replies.next() => {
                let Some(m) = m else {
                    return Err(Error::nats("subscription of the micro inbox", "closed by the client"));
                };
                let current = m.subject.rsplit('.').next().and_then(|r| r.parse::<u64>().ok()) == Some(round);
                if m.status == Some(StatusCode::NO_RESPONDERS) {
                    if current {
                        no_responders += 1;
                        if no_responders >= cfg.micro_services.len() {
                            if let Some(g) = gather.as_mut() {
                                g.no_responders();
                            }
                        }
                    }
                } else if let Some(key) = on_reply(rc, m, ttl).await {
                    if current {
                        if let Some(g) = gather.as_mut() {
                            g.reply(&key, Instant::now());
                        }
                    }
                }
            }
        }
        if start {
            round += 1;
            no_responders = 0;
            gather = Some(Gather::new(
                Instant::now(),
                cfg.query_quiet_gap,
                cfg.query_timeout,
                None,
            ));
            ping(round).await?;
        }
        if let Some(g) = gather.as_mut() {
            if g.poll(Instant::now()).is_some() {
                tracing::debug!(source = %rc.name, instances = g.count(), took = ?g.started.elapsed(), "micro services ping complete");
                gather = None;
                part.done().await;
            }
        }
    }
}

/// Handles one ping response; returns its key if it was valid.
async fn on_reply(rc: &RunCtx, m: Message, ttl: Duration) -> Option<String> {
    let channel = m.subject.as_str();
    if m.payload.len() > MAX_PAYLOAD {
        rc.drops.count(
            wire::Drop::Oversized.as_str(),
            channel,
            &format!("{} bytes", m.payload.len()),
        );
        return None;
    }
    let ping: Ping = match serde_json::from_slice(&m.payload) {
        Ok(p) => p,
        Err(e) => {
            rc.drops
                .count(wire::Drop::Malformed.as_str(), channel, &e.to_string());
            return None;
        }
    };
    if ping.kind != PING_TYPE {
        let reason =
            if ping.kind.starts_with("io.nats.micro.") && ping.kind.ends_with(".ping_response") {
                wire::Drop::Version
            } else {
                wire::Drop::Malformed
            };
        rc.drops
            .count(reason.as_str(), channel, &format!("type `{}`", ping.kind));
        return None;
    }
    if !rc.cfg.micro_services.contains(&ping.name) || ping.id.is_empty() {
        rc.drops.count(
            wire::Drop::Malformed.as_str(),
            channel,
            &format!("unexpected service `{}` id `{}`", ping.name, ping.id),
        );
        return None;
    }
    let (obs, bad) = observation(&ping, ttl);
    for a in bad {
        rc.drops.count(
            "bad_addr",
            channel,
            &format!("service `{}`: address `{a}`", ping.name),
        );
    }
    let key = obs.key.clone();
    let _ = rc.events.upsert(obs).await;
    Some(key)
}

/// The observation of one service instance, keyed `micro/<name>/<id>`.
fn observation(p: &Ping, ttl: Duration) -> (Observation, Vec<String>) {
    let key = format!("micro/{}/{}", p.name, p.id);
    let md = p.metadata.clone().unwrap_or_default();
    let mut micro_labels = BTreeMap::new();
    micro_labels.insert("nats_micro_service".to_owned(), p.name.clone());
    micro_labels.insert("nats_micro_id".to_owned(), p.id.clone());

    // A rollcall agent embeds its whole record.
    if let Some(rec) = md
        .get(RECORD_KEY)
        .and_then(|j| Record::parse(j.as_bytes(), None).ok())
    {
        let (mut obs, bad) = rec.observation(key, Some(ttl));
        obs.meta.labels.extend(micro_labels);
        return (obs, bad);
    }

    // Anyone else: well-known metadata keys, the rest as labels.
    let mut obs = Observation::new(key).with_ttl(ttl);
    let mut bad = Vec::new();
    let mut meta = Metadata {
        name: Some(p.name.clone()),
        version: p.version.clone().filter(|v| !v.is_empty()),
        ..Default::default()
    };
    let mut keys: Vec<&String> = md.keys().collect();
    keys.sort();
    for k in keys {
        let v = &md[k];
        if let Some(kind) = alias_kind(k) {
            if !v.trim().is_empty() {
                obs.aliases.push(Alias::new(kind, v.trim()));
            }
            continue;
        }
        match k.as_str() {
            "addrs" | "addr" => {
                for a in v.split([',', ' ']).map(str::trim).filter(|a| !a.is_empty()) {
                    match parse_addr(a) {
                        Ok(m) => obs.addrs.push(m),
                        Err(_) => bad.push(a.to_owned()),
                    }
                }
            }
            "capabilities" => {
                meta.capabilities = v
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "status" => meta.status = Some(v.clone()),
            _ => {
                meta.labels.insert(k.clone(), v.clone());
            }
        }
    }
    meta.labels.extend(micro_labels);
    obs.meta = meta;
    (obs, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(md: &[(&str, &str)]) -> Ping {
        Ping {
            kind: PING_TYPE.into(),
            name: "orders".into(),
            id: "X1".into(),
            version: Some("2.0.1".into()),
            metadata: Some(
                md.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn foreign_service_metadata_maps_to_identity_addresses_and_labels() {
        let p = ping(&[
            ("peer_id", "12D3KooWxyz"),
            ("addrs", "/ip4/10.0.0.9/tcp/4000, 10.0.0.9:4001 ,bad:99999"),
            ("capabilities", "a, b"),
            ("region", "eu"),
        ]);
        let (obs, bad) = observation(&p, Duration::from_secs(30));
        assert_eq!(obs.key, "micro/orders/X1");
        assert_eq!(obs.aliases, vec![Alias::peer_id("12D3KooWxyz")]);
        assert_eq!(obs.addrs.len(), 2);
        assert_eq!(bad, vec!["bad:99999".to_owned()]);
        assert_eq!(obs.meta.name.as_deref(), Some("orders"));
        assert_eq!(obs.meta.version.as_deref(), Some("2.0.1"));
        assert_eq!(obs.meta.capabilities, vec!["a", "b"]);
        assert_eq!(obs.meta.labels["region"], "eu");
        assert_eq!(obs.meta.labels["nats_micro_id"], "X1");
        assert_eq!(obs.ttl, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_rollcall_agent_is_read_from_its_embedded_record() {
        let local = LocalPeer {
            id: "agent-1".into(),
            aliases: vec![Alias::peer_id("P")],
            ..Default::default()
        };
        let rec = String::from_utf8(Record::local(&local, Duration::from_secs(15), 1).to_bytes())
            .unwrap();
        let p = ping(&[(RECORD_KEY, &rec), ("agent_id", "agent-1")]);
        let (obs, _) = observation(&p, Duration::from_secs(30));
        assert_eq!(
            obs.aliases,
            vec![Alias::agent_id("agent-1"), Alias::peer_id("P")]
        );
        assert_eq!(
            obs.ttl,
            Some(Duration::from_secs(30)),
            "micro sightings live by the poll, not the heartbeat"
        );
    }
}
