//! `rollcall watch`: follow the roster live. `-c FILE` runs the sources in
//! this process; `--url` follows a running daemon's `/v1/watch` (SSE). A
//! terminal table marks joins (+), changes (~) and leaves (-) for a few
//! seconds; `--json` prints one event per line instead, for scripts.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use rollcall::WatchUpdate;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a join, change or leave stays highlighted.
const HIGHLIGHT: Duration = Duration::from_secs(10);
/// Events buffered between the feed and the screen.
const FEED_QUEUE: usize = 1024;
/// Longest SSE event accepted from a daemon (a snapshot of 100k peers is
/// about 20 MiB).
const MAX_SSE_LINE: usize = 512 * 1024 * 1024;

/// Where the events come from.
#[derive(Debug)]
pub enum Feed {
    /// Run the sources of this config here.
    Config(Box<rollcall::config::Config>),
    /// Follow a daemon: base URL and optional bearer token.
    Url(String, Option<String>),
}

/// Runs until the feed ends or SIGINT/SIGTERM.
pub async fn run(feed: Feed, json_lines: bool) -> Result<(), Box<dyn std::error::Error>> {
    let (tx, mut rx) = mpsc::channel::<Value>(FEED_QUEUE);
    let registry = match feed {
        Feed::Config(cfg) => {
            let registry = rollcall::discover(&cfg)?;
            let mut w = registry.watch();
            tokio::spawn(async move {
                while let Some(u) = w.next().await {
                    let v = match u {
                        WatchUpdate::Snapshot(r) => {
                            let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                            v["event"] = json!("snapshot");
                            v
                        }
                        WatchUpdate::Event(ev) => serde_json::to_value(&ev).unwrap_or(Value::Null),
                    };
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
            });
            Some(registry)
        }
        Feed::Url(base, token) => {
            let url = format!("{}/v1/watch", base.trim_end_matches('/'));
            let mut req = reqwest::Client::new().get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await?;
            if !resp.status().is_success() {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                return Err(format!("{url}: {status}: {body}").into());
            }
            tokio::spawn(follow_sse(resp, tx));
            None
        }
    };
    let mut screen = Screen::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = crate::wait_for_signal();
    tokio::pin!(stop);
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            ev = rx.recv() => {
                let Some(ev) = ev else {
                    if !json_lines { screen.draw(Some("the feed ended")); }
                    break;
                };
                if ev["event"] == "error" {
                    let why = ev["error"].as_str().or(ev["raw"].as_str()).unwrap_or("unknown");
                    failed = Some(format!("the daemon's stream failed: {why}"));
                    if !json_lines {
                        screen.draw(failed.as_deref());
                        break;
                    }
                }
                if json_lines {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{ev}");
                    let _ = out.flush();
                } else {
                    screen.apply(&ev);
                    screen.draw(None);
                }
            }
            _ = tick.tick(), if !json_lines => {
                if screen.expire() { screen.draw(None); }
            }
        }
    }
    if let Some(r) = registry {
        r.shutdown().await;
    }
    match failed {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Reads server-sent events: `event:` and `data:` lines, a blank line ends one.
/// Each byte is scanned once (a large snapshot arrives in many chunks).
async fn follow_sse(resp: reqwest::Response, tx: mpsc::Sender<Value>) {
    let mut body = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let (mut name, mut data) = (String::new(), String::new());
    while let Some(Ok(chunk)) = body.next().await {
        let scanned = buf.len();
        buf.extend_from_slice(&chunk);
        let mut start = 0;
        let mut from = scanned;
        while let Some(off) = buf[from..].iter().position(|b| *b == b'\n') {
            let nl = from + off;
            let line = String::from_utf8_lossy(&buf[start..nl]);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                if !data.is_empty() {
                    let mut v: Value =
                        serde_json::from_str(&data).unwrap_or(json!({ "raw": data }));
                    if v.get("event").is_none() {
                        v["event"] = json!(name);
                    }
                    if tx.send(v).await.is_err() {
                        return;
                    }
                }
                name.clear();
                data.clear();
            } else if let Some(n) = line.strip_prefix("event:") {
                name = n.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
            start = nl + 1;
            from = start;
        }
        buf.drain(..start);
        if buf.len() + data.len() > MAX_SSE_LINE {
            let why = format!("an event from the daemon is over {MAX_SSE_LINE} bytes; giving up");
            let _ = tx.send(json!({ "event": "error", "error": why })).await;
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Joined,
    Changed,
    Left,
}

struct Row {
    peer: Value,
    mark: Option<(Mark, Instant)>,
}

#[derive(Default)]
struct Screen {
    rows: BTreeMap<String, Row>,
    version: u64,
    joins: u64,
    leaves: u64,
    changes: u64,
}

impl Screen {
    fn apply(&mut self, ev: &Value) {
        let now = Instant::now();
        self.version = ev["version"].as_u64().unwrap_or(self.version);
        let peer = ev["peer"].clone();
        let id = peer["id"].as_str().unwrap_or_default().to_owned();
        match ev["event"].as_str().unwrap_or_default() {
            "snapshot" => {
                self.rows.clear();
                for p in ev["peers"].as_array().into_iter().flatten() {
                    let id = p["id"].as_str().unwrap_or_default().to_owned();
                    self.rows.insert(
                        id,
                        Row {
                            peer: p.clone(),
                            mark: None,
                        },
                    );
                }
            }
            "joined" => {
                self.joins += 1;
                self.rows.insert(
                    id,
                    Row {
                        peer,
                        mark: Some((Mark::Joined, now)),
                    },
                );
            }
            "updated" => {
                self.changes += 1;
                // A rename (registry's `renamed_from`) moves the row.
                if let Some(old) = ev["renamed_from"].as_str() {
                    self.rows.remove(old);
                }
                self.rows.insert(
                    id,
                    Row {
                        peer,
                        mark: Some((Mark::Changed, now)),
                    },
                );
            }
            "left" => {
                self.leaves += 1;
                self.rows.insert(
                    id,
                    Row {
                        peer,
                        mark: Some((Mark::Left, now)),
                    },
                );
            }
            _ => {}
        }
    }

    /// Drops highlights older than `HIGHLIGHT` (and the rows of peers that left).
    fn expire(&mut self) -> bool {
        let before = self.rows.len();
        let mut changed = false;
        self.rows.retain(|_, r| match r.mark {
            Some((m, at)) if at.elapsed() >= HIGHLIGHT => {
                changed = true;
                r.mark = None;
                m != Mark::Left
            }
            _ => true,
        });
        changed || before != self.rows.len()
    }

    fn draw(&self, note: Option<&str>) {
        let mut out = String::from("\x1b[H\x1b[2J");
        let live = self
            .rows
            .values()
            .filter(|r| !matches!(r.mark, Some((Mark::Left, _))))
            .count();
        out.push_str(&format!(
            "rollcall watch — {live} peers, version {} — {} joined, {} changed, {} left\r\n\r\n",
            self.version, self.joins, self.changes, self.leaves
        ));
        out.push_str(&format!(
            "  {:<8} {:<28} {:<10} {:<40} {}\r\n",
            "", "ID", "STATUS", "ADDRESSES", "SOURCES"
        ));
        for (id, r) in &self.rows {
            let (tag, color) = match r.mark {
                Some((Mark::Joined, _)) => ("+ joined", "\x1b[32m"),
                Some((Mark::Changed, _)) => ("~ changed", "\x1b[33m"),
                Some((Mark::Left, _)) => ("- left", "\x1b[31m"),
                None => ("", ""),
            };
            let list = |v: &Value, key: Option<&str>| -> String {
                let items: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| match key {
                        Some(k) => x[k].as_str().map(str::to_owned),
                        None => x.as_str().map(str::to_owned),
                    })
                    .collect();
                if items.is_empty() {
                    "-".into()
                } else {
                    items.join(",")
                }
            };
            out.push_str(&format!(
                "{color}  {:<8} {:<28} {:<10} {:<40} {}\x1b[0m\r\n",
                tag,
                id,
                r.peer["status"].as_str().unwrap_or("-"),
                list(&r.peer["addrs"], None),
                list(&r.peer["sources"], Some("name")),
            ));
        }
        if let Some(n) = note {
            out.push_str(&format!("\r\n{n}\r\n"));
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}
