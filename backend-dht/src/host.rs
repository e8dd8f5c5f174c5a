//! The event loop of one source run: listen, bootstrap, provide, look up,
//! follow liveness, report.

// One arm per event kind reads better than guards spread over several arms.
#![allow(clippy::collapsible_match)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use discovery_core::{AddressPolicy, SourceContext};
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, ping, request_response, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::bootstrap;
use crate::liveness::{self, Providers};
use crate::metadata::{MetaReply, MetaRequest};
use crate::metrics_names::{self as m, dropped};
use crate::signing::{self, Signer};
use crate::{shards, DhtSource, Error};
use discovery_core::signed::Verifier;

/// Most providers one source tracks.
const MAX_PROVIDERS: usize = 10_000;
/// Most roster peers dialled per roster change.
const MAX_ROSTER_DIALS: usize = 256;

struct Run<'a> {
    src: &'a DhtSource,
    /// Checks received metadata (`[sources.NAME.signing]`).
    verifier: Verifier,
    /// Signs the metadata this host answers with, when `signing.sign`.
    signer: Option<&'a Signer>,
    ctx: SourceContext,
    swarm: Swarm<Behaviour>,
    me: PeerId,
    kad_protocol: StreamProtocol,
    providers: Providers,
    /// Peers whose addresses kad has (from bootstrap, identify or the roster).
    known: HashSet<PeerId>,
    /// Lookup queries of the current round.
    lookups: HashSet<QueryId>,
    first_round_done: bool,
    /// kad finished its first bootstrap (routing-table refresh).
    bootstrapped: bool,
    synced: bool,
    synced_deadline: Option<Instant>,
    /// Next bootstrap re-dial while connected to nobody, and its backoff.
    retry_at: Option<Instant>,
    retry_backoff: Duration,
    lookup_due: bool,
    provide_due: bool,
    /// Bootstrap entries without a peer id, by the address dialled.
    unnamed: HashMap<Multiaddr, Option<PeerId>>,
    announce: bool,
    /// Listen addresses identify reported, per connected peer (a provider may
    /// be identified before a lookup names it).
    identified: HashMap<PeerId, Vec<Multiaddr>>,
}

pub(crate) async fn run<'a>(
    src: &'a DhtSource,
    key: libp2p::identity::Keypair,
    ctx: SourceContext,
    verifier: Verifier,
    signer: Option<&'a Signer>,
) -> Result<(), Error> {
    let me = key.public().to_peer_id();
    let mut swarm = behaviour::build(&src.cfg, key)?;
    for addr in &src.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Host(format!("listen on {addr}: {e}")))?;
    }
    let announce = ctx.announce().is_some();
    tracing::info!(source = %ctx.name, peer_id = %me, announce, "dht host started");
    let mut run = Run {
        kad_protocol: StreamProtocol::try_from_owned(src.cfg.protocol.clone()).map_err(|e| {
            Error::Config {
                key: "protocol",
                reason: e.to_string(),
            }
        })?,
        src,
        verifier,
        signer,
        swarm,
        me,
        providers: Providers::new(MAX_PROVIDERS, src.cfg.observation_ttl()),
        known: HashSet::new(),
        lookups: HashSet::new(),
        first_round_done: false,
        bootstrapped: false,
        synced: false,
        synced_deadline: None,
        retry_at: None,
        retry_backoff: Duration::from_secs(1),
        lookup_due: true,
        provide_due: announce,
        unnamed: HashMap::new(),
        announce,
        identified: HashMap::new(),
        ctx,
    };
    run.dial_bootstrap();
    run.dial_roster();
    run.main().await;
    Ok(())
}

