//! What a source gets in its context beyond the event sender: the read-only
//! roster view and the shared libp2p identity.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use discovery_core::{
    Alias, DiscoverySource, LocalPeer, Observation, RegistryBuilder, RegistryConfig, SourceContext,
    SourceError, SourceOptions,
};

/// Upserts one peer and idles.
struct Finder;

#[async_trait]
impl DiscoverySource for Finder {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        let o = Observation::new("a").with_alias(Alias::agent_id("agent-a"));
        let _ = ctx.events.upsert(o).await;
        let _ = ctx.events.synced().await;
        ctx.shutdown.cancelled().await;
        Ok(())
    }
}

/// Waits on its roster view until another source's peer shows up, then
/// reports what it saw (and what its context said about the local peer).
#[derive(Default)]
struct Reader {
    seen: Arc<Mutex<Option<Vec<String>>>>,
    local_aliases: Arc<Mutex<Vec<Alias>>>,
    identity: bool,
}

#[async_trait]
impl DiscoverySource for Reader {
    async fn run(&self, ctx: SourceContext) -> Result<(), SourceError> {
        if let Some(l) = &ctx.local {
            *self.local_aliases.lock().unwrap() = l.aliases.clone();
        }
        let mut view = ctx.roster.clone();
        loop {
            let ids: Vec<String> = view.snapshot().peers.iter().map(|p| p.id.clone()).collect();
            if !ids.is_empty() {
                *self.seen.lock().unwrap() = Some(ids);
                break;
            }
            tokio::select! {
                alive = view.changed() => if !alive { break },
                _ = ctx.shutdown.cancelled() => break,
            }
        }
        let _ = ctx.events.synced().await;
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    fn uses_identity(&self) -> bool {
        self.identity
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_reads_what_the_others_found() {
    let reader = Reader::default();
    let seen = reader.seen.clone();
    let registry = RegistryBuilder::new(RegistryConfig::default())
        .source("reader", SourceOptions::default(), reader)
        .source("finder", SourceOptions::default(), Finder)
        .start()
        .unwrap();
    assert!(registry.wait_first_sync(Duration::from_secs(5)).await);
    assert_eq!(
        seen.lock().unwrap().clone(),
        Some(vec!["agent-a".to_string()])
    );
    registry.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_announcing_process_claims_its_peer_id_when_a_source_uses_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let reader = Reader {
        identity: true,
        ..Default::default()
    };
    let aliases = reader.local_aliases.clone();
    let registry = RegistryBuilder::new(RegistryConfig::default())
        .identity_file(&key)
        .source("reader", SourceOptions::default(), reader)
        .source("finder", SourceOptions::default(), Finder)
        .announce(LocalPeer {
            id: "agent-7".into(),
            ..Default::default()
        })
        .start()
        .unwrap();
    assert!(registry.wait_first_sync(Duration::from_secs(5)).await);
    let id = discovery_core::identity::load_or_create(&key).unwrap();
    assert_eq!(
        aliases.lock().unwrap().clone(),
        vec![Alias::peer_id(id.peer_id().to_string())]
    );
    registry.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_source_uses_the_identity_no_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id.key");
    let registry = RegistryBuilder::new(RegistryConfig::default())
        .identity_file(&key)
        .source("finder", SourceOptions::default(), Finder)
        .announce(LocalPeer {
            id: "agent-7".into(),
            ..Default::default()
        })
        .start()
        .unwrap();
    assert!(registry.wait_first_sync(Duration::from_secs(5)).await);
    assert!(!key.exists());
    registry.shutdown().await;
}
