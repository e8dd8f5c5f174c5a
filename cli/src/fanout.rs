//! One serialisation of each snapshot and each event, shared by every
//! `/v1/watch` client (SSE and long poll). A single task follows the
//! registry's `Watch`, encodes every event once into SSE bytes and broadcasts
//! them; snapshots are encoded once per version and cached. A client costs a
//! few reference counts, not a copy of the roster.
//!
//! Order is kept without a gap: a client subscribes to the broadcast first,
//! then takes a snapshot at least as new as the last frame sent before it
//! subscribed, and skips the change events that snapshot already holds. A
//! client that falls behind the bounded broadcast is resynced: it gets a
//! fresh `snapshot` event (the same one a new client gets) and continues from
//! there, so replaying its stream still yields the roster.

use std::convert::Infallible;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use discovery_core::{Registry, Roster, RosterEvent, WatchUpdate};
use futures::Stream;
use tokio::sync::broadcast;

/// Frames buffered for clients; one further behind is resynced.
pub(crate) const FANOUT_BUFFER: usize = 4096;
/// Comment line sent when nothing else was sent for this long (as axum's default).
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const KEEP_ALIVE_FRAME: &[u8] = b":\n\n";

/// A snapshot, encoded once: the SSE frame, and inside it the roster JSON
/// that the long poll answers.
#[derive(Debug)]
pub(crate) struct Snap {
    pub(crate) version: u64,
    sse: Bytes,
    json: Range<usize>,
}

impl Snap {
    fn encode(roster: &Roster) -> Result<Snap, serde_json::Error> {
        let head = format!("event: snapshot\nid: {}\ndata: ", roster.version);
        let mut buf = head.into_bytes();
        let start = buf.len();
        serde_json::to_writer(&mut buf, roster)?;
        let end = buf.len();
        buf.extend_from_slice(b"\n\n");
        metrics::counter!("rollcall_api_snapshot_encodes_total").increment(1);
        Ok(Snap {
            version: roster.version,
            sse: Bytes::from(buf),
            json: start..end,
        })
    }

    /// The roster JSON `{"version": .., "peers": [..]}` (shares the bytes).
    pub(crate) fn json(&self) -> Bytes {
        self.sse.slice(self.json.clone())
    }
}

/// What the fan-out task broadcasts.
#[derive(Clone, Debug)]
enum Frame {
    /// One change or conflict event as an SSE frame.
    Event {
        version: u64,
        conflict: bool,
        sse: Bytes,
    },
    /// The fan-out task itself was resynced by the registry: everyone starts over.
    Snapshot(Arc<Snap>),
    /// The registry stopped; `Some` says why it failed.
    End(Option<Arc<str>>),
}

#[derive(Debug, Default)]
struct Sent {
    /// Version of the last frame broadcast.
    version: u64,
    /// Set once the registry's stream ended.
    ended: Option<Option<Arc<str>>>,
}

/// The shared encoder of `/v1/watch`. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Fanout {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    tx: broadcast::Sender<Frame>,
    /// Held while broadcasting and while subscribing, so a subscriber knows
    /// exactly which frames it will not receive.
    sent: Mutex<Sent>,
    /// The newest encoded snapshot.
    cached: Mutex<Option<Arc<Snap>>>,
    /// One snapshot encoding at a time; the others wait and reuse it.
    encoding: tokio::sync::Mutex<()>,
    started: OnceLock<()>,
}

impl Fanout {
    pub(crate) fn new(registry: Registry) -> Fanout {
        Fanout::with_buffer(registry, FANOUT_BUFFER)
    }

    fn with_buffer(registry: Registry, frames: usize) -> Fanout {
        let (tx, _) = broadcast::channel(frames.max(1));
        Fanout {
            inner: Arc::new(Inner {
                registry,
                tx,
                sent: Mutex::new(Sent::default()),
                cached: Mutex::new(None),
                encoding: tokio::sync::Mutex::new(()),
                started: OnceLock::new(),
            }),
        }
    }

    /// Starts the fan-out task on first use (inside the runtime). Its
    /// registry watch starts here, before any client subscribes, so every
    /// client's snapshot is at least as new as the task's starting point.
    fn start(&self) {
        self.inner.started.get_or_init(|| {
            let watch = self.inner.registry.watch();
            self.inner.lock_sent().version = self.inner.registry.version();
            tokio::spawn(follow(self.inner.clone(), watch));
        });
    }