impl Run<'_> {
    async fn main(&mut self) {
        let cfg = &self.src.cfg;
        let mut lookup = interval(cfg.lookup_interval);
        // kad itself republishes the provider record (every
        // `republish_interval`) and refreshes its routing table (every
        // `bootstrap_interval`, and when a peer enters it): this loop only
        // re-dials the bootstrap list and the roster. Doing kad's work a
        // second time doubled the DHT traffic, which a 30-host test on two
        // cores could not carry.
        let mut rebootstrap = interval(cfg.bootstrap_interval);
        // Debounces lookups/provides after new peers and roster changes.
        let mut tick = interval(Duration::from_millis(250));
        for t in [&mut lookup, &mut rebootstrap, &mut tick] {
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        let mut roster = self.ctx.roster.clone();
        let mut roster_open = true;
        let mut roster_dirty = false;
        let shutdown = self.ctx.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_event(ev).await,
                _ = lookup.tick() => self.lookup_due = true,
                _ = rebootstrap.tick() => {
                    self.dial_bootstrap();
                    roster_dirty = true;
                }
                open = roster.changed(), if roster_open => {
                    roster_open = open;
                    roster_dirty = open;
                }
                _ = tick.tick() => {
                    if roster_dirty {
                        roster_dirty = false;
                        self.dial_roster();
                    }
                    self.retry_bootstrap();
                    self.due().await;
                }
            }
        }
        // Goodbye: stop providing so lookups stop returning us soon.
        for key in shards::all(&self.src.cfg.namespace, self.src.cfg.shards) {
            self.swarm.behaviour_mut().kad.stop_providing(&key);
        }
    }

    async fn due(&mut self) {
        let has_peers = self.swarm.connected_peers().next().is_some();
        if self.provide_due && has_peers {
            self.provide_due = false;
            let shard = shards::of(&self.me, self.src.cfg.shards);
            let key = shards::key(&self.src.cfg.namespace, shard);
            match self.swarm.behaviour_mut().kad.start_providing(key) {
                Ok(_) => metrics::counter!(m::PROVIDES).increment(1),
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, error = %e, "dht: cannot provide")
                }
            }
        }
        if !self.src.cfg.discover {
            // Announce only: nothing to look up, so nothing to wait for.
            self.lookup_due = false;
            self.round_finished();
        }
        if self.lookup_due && self.lookups.is_empty() && (has_peers || !self.first_round_done) {
            self.lookup_due = false;
            if has_peers {
                for key in shards::all(&self.src.cfg.namespace, self.src.cfg.shards) {
                    let q = self.swarm.behaviour_mut().kad.get_providers(key);
                    self.lookups.insert(q);
                    metrics::counter!(m::LOOKUPS).increment(1);
                }
            } else {
                // Nobody to ask yet: an empty DHT is a complete (empty) answer.
                self.round_finished();
            }
        }
        if !self.synced {
            let all_answered = self.first_round_done && self.providers.unreported() == 0;
            let late = self.synced_deadline.is_some_and(|d| Instant::now() >= d);
            if all_answered || late {
                self.synced = true;
                let _ = self.ctx.events.synced().await;
            }
        }
        metrics::gauge!(m::LIVE).set(self.providers.live() as f64);
    }

    fn round_finished(&mut self) {
        if !self.first_round_done {
            self.first_round_done = true;
            self.synced_deadline = Some(Instant::now() + self.src.cfg.ping_interval * 3);
        }
    }

    /// While connected to nobody, dials the bootstrap list again after 1 s,
    /// 2 s, 4 s... up to `bootstrap_interval`: hosts that start together
    /// would otherwise wait a whole interval for a seed that was not
    /// listening yet.
    fn retry_bootstrap(&mut self) {
        if self.swarm.connected_peers().next().is_some() {
            self.retry_backoff = Duration::from_secs(1);
            self.retry_at = None;
            return;
        }
        if self.src.bootstrap.is_empty() {
            return;
        }
        let now = Instant::now();
        match self.retry_at {
            None => self.retry_at = Some(now + self.retry_backoff),
            Some(at) if now >= at => {
                tracing::debug!(source = %self.ctx.name, backoff = ?self.retry_backoff, "dht: no peer yet, dialling the bootstrap list again");
                self.dial_bootstrap();
                self.retry_backoff = (self.retry_backoff * 2).min(self.src.cfg.bootstrap_interval);
                self.retry_at = Some(now + self.retry_backoff);
            }
            Some(_) => {}
        }
    }

    fn dial_bootstrap(&mut self) {
        for b in &self.src.bootstrap {
            match b.peer {
                Some(p) if p == self.me => {}
                Some(p) => {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&p, b.addr.clone());
                    if !self.swarm.is_connected(&p) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(p).addresses(vec![b.addr.clone()]).build());
                    }
                }
                None => {
                    let connected = self
                        .unnamed
                        .get(&b.addr)
                        .copied()
                        .flatten()
                        .is_some_and(|p| self.swarm.is_connected(&p));
                    if !connected {
                        self.unnamed.insert(b.addr.clone(), None);
                        let _ = self
                            .swarm
                            .dial(DialOpts::unknown_peer_id().address(b.addr.clone()).build());
                    }
                }
            }
        }
    }

    fn dial_roster(&mut self) {
        let snapshot = self.ctx.roster.snapshot();
        let peers = bootstrap::from_roster(&snapshot, &self.me);
        for (peer, addrs) in peers.into_iter().take(MAX_ROSTER_DIALS) {
            if self.known.contains(&peer) && self.swarm.is_connected(&peer) {
                continue;
            }
            for a in &addrs {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
            if self.known.insert(peer) {
                tracing::debug!(source = %self.ctx.name, %peer, "dht: bootstrap peer from the roster");
                self.lookup_due = true;
                self.provide_due = self.announce;
            }
            if !self.swarm.is_connected(&peer) {
                let _ = self
                    .swarm
                    .dial(DialOpts::peer_id(peer).addresses(addrs).build());
            }
        }
    }

    async fn report(&mut self, peer: &PeerId) {
        if let Some(obs) = self.providers.answered(peer) {
            let _ = self.ctx.events.upsert(obs).await;
        }
    }

    async fn gone(&mut self, peer: &PeerId) {
        if self.providers.forget(peer) {
            tracing::debug!(source = %self.ctx.name, %peer, "dht: provider stopped answering");
            let _ = self.ctx.events.remove(liveness::key(peer)).await;
        }
    }

    async fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                if advertisable(&address, &self.src.listen) {
                    self.swarm.add_external_address(address.clone());
                }
                tracing::info!(source = %self.ctx.name, %address, "dht: listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let mut bootstrap_peer = self.src.bootstrap.iter().any(|b| b.peer == Some(peer_id));
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    if let Some(slot) = self.unnamed.get_mut(&addr) {
                        // A bootstrap entry without /p2p: now we know who it is.
                        *slot = Some(peer_id);
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                        bootstrap_peer = true;
                    }
                }
                // A new bootstrap peer is a way into the DHT: look up and
                // provide through it. Other connections (discoverers dialling
                // us, providers we dial) add nothing to what kad can reach.
                if self.known.insert(peer_id) && bootstrap_peer {
                    self.lookup_due = true;
                    self.provide_due = self.announce;
                }
                if self.providers.contains(&peer_id) {
                    self.swarm
                        .behaviour_mut()
                        .meta
                        .send_request(&peer_id, MetaRequest {});
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if self.providers.contains(&peer_id) {
                    // A clean close or a crash: try once more; a failed dial removes it.
                    let _ = self.swarm.dial(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                ..
            } => {
                if self.providers.contains(&peer) && !self.swarm.is_connected(&peer) {
                    self.gone(&peer).await;
                }
            }
            SwarmEvent::IncomingConnectionError { .. } => dropped("handshake"),
            SwarmEvent::Behaviour(b) => self.on_behaviour(b).await,
            _ => {}
        }
    }

    async fn on_behaviour(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => {
                if matches!(result, QueryResult::Bootstrap(_)) && step.last && !self.bootstrapped {
                    // The first routing-table refresh is done: the record can
                    // now go to the peers really closest to its key, and a
                    // lookup reaches them too.
                    self.bootstrapped = true;
                    self.provide_due = self.announce;
                    self.lookup_due = true;
                }
                if let QueryResult::GetProviders(r) = result {
                    match r {
                        Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                            for p in providers {
                                if p == self.me || !self.providers.found(p) {
                                    continue;
                                }
                                if let (Some(a), Some(e)) =
                                    (self.identified.get(&p), self.providers.get_mut(&p))
                                {
                                    e.addrs = a.clone();
                                }
                                if self.swarm.is_connected(&p) {
                                    self.swarm
                                        .behaviour_mut()
                                        .meta
                                        .send_request(&p, MetaRequest {});
                                } else {
                                    let _ = self.swarm.dial(p);
                                }
                            }
                        }
                        Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                        Err(e) => {
                            tracing::debug!(source = %self.ctx.name, error = %e, "dht: lookup ended")
                        }
                    }
                    if step.last && self.lookups.remove(&id) && self.lookups.is_empty() {
                        self.round_finished();
                    }
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocols.contains(&self.kad_protocol) {
                    for a in info.listen_addrs.iter().take(32) {
                        if advertisable(a, &[]) || is_loopback(a) {
                            self.swarm
                                .behaviour_mut()
                                .kad
                                .add_address(&peer_id, a.clone());
                        }
                    }
                }
                // The registry applies its own address policy (loopback, link-local).
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| advertisable(a, &[]) || is_loopback(a))
                    .take(16)
                    .collect();
                if self.identified.len() < MAX_PROVIDERS || self.identified.contains_key(&peer_id) {
                    self.identified.insert(peer_id, addrs.clone());
                }
                if let Some(p) = self.providers.get_mut(&peer_id) {
                    p.addrs = addrs;
                    if p.reported {
                        self.report(&peer_id).await;
                    }
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            }) => {
                // Each answer renews the observation; no answer lets it lapse.
                let answered = self
                    .providers
                    .get_mut(&peer)
                    .is_some_and(|p| p.meta.is_some());
                if answered {
                    self.report(&peer).await;
                }
            }
            BehaviourEvent::Meta(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request { channel, .. } => {
                        let mut reply = MetaReply::of_local(self.ctx.announce());
                        if let Some(s) = self.signer {
                            s.sign(&mut reply);
                        }
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .meta
                            .send_response(channel, reply);
                    }
                    request_response::Message::Response { response, .. } => {
                        let response = match response.validate() {
                            Ok(()) => response,
                            Err(why) => {
                                // The peer answers, so it is alive; its metadata is not kept.
                                tracing::debug!(source = %self.ctx.name, %peer, why, "dht: metadata dropped");
                                dropped("metadata_invalid");
                                MetaReply::default()
                            }
                        };
                        if !self.providers.contains(&peer) {
                            return;
                        }
                        // Rejections are counted (and logged) by the verifier.
                        let accepted = signing::verify(&self.verifier, &response, &peer).is_ok();
                        if let Some(p) = self.providers.get_mut(&peer) {
                            if accepted {
                                p.meta = Some(response);
                                self.report(&peer).await;
                            } else if p.meta.is_none() {
                                // Never listed: not signed as required, or
                                // by a key not bound to its agent id.
                                p.rejected = true;
                            }
                        }
                    }
                }
            }
            BehaviourEvent::Meta(request_response::Event::InboundFailure { error, .. }) => {
                tracing::debug!(source = %self.ctx.name, %error, "dht: bad metadata request");
                dropped("metadata_request");
            }
            BehaviourEvent::Meta(request_response::Event::OutboundFailure {
                peer, error, ..
            }) => {
                tracing::debug!(source = %self.ctx.name, %peer, %error, "dht: metadata request failed");
                dropped("metadata_reply");
            }
            _ => {}
        }
    }
}

/// Listen addresses worth announcing: never unspecified; loopback only when the
/// configured listen addresses are loopback themselves (tests, one host).
fn advertisable(addr: &Multiaddr, listen: &[Multiaddr]) -> bool {
    let policy = AddressPolicy::default();
    let text: Option<discovery_core::Multiaddr> = addr.to_string().parse().ok();
    let Some(core) = text else { return false };
    match policy.check(&core) {
        None => true,
        Some(discovery_core::addr::DropReason::Unspecified) => false,
        Some(_) => is_loopback(addr) && listen.iter().any(is_loopback),
    }
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}
