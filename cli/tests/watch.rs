//! `rollcall watch`, used as a person would: in a tmux pane (send-keys,
//! capture-pane) following a real daemon, with joins, changes and leaves
//! marked; and `watch -c FILE --json`, one event per line, for scripts.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn peers_file(entries: &[(&str, &str)]) -> String {
    let mut s = String::from("peers = [\n");
    for (i, (id, status)) in entries.iter().enumerate() {
        s.push_str(&format!(
            "  {{ id = \"{id}\", status = \"{status}\", addrs = [\"/ip4/10.0.3.{}/tcp/9000\"] }},\n",
            i + 1
        ));
    }
    s.push_str("]\n");
    s
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\nexclude_addresses = []\n[sources.file]\ntype = \"static\"\nfile = \"{}\"\nwatch_interval = \"100ms\"\n",
            dir.join("peers.toml").display()
        ),
    )
    .unwrap();
    cfg
}

struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux missing: apt-get install tmux")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "w"]).stdout).into_owned()
    }
    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn line_with<'a>(screen: &'a str, id: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == id))
        .unwrap_or("")
}

#[test]
fn the_table_in_tmux_marks_joins_changes_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.toml");
    std::fs::write(
        &file,
        peers_file(&[("walnut", "idle"), ("chestnut", "idle")]),
    )
    .unwrap();
    let cfg = config(dir.path());
    let port = free_port();
    let _d = Killed(vec![daemon(&cfg, port, &dir.path().join("log"))]);
    let tmux = Tmux(format!("dm-watch-{}", std::process::id()));
    let cmdline = format!(
        "{} watch --url http://127.0.0.1:{port}",
        env!("CARGO_BIN_EXE_rollcall")
    );
    // The daemon may still be starting: retry the watch until it connects.
    let shell = format!("until {cmdline}; do sleep 0.2; done");
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "w",
        "-x",
        "150",
        "-y",
        "30",
        &shell,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = tmux.wait_screen("both peers", |s| {
        s.contains("walnut") && s.contains("chestnut")
    });
    assert!(s.contains("2 peers"), "{s}");

    std::fs::write(
        &file,
        peers_file(&[("chestnut", "working"), ("hazel", "idle")]),
    )
    .unwrap();
    let s = tmux.wait_screen("the three marks", |s| {
        line_with(s, "hazel").contains("+ joined")
            && line_with(s, "walnut").contains("- left")
            && line_with(s, "chestnut").contains("~ changed")
    });
    assert!(line_with(&s, "chestnut").contains("working"), "{s}");
    assert!(s.contains("2 peers"), "{s}");

    // Ctrl-C ends it like in any terminal: the pane's command exits.
    tmux.cmd(&["send-keys", "-t", "w", "C-c", ""]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.cmd(&["has-session", "-t", "w"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "watch ignored Ctrl-C:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn json_lines_from_a_config_run_here() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("peers.toml");
    std::fs::write(&file, peers_file(&[("walnut", "idle")])).unwrap();
    let cfg = config(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["watch", "--json", "-c"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _k = Killed(vec![child]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = || -> serde_json::Value {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("no JSON line");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))
    };
    // The snapshot comes first (maybe empty, before the file was read).
    let mut ev = next();
    assert_eq!(ev["event"], "snapshot");
    if ev["peers"].as_array().unwrap().is_empty() {
        ev = next();
        assert_eq!(ev["event"], "joined");
        assert_eq!(ev["peer"]["id"], "walnut");
    } else {
        assert_eq!(ev["peers"][0]["id"], "walnut");
    }
    std::fs::write(&file, peers_file(&[("walnut", "idle"), ("hazel", "idle")])).unwrap();
    let ev = next();
    assert_eq!(ev["event"], "joined", "{ev}");
    assert_eq!(ev["peer"]["id"], "hazel");
    assert!(ev["version"].as_u64().unwrap() >= 2);
}