    /// The roster now, encoded once per version (the long poll's answer).
    pub(crate) async fn current(&self) -> Result<Arc<Snap>, String> {
        let now = self.inner.registry.version();
        self.inner.snapshot_at_least(now).await
    }

    /// The `/v1/watch` SSE response.
    pub(crate) fn sse(&self) -> Response {
        self.start();
        let stream = Client::new(self.inner.clone()).into_stream();
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    }
}

impl Inner {
    fn lock_sent(&self) -> std::sync::MutexGuard<'_, Sent> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self) -> Option<Arc<Snap>> {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn keep(&self, snap: &Arc<Snap>) {
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.as_ref().is_none_or(|old| old.version < snap.version) {
            *c = Some(snap.clone());
        }
    }

    fn broadcast(&self, version: u64, frame: Frame) {
        let mut sent = self.lock_sent();
        sent.version = version;
        if let Frame::End(why) = &frame {
            sent.ended = Some(why.clone());
        }
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(frame);
    }

    /// A receiver, the version of the last frame it will not see, and
    /// whether the stream already ended.
    fn subscribe(&self) -> (broadcast::Receiver<Frame>, u64, Option<Option<Arc<str>>>) {
        let sent = self.lock_sent();
        (self.tx.subscribe(), sent.version, sent.ended.clone())
    }

    /// A snapshot of version `min` or newer: the cached one if it is, else
    /// a fresh one (the registry is never behind what was broadcast).
    async fn snapshot_at_least(&self, min: u64) -> Result<Arc<Snap>, String> {
        if let Some(s) = self.cached().filter(|s| s.version >= min) {
            return Ok(s);
        }
        let _one = self.encoding.lock().await;
        if let Some(s) = self.cached().filter(|s| s.version >= min) {
            return Ok(s);
        }
        let roster = self.registry.snapshot();
        // Large rosters take a while to encode: off the async workers.
        let snap = tokio::task::spawn_blocking(move || Snap::encode(&roster))
            .await
            .map_err(|e| format!("snapshot encoding failed: {e}"))?
            .map_err(|e| format!("snapshot encoding failed: {e}"))?;
        let snap = Arc::new(snap);
        self.keep(&snap);
        Ok(snap)
    }
}

/// The fan-out task: follows the registry once for every client.
async fn follow(inner: Arc<Inner>, mut watch: discovery_core::Watch) {
    let mut first = true;
    while let Some(update) = watch.next().await {
        match update {
            // The starting snapshot: clients encode theirs on demand.
            WatchUpdate::Snapshot(_) if std::mem::take(&mut first) => {}
            WatchUpdate::Snapshot(roster) => {
                // The registry resynced this task: a gap, so every client
                // starts over from a snapshot at least this new.
                let version = roster.version;
                drop(roster);
                let frame = match inner.snapshot_at_least(version).await {
                    Ok(s) => Frame::Snapshot(s),
                    Err(e) => Frame::End(Some(e.into())),
                };
                inner.broadcast(version, frame);
            }
            WatchUpdate::Event(ev) => {
                let version = ev.version();
                let frame = match encode_event(&ev) {
                    Ok(sse) => Frame::Event {
                        version,
                        conflict: matches!(ev, RosterEvent::Conflict { .. }),
                        sse,
                    },
                    Err(e) => {
                        // Cannot happen for these types; if it did, a gap
                        // must not pass silently: everyone resyncs.
                        tracing::error!(error = %e, version, "cannot encode a roster event; resyncing watchers");
                        match inner.snapshot_at_least(version).await {
                            Ok(s) => Frame::Snapshot(s),
                            Err(e) => Frame::End(Some(e.into())),
                        }
                    }
                };
                inner.broadcast(version, frame);
            }
        }
    }
    let why = watch.error().map(Arc::<str>::from);
    let version = inner.lock_sent().version;
    inner.broadcast(version, Frame::End(why));
}

fn event_name(ev: &RosterEvent) -> &'static str {
    match ev {
        RosterEvent::Joined { .. } => "joined",
        RosterEvent::Updated { .. } => "updated",
        RosterEvent::Left { .. } => "left",
        RosterEvent::Conflict { .. } => "conflict",
        _ => "event",
    }
}

fn encode_event(ev: &RosterEvent) -> Result<Bytes, serde_json::Error> {
    let mut buf = format!("event: {}\nid: {}\ndata: ", event_name(ev), ev.version()).into_bytes();
    serde_json::to_writer(&mut buf, ev)?;
    buf.extend_from_slice(b"\n\n");
    Ok(Bytes::from(buf))
}

