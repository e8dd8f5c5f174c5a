//! The line protocol between the harness and a discoverer child: one JSON
//! object per line on the child's stdout (what it saw, with wall-clock
//! timestamps), one JSON command per line on its stdin.
//!
//! Timestamps are microseconds since the Unix epoch (`CLOCK_REALTIME`): agents,
//! discoverers and the harness run on one machine (processes, network
//! namespaces or containers share the kernel clock), so they compare directly.

use std::time::{SystemTime, UNIX_EPOCH};

use discovery_core::Alias;
use serde::{Deserialize, Serialize};

/// Now, in microseconds since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    to_us(SystemTime::now())
}

/// A wall-clock time in microseconds since the Unix epoch.
pub(crate) fn to_us(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// One roster entry as a discoverer reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WirePeer {
    /// The roster's display id.
    pub id: String,
    /// Every identity claim.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Addresses, as the roster lists them.
    #[serde(default)]
    pub addrs: Vec<String>,
}

impl WirePeer {
    pub(crate) fn of(p: &rollcall::Peer) -> Self {
        WirePeer {
            id: p.id.clone(),
            aliases: p.aliases.clone(),
            addrs: p.addrs.clone(),
        }
    }
}

/// The result of asking one reported address who answers `/health` there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AddrCheck {
    /// The roster entry's id.
    pub peer: String,
    /// The address as reported.
    pub addr: String,
    /// The `id` the health endpoint answered with.
    #[serde(default)]
    pub answered: Option<String>,
    /// Why nothing (usable) answered.
    #[serde(default)]
    pub error: Option<String>,
}

/// What a discoverer child says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Out {
    /// The discoverer is about to start its sources: its cold start, t0.
    Started { t: i64 },
    /// The whole roster (first, and after a resync).
    Snapshot { t: i64, peers: Vec<WirePeer> },
    /// A new entry.
    Joined { t: i64, peer: WirePeer },
    /// An entry changed (aliases or addresses).
    Updated { t: i64, peer: WirePeer },
    /// An entry left.
    Left { t: i64, id: String },
    /// The source's health changed.
    Health {
        t: i64,
        health: String,
        synced: bool,
        #[serde(default)]
        error: Option<String>,
    },
    /// Answer to `check`.
    Check { results: Vec<AddrCheck> },
    /// CPU time and peak memory of the discoverer process so far.
    Usage {
        cpu_ms: Option<u64>,
        peak_rss_kib: Option<u64>,
    },
    /// The discoverer could not run.
    Fatal { error: String },
}

/// What the harness asks a discoverer child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Cmd {
    /// Report usage, then ask every address of every entry who answers
    /// `GET /health`; addresses without a port use `health_port`.
    Check { health_port: u16 },
    /// Report usage, stop the sources and exit.
    Stop,
}

/// CPU time (user + system, all threads) and peak resident memory of this
/// process, from `/proc/self/stat` (in USER_HZ = 100 ticks per second, which
/// Linux fixes for user space) and `/proc/self/status` (`VmHWM`).
pub(crate) fn self_usage() -> (Option<u64>, Option<u64>) {
    usage_of("self")
}

/// The same for another process (`/proc/<pid>`).
pub(crate) fn usage_of(pid: &str) -> (Option<u64>, Option<u64>) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command name: state is field 3 of stat(5), utime 14, stime 15.
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 10)
        });
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
    (cpu, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let lines = [
            Out::Started { t: 1 },
            Out::Joined {
                t: 2,
                peer: WirePeer {
                    id: "a".into(),
                    aliases: vec![Alias::agent_id("a")],
                    addrs: vec!["/ip4/10.0.0.1/tcp/8081".into()],
                },
            },
            Out::Left {
                t: 3,
                id: "a".into(),
            },
            Out::Usage {
                cpu_ms: Some(10),
                peak_rss_kib: None,
            },
        ];
        for l in lines {
            let s = serde_json::to_string(&l).unwrap();
            assert!(!s.contains('\n'));
            assert_eq!(serde_json::from_str::<Out>(&s).unwrap(), l);
        }
        let c: Cmd = serde_json::from_str(r#"{"cmd":"check","health_port":8081}"#).unwrap();
        assert_eq!(c, Cmd::Check { health_port: 8081 });
    }

    #[test]
    fn reads_own_usage() {
        let (cpu, peak) = self_usage();
        assert!(cpu.is_some());
        assert!(peak.unwrap() > 0);
    }
}
