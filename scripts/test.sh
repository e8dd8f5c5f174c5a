#!/usr/bin/env bash
# The one command that runs every rollcall test on a fresh machine; CI runs exactly this.
#
#   bash scripts/test.sh
#
# It installs and starts what the tests need when it is missing (as root):
# nats-server and docker.io from Debian, dockerd, a one-node Docker Swarm, the
# FROM-scratch image of the static `rollcall` binary, a second dockerd in a
# network namespace for the two-node tests. Outside CI, a part may be skipped
# only on purpose, and the run says so:
#   ROLLCALL_SKIP_NATS=1    tests that need nats-server
#   ROLLCALL_SKIP_DOCKER=1  tests that need Docker / Docker Swarm
#   ROLLCALL_SKIP_NETNS=1   tests that need root and network namespaces
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
skipping() { [ "${!1:-}" = "1" ]; }

if [ "${CI:-}" = "true" ]; then
  for v in ROLLCALL_SKIP_NATS ROLLCALL_SKIP_DOCKER ROLLCALL_SKIP_NETNS ROLLCALL_SKIP_FUZZ; do
    if skipping "$v"; then echo "CI never skips: unset $v" >&2; exit 1; fi
  done
fi
for v in ROLLCALL_SKIP_NATS ROLLCALL_SKIP_DOCKER ROLLCALL_SKIP_NETNS ROLLCALL_SKIP_FUZZ; do
  if skipping "$v"; then echo "NOTE: $v=1: the tests it covers are SKIPPED in this run"; fi
done

# 1. Packages the tests need, installed only when missing.
pkgs=()
skipping ROLLCALL_SKIP_NATS || command -v nats-server >/dev/null || pkgs+=(nats-server)
if ! skipping ROLLCALL_SKIP_DOCKER; then
  command -v dockerd >/dev/null || pkgs+=(docker.io)
  command -v haproxy >/dev/null || pkgs+=(haproxy)
  command -v openssl >/dev/null || pkgs+=(openssl)
  command -v nsenter >/dev/null || pkgs+=(util-linux)
fi
# The daemon's tests: TLS certs and a real TLS client, dig, tmux, Prometheus.
command -v openssl >/dev/null || pkgs+=(openssl)
command -v curl >/dev/null || pkgs+=(curl)
command -v dig >/dev/null || pkgs+=(dnsutils)
command -v tmux >/dev/null || pkgs+=(tmux)
command -v prometheus >/dev/null || pkgs+=(prometheus)
if ! skipping ROLLCALL_SKIP_NETNS || ! skipping ROLLCALL_SKIP_DOCKER; then
  command -v ip >/dev/null || pkgs+=(iproute2)
  command -v iptables >/dev/null || pkgs+=(iptables)
fi
if ! skipping ROLLCALL_SKIP_NETNS; then
  # backend-mdns: the DNS-SD interop test (avahi in namespaces) and the daemon check.
  command -v avahi-daemon >/dev/null || pkgs+=(avahi-daemon)
  command -v avahi-browse >/dev/null || pkgs+=(avahi-utils)
  command -v dbus-daemon >/dev/null || pkgs+=(dbus)
  command -v curl >/dev/null || pkgs+=(curl)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  say "installing ${pkgs[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "these tests need ${pkgs[*]}: run as root so this script can apt-get them, or set the ROLLCALL_SKIP_* variable above" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# 2. Docker: daemon, one-node swarm, the agent image.
if ! skipping ROLLCALL_SKIP_DOCKER; then
  say "docker rig"
  bash scripts/docker-rig.sh up
  bash scripts/docker-rig.sh image
fi

# 3. Every crate's tests, every backend compiled in.
say "cargo test"
cargo test --workspace --all-features --locked

# 4. The two-node Docker Swarm (a second and third dockerd in network namespaces).
if ! skipping ROLLCALL_SKIP_DOCKER && ! skipping ROLLCALL_SKIP_NETNS; then
  say "two-node swarm"
  # The features of step 3 (`--workspace --all-features`), so nothing is rebuilt.
  cargo test --workspace --all-features --locked --test swarm_two_nodes
fi

# 5. Fuzzing, bounded: each cargo-fuzz target of fuzz/ for ROLLCALL_FUZZ_SECONDS (default 20 s)
# on its seed corpus (fuzz/seeds/); stable Rust with RUSTC_BOOTSTRAP=1 (see fuzz/run.sh).
# About 4 minutes on the project's machine (build 2.5 min, then 4 x 21 s); a crash fails the run.
if ! skipping ROLLCALL_SKIP_FUZZ; then
  say "fuzz (${ROLLCALL_FUZZ_SECONDS:-20} s per target)"
  FUZZ_SECONDS="${ROLLCALL_FUZZ_SECONDS:-20}" bash fuzz/run.sh
fi