fn error_frame(why: &str) -> Bytes {
    // SSE data is one line.
    let line = why.replace(['\r', '\n'], " ");
    Bytes::from(format!("event: error\ndata: {line}\n\n"))
}

/// One SSE client.
struct Client {
    inner: Arc<Inner>,
    rx: Option<broadcast::Receiver<Frame>>,
    /// Version of the snapshot this client last got: change events up to it are in it.
    since: u64,
    /// Not started yet: the first poll subscribes and sends the snapshot.
    fresh: bool,
    /// A frame to send before anything else (the error after a final snapshot).
    pending: Option<Bytes>,
    done: bool,
    keep_alive: Pin<Box<tokio::time::Sleep>>,
    _gauge: Gauge,
}

/// Counts open SSE clients.
struct Gauge;

impl Gauge {
    fn new() -> Gauge {
        metrics::gauge!("rollcall_api_watchers").increment(1.0);
        Gauge
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("rollcall_api_watchers").decrement(1.0);
    }
}

impl Client {
    fn new(inner: Arc<Inner>) -> Client {
        Client {
            inner,
            rx: None,
            since: 0,
            fresh: true,
            pending: None,
            done: false,
            keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
            _gauge: Gauge::new(),
        }
    }

    fn into_stream(self) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
        futures::stream::unfold(self, |mut c| async move {
            let out = c.next().await?;
            c.keep_alive
                .as_mut()
                .reset(tokio::time::Instant::now() + KEEP_ALIVE);
            Some((Ok(out), c))
        })
    }

    /// Subscribes (again) and returns the snapshot frame to start from.
    async fn restart(&mut self) -> Bytes {
        let (rx, sent, ended) = self.inner.subscribe();
        self.rx = Some(rx);
        match self.inner.snapshot_at_least(sent).await {
            Ok(s) => {
                self.since = s.version;
                if let Some(why) = ended {
                    // Nothing will follow: end after the snapshot, with the
                    // error the stream ended with (if any).
                    self.rx = None;
                    self.done = true;
                    self.pending = why.map(|w| error_frame(&w));
                }
                s.sse.clone()
            }
            Err(e) => {
                self.done = true;
                error_frame(&e)
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        if self.done {
            return None;
        }
        if std::mem::take(&mut self.fresh) {
            return Some(self.restart().await);
        }
        loop {
            let rx = self.rx.as_mut()?;
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = self.keep_alive.as_mut() => return Some(Bytes::from_static(KEEP_ALIVE_FRAME)),
            };
            match received {
                Ok(Frame::Event {
                    version,
                    conflict,
                    sse,
                }) => {
                    // Change events up to the snapshot are in it; a conflict
                    // found at its version is not.
                    let old = if conflict {
                        version < self.since
                    } else {
                        version <= self.since
                    };
                    if !old {
                        return Some(sse);
                    }
                }
                Ok(Frame::Snapshot(s)) => {
                    self.since = s.version;
                    return Some(s.sse.clone());
                }
                Ok(Frame::End(why)) => {
                    self.done = true;
                    return why.map(|w| error_frame(&w));
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        skipped,
                        "a /v1/watch client fell behind; resyncing it with a snapshot"
                    );
                    metrics::counter!("rollcall_api_watch_resyncs_total").increment(1);
                    return Some(self.restart().await);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;

    /// (event name, JSON) of one SSE frame.
    fn parse(frame: &[u8]) -> (String, Value) {
        let text = std::str::from_utf8(frame).expect("UTF-8");
        assert!(text.ends_with("\n\n"), "{text}");
        let mut name = String::new();
        let mut data = Value::Null;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = serde_json::from_str(d).unwrap_or(Value::String(d.to_owned()));
            }
        }
        (name, data)
    }

    /// A replica keyed by uid, fed with a client's frames.
    #[derive(Default)]
    struct Replica(BTreeMap<u64, String>, u64);

    impl Replica {
        fn apply(&mut self, frame: &[u8]) -> String {
            let (name, v) = parse(frame);
            match name.as_str() {
                "snapshot" => {
                    self.0.clear();
                    for p in v["peers"].as_array().expect("peers") {
                        self.0
                            .insert(p["uid"].as_u64().unwrap(), p["id"].as_str().unwrap().into());
                    }
                    self.1 = v["version"].as_u64().unwrap();
                }
                "joined" | "updated" | "left" => {
                    let version = v["version"].as_u64().unwrap();
                    assert_eq!(version, self.1 + 1, "consecutive versions");
                    self.1 = version;
                    let uid = v["peer"]["uid"].as_u64().unwrap();
                    if name == "left" {
                        self.0.remove(&uid);
                    } else {
                        self.0.insert(uid, v["peer"]["id"].as_str().unwrap().into());
                    }
                }
                other => panic!("unexpected frame {other}: {v}"),
            }
            name
        }

        fn matches(&self, r: &Roster) -> bool {
            self.1 == r.version
                && self.0.len() == r.peers.len()
                && r.peers.iter().all(|p| self.0.get(&p.uid) == Some(&p.id))
        }
    }

    fn peers(n: usize) -> String {
        let mut s = String::from("peers = [\n");
        for i in 0..n {
            s.push_str(&format!("  {{ id = \"p{i:03}\" }},\n"));
        }
        s + "]\n"
    }

    async fn until(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_client_is_resynced_and_every_stream_replays_to_the_roster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("peers.toml");
        std::fs::write(&file, peers(2)).expect("write");
        let text = format!(
            "[sources.f]\ntype = \"static\"\nfile = \"{}\"\nwatch_interval = \"50ms\"\n",
            file.display()
        );
        let cfg = rollcall::config::Config::from_toml_str("test", &text, Some(Default::default()))
            .expect("config");
        let registry = rollcall::discover(&cfg).expect("registry");
        assert!(registry.wait_first_sync(Duration::from_secs(10)).await);
        until("the file is loaded", || {
            registry.snapshot().peers.len() == 2
        })
        .await;

        // A broadcast of 8 frames: 40 joins at once overflow it.
        let fan = Fanout::with_buffer(registry.clone(), 8);
        fan.start();
        let mut slow = Client::new(fan.inner.clone());
        let mut fast = Client::new(fan.inner.clone());
        let mut slow_replica = Replica::default();
        assert_eq!(
            slow_replica.apply(&slow.next().await.expect("snapshot")),
            "snapshot"
        );
        assert!(slow_replica.matches(&registry.snapshot()));
        // The fast client keeps up in its own task.
        let (fast_tx, mut fast_rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
        let fast_task = tokio::spawn(async move {
            while let Some(f) = fast.next().await {
                if fast_tx.send(f).await.is_err() {
                    break;
                }
            }
        });
        let mut fast_replica = Replica::default();
        assert_eq!(
            fast_replica.apply(&fast_rx.recv().await.expect("snapshot")),
            "snapshot"
        );

        let before = registry.version();
        std::fs::write(&file, peers(42)).expect("write");
        let inner = fan.inner.clone();
        until("40 joins broadcast", || {
            inner.lock_sent().version >= before + 40
        })
        .await;
        // The slow client missed more than the buffer: a fresh snapshot, no gap.
        let frame = slow.next().await.expect("resync");
        assert_eq!(slow_replica.apply(&frame), "snapshot");
        assert_eq!(slow_replica.0.len(), 42);
        assert!(slow_replica.matches(&registry.snapshot()));

        // Then it follows events again.
        std::fs::write(&file, peers(43)).expect("write");
        let frame = slow.next().await.expect("join");
        assert_eq!(slow_replica.apply(&frame), "joined");
        assert!(slow_replica.matches(&registry.snapshot()));

        // The fast client's stream (maybe resynced too) replays to the roster.
        until("the fast client catches up", || {
            while let Ok(f) = fast_rx.try_recv() {
                fast_replica.apply(&f);
            }
            fast_replica.matches(&registry.snapshot())
        })
        .await;

        // One encoding per snapshot version, however many clients asked.
        let cached = fan.inner.cached().expect("cached");
        let again = fan.current().await.expect("current");
        assert!(Arc::ptr_eq(&cached, &again) || again.version > cached.version);
        let (_, v) = parse(&again.sse);
        assert_eq!(
            serde_json::from_slice::<Value>(&again.json()).expect("JSON"),
            v
        );

        // The registry stops: every stream ends.
        registry.shutdown().await;
        assert!(slow.next().await.is_none());
        tokio::time::timeout(Duration::from_secs(5), fast_task)
            .await
            .expect("the fast stream ends")
            .expect("task");
    }
}
