#!/usr/bin/env python3
"""Soak (issue 12; outside CI): churn through NATS for a long time against a
daemon with many SSE watchers.

A real nats-server, `rollcall run` with one nats source (heartbeat 1 s, so a
crashed agent is gone after 3 s), WATCHERS `/v1/watch` clients, and ALIVE
`rollcall agent` processes. Every second the oldest agent is stopped (SIGTERM:
it says goodbye; every 10th one is SIGKILLed: a crash, gone after its TTL) and
a new agent with a new id starts. Every minute: the daemon's RSS, roster size,
phantoms (listed, but stopped more than TTL + 2 s ago) and missing agents
(running for over 5 s, not listed). At the end (after 5 s of quiet): each
watcher's replay of its stream (snapshot, then joined/updated/left by uid, with
consecutive versions) must equal `/v1/peers`, and `/v1/peers` must equal the
running agents.

    python3 scripts/soak.py --minutes 60 --watchers 100 --alive 20

Needs nats-server on the PATH and a built binary (default target/release/rollcall,
else target/debug/rollcall; --bin to choose). Prints one JSON line per minute
and a summary line `SOAK {...}`; exits 1 if any check failed.
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, secs=15):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {secs}s")


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    body = c.getresponse().read()
    c.close()
    return json.loads(body)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Watcher(threading.Thread):
    """One SSE client replaying its stream by uid."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.peers = {}
        self.version = 0
        self.snapshots = 0
        self.events = 0
        self.gaps = []
        self.ended = None
        self.lock = threading.Lock()

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=None)
        c.request("GET", "/v1/watch")
        r = c.getresponse()
        name, data = None, None
        while True:
            line = r.fp.readline()
            if not line:
                self.ended = "stream closed"
                return
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name is not None:
                self.apply(name, data)
                name, data = None, None

    def apply(self, name, data):
        if name == "error":
            self.ended = f"error: {data}"
            return
        v = json.loads(data)
        with self.lock:
            if name == "snapshot":
                self.peers = {p["uid"]: p["id"] for p in v["peers"]}
                self.version = v["version"]
                self.snapshots += 1
                return
            version = v.get("version", self.version)
            if name == "conflict":
                if version not in (self.version, self.version + 1):
                    self.gaps.append((self.version, version))
                self.version = version
                return
            if version != self.version + 1:
                self.gaps.append((self.version, version))
            self.version = version
            self.events += 1
            uid = v["peer"]["uid"]
            if name == "left":
                self.peers.pop(uid, None)
            else:
                self.peers[uid] = v["peer"]["id"]

    def state(self):
        with self.lock:
            return self.version, dict(self.peers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--watchers", type=int, default=100)
    ap.add_argument("--alive", type=int, default=20)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    binary = a.bin
    if binary is None:
        for cand in ("target/release/rollcall", "target/debug/rollcall"):
            if os.path.exists(os.path.join(ROOT, cand)):
                binary = os.path.join(ROOT, cand)
                break
    if binary is None:
        raise SystemExit("no rollcall binary: cargo build --release (or pass --bin)")

    tmp = tempfile.mkdtemp(prefix="rollcall-soak-")
    nats_port, api_port = free_port(), free_port()
    url = f"nats://127.0.0.1:{nats_port}"
    procs = []
    nats = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(nats_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(nats)
    wait_port(nats_port)
    cfg = os.path.join(tmp, "run.toml")
    with open(cfg, "w") as f:
        f.write(f'[registry]\nexclude_addresses = []\n\n[sources.nats]\ntype = "nats"\n'
                f'url = "{url}"\nheartbeat = "1s"\n')
    daemon = subprocess.Popen([binary, "run", "--listen", f"127.0.0.1:{api_port}", "-c", cfg],
                              stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "run.log"), "w"))
    procs.append(daemon)
    wait_port(api_port)

    def agent(n):
        env = dict(os.environ, ROLLCALL__SOURCES__NATS__URL=url,
                   ROLLCALL__SOURCES__NATS__HEARTBEAT="1s",
                   ROLLCALL__LOCAL__ID=f"soak-{n}",
                   ROLLCALL__LOCAL__ADDRS=f"10.1.{n // 250 % 250}.{n % 250 + 1}:9000",
                   RUST_LOG="error")
        return subprocess.Popen([binary, "agent", "-c", "examples/nats.toml"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    alive = []  # (id, Popen, started)
    stopped = {}  # id -> when
    serial = 0
    for _ in range(a.alive):
        alive.append((f"soak-{serial}", agent(serial), time.time()))
        serial += 1
    time.sleep(3)
    watchers = [Watcher(api_port) for _ in range(a.watchers)]
    for w in watchers:
        w.start()
    time.sleep(2)

    ttl = 3.0
    failures = []
    samples = []
    start = time.time()
    next_sample = start
    churned = crashes = 0
    while time.time() - start < a.minutes * 60:
        ident, p, _ = alive.pop(0)
        if churned % 10 == 9:
            p.kill()
            crashes += 1
        else:
            p.send_signal(signal.SIGTERM)
        p.wait()
        stopped[ident] = time.time()
        churned += 1
        alive.append((f"soak-{serial}", agent(serial), time.time()))
        serial += 1
        now = time.time()
        if now >= next_sample:
            roster = {p["id"] for p in get_json(api_port, "/v1/peers")["peers"]}
            phantoms = sorted(i for i in roster
                              if i in stopped and now - stopped[i] > ttl + 2)
            missing = sorted(i for i, _, t in alive if now - t > 5 and i not in roster)
            s = {"minute": round((now - start) / 60, 1), "rss_kib": rss_kib(daemon.pid),
                 "roster": len(roster), "alive": len(alive), "phantoms": phantoms,
                 "missing": missing, "churned": churned,
                 "watchers_open": sum(1 for w in watchers if w.ended is None)}
            samples.append(s)
            print(json.dumps(s), flush=True)
            if phantoms:
                failures.append(f"phantoms at {s['minute']} min: {phantoms}")
            if missing:
                failures.append(f"missing at {s['minute']} min: {missing}")
            next_sample += 60
            # Stopped ids older than a minute can no longer be phantoms we check.
            stopped = {i: t for i, t in stopped.items() if now - t < 120}
        time.sleep(max(0.0, 1.0 - (time.time() - now)))

    time.sleep(5)
    final = get_json(api_port, "/v1/peers")
    roster = {p["uid"]: p["id"] for p in final["peers"]}
    want = {i for i, _, _ in alive}
    if set(roster.values()) != want:
        failures.append(f"final roster {sorted(roster.values())} != running {sorted(want)}")
    replayed = 0
    for k, w in enumerate(watchers):
        if w.ended is not None:
            failures.append(f"watcher {k} ended: {w.ended}")
            continue
        version, peers = w.state()
        if w.gaps:
            failures.append(f"watcher {k}: version gaps {w.gaps[:5]}")
        if version != final["version"] or peers != roster:
            failures.append(f"watcher {k}: replay at version {version} has {len(peers)} peers, "
                            f"roster version {final['version']} has {len(roster)}")
        else:
            replayed += 1
    rss = [s["rss_kib"] for s in samples]
    summary = {"minutes": a.minutes, "watchers": a.watchers, "alive": a.alive,
               "churned": churned, "crashes": crashes, "version": final["version"],
               "events_per_watcher": max((w.events for w in watchers), default=0),
               "resync_snapshots": sum(w.snapshots - 1 for w in watchers),
               "watchers_replaying_to_roster": replayed,
               "rss_kib_first": rss[0] if rss else None,
               "rss_kib_max": max(rss) if rss else None,
               "rss_kib_last": rss[-1] if rss else None,
               "failures": failures[:20], "binary": binary}
    print("SOAK " + json.dumps(summary), flush=True)
    for _, p, _ in alive:
        p.send_signal(signal.SIGTERM)
    for _, p, _ in alive:
        p.wait()
    for p in procs[::-1]:
        p.terminate()
        p.wait()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
