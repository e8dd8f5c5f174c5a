//! A LAN of network namespaces on one bridge (prefix `mm`, 10.77.0.0/16 and,
//! when asked, IPv6 fd00:77::/32 plus link-local), removed again when
//! dropped, also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `true` (after saying so) when ROLLCALL_SKIP_NETNS=1.
pub fn skip(what: &str) -> bool {
    if std::env::var("ROLLCALL_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: ROLLCALL_SKIP_NETNS=1");
        return true;
    }
    false
}

fn run(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?} ({e}): this test needs root and iproute2 (`apt-get install iproute2`), or set ROLLCALL_SKIP_NETNS=1"));
    assert!(
        out.status.success(),
        "{args:?} failed: {} (this test needs root and iproute2, or set ROLLCALL_SKIP_NETNS=1)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One namespace on the LAN.
#[derive(Debug, Clone)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Its IPv4 address on eth0 (empty on an IPv6-only LAN).
    pub ip: String,
    /// Its IPv6 ULA on eth0 (empty on an IPv4-only LAN).
    pub ip6: String,
}

/// The bridge and its namespaces.
#[derive(Debug)]
pub struct Lan {
    pub bridge: String,
    pub hosts: Vec<Host>,
    links: Vec<String>,
    rules: bool,
    rules6: bool,
}

impl Lan {
    /// `n` namespaces `mm<tag>h<k>` with eth0 = 10.77.<subnet>.<k>/24.
    pub fn new(n: usize) -> Lan {
        Lan::with(n, true, false)
    }

    /// `n` namespaces; eth0 has 10.77.<subnet>.<k>/24 if `v4`, and if `v6`
    /// fd00:77:<subnet>::<k>/64 (nodad) and a link-local address usable at
    /// once (DAD off). Without `v4` the hosts have no IPv4 address at all.
    pub fn with(n: usize, v4: bool, v6: bool) -> Lan {
        let c = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = (std::process::id() * 8 + c) % 10000;
        let subnet = (std::process::id() * 8 + c) % 250 + 1;
        let bridge = format!("mmbr{tag}");
        let mut lan = Lan {
            bridge: bridge.clone(),
            hosts: Vec::new(),
            links: Vec::new(),
            rules: false,
            rules6: false,
        };
        must(&["ip", "link", "add", &bridge, "type", "bridge"]);
        // Multicast snooping would drop 224.0.0.251 until a querier is seen.
        run(&[
            "ip",
            "link",
            "set",
            &bridge,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        must(&["ip", "link", "set", &bridge, "up"]);
        if run(&["iptables", "-I", "FORWARD", "-i", &bridge, "-j", "ACCEPT"]) {
            run(&["iptables", "-I", "FORWARD", "-o", &bridge, "-j", "ACCEPT"]);
            lan.rules = true;
        }
        if v6 && run(&["ip6tables", "-I", "FORWARD", "-i", &bridge, "-j", "ACCEPT"]) {
            run(&["ip6tables", "-I", "FORWARD", "-o", &bridge, "-j", "ACCEPT"]);
            lan.rules6 = true;
        }
        for k in 1..=n {
            let ns = format!("mm{tag}h{k}");
            let veth = format!("mm{tag}v{k}");
            let ip = if v4 {
                format!("10.77.{subnet}.{k}")
            } else {
                String::new()
            };
            let ip6 = if v6 {
                format!("fd00:77:{subnet}::{k}")
            } else {
                String::new()
            };
            must(&["ip", "netns", "add", &ns]);
            lan.hosts.push(Host {
                ns: ns.clone(),
                ip: ip.clone(),
                ip6: ip6.clone(),
            });
            must(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            lan.links.push(veth.clone());
            must(&["ip", "link", "set", &veth, "master", &bridge, "up"]);
            if v4 {
                must(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "ip",
                    "addr",
                    "add",
                    &format!("{ip}/24"),
                    "dev",
                    "eth0",
                ]);
            }
            if v6 {
                // No duplicate address detection: the addresses (and the
                // link-local one the kernel adds at link up) work at once.
                for key in ["accept_dad", "dad_transmits"] {
                    must(&[
                        "ip",
                        "netns",
                        "exec",
                        &ns,
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.eth0.{key}=0"),
                    ]);
                }
                must(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &format!("{ip6}/64"),
                    "dev",
                    "eth0",
                    "nodad",
                ]);
            }
            must(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ]);
            must(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            if v4 {
                must(&[
                    "ip", "netns", "exec", &ns, "ip", "route", "add", "default", "dev", "eth0",
                ]);
            }
        }
        lan
    }

    /// Takes host `k`'s link down (as a pulled cable).
    pub fn link_down(&self, k: usize) {
        must(&["ip", "link", "set", &self.links[k], "down"]);
    }

    /// Brings host `k`'s link back (the cable plugged in again).
    pub fn link_up(&self, k: usize) {
        must(&["ip", "link", "set", &self.links[k], "up"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for h in &self.hosts {
            run(&["ip", "netns", "del", &h.ns]);
        }
        for l in &self.links {
            run(&["ip", "link", "del", l]);
        }
        run(&["ip", "link", "del", &self.bridge]);
        if self.rules6 {
            for dir in ["-i", "-o"] {
                run(&[
                    "ip6tables",
                    "-D",
                    "FORWARD",
                    dir,
                    &self.bridge,
                    "-j",
                    "ACCEPT",
                ]);
            }
        }
        if self.rules {
            run(&[
                "iptables",
                "-D",
                "FORWARD",
                "-i",
                &self.bridge,
                "-j",
                "ACCEPT",
            ]);
            run(&[
                "iptables",
                "-D",
                "FORWARD",
                "-o",
                &self.bridge,
                "-j",
                "ACCEPT",
            ]);
        }
    }
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line satisfying `f`, up to `timeout`.
    pub fn wait_for(&mut self, timeout: Duration, f: impl Fn(&str) -> bool) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| f(l)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
