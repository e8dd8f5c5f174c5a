#!/usr/bin/env bash
# The Docker test rig of rollcall: a running dockerd in a one-node Swarm, and
# the FROM-scratch images the tests run. Idempotent: re-run it any time.
#
#   scripts/docker-rig.sh [up]          install docker.io if missing, start dockerd if it
#                                       does not answer, `swarm init` if not in a swarm,
#                                       accept bridged traffic if FORWARD's policy is DROP
#   scripts/docker-rig.sh image [WHAT]  build images (WHAT = all (default) | agent | probe):
#                                         rollcall-agent:test        static `rollcall` binary
#                                         rollcall-swarm-probe:test  backend-swarm's test workload
#   scripts/docker-rig.sh status        what is there
#   scripts/docker-rig.sh clean         remove what a killed test run left behind
#                                       (services, containers, networks labelled rollcall.test)
#
# Needs root for installing, starting dockerd and iptables. Environment:
#   ROLLCALL_DOCKERD_LOG   dockerd's log when this script starts it [/tmp/dockerd.log]
#   CARGO_TARGET_DIR       where cargo builds the static binaries [./target]
#
# Facts this relies on (../shared/TESTING.md): no image can be pulled here, so
# images are FROM scratch around static binaries (glibc, +crt-static; there is
# no musl target); this kernel has no IPVS, so Swarm's VIP is dead and tests
# use --endpoint-mode dnsrr; once Docker is installed the FORWARD policy is
# DROP and bridged traffic between network namespaces is dropped.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOG=${ROLLCALL_DOCKERD_LOG:-/tmp/dockerd.log}
TARGET_TRIPLE=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RULE_COMMENT=rollcall-rig

say() { printf '[docker-rig] %s\n' "$*"; }
die() { printf '[docker-rig] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

ensure_installed() {
  if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    return
  fi
  is_root || die "docker.io is not installed: run this script as root so it can apt-get it"
  say "installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
  command -v dockerd >/dev/null || die "apt-get installed docker.io but there is no dockerd"
}

daemon_answers() { docker info >/dev/null 2>&1; }

ensure_daemon() {
  if daemon_answers; then
    return
  fi
  # The host daemon's pid file (other dockerds, e.g. swarm2.sh's, have their own).
  local pid=""
  [ -f /var/run/docker.pid ] && pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    is_root || die "dockerd is not running and only root can start it"
    say "starting dockerd (log: $LOG)"
    # setsid + nohup: the daemon outlives this script and its terminal.
    # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: Swarm tasks use the local image
    # instead of trying a pull first (nothing can be pulled here; where DNS
    # times out instead of failing, each task would hang ~20 s in "Preparing").
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nohup dockerd >"$LOG" 2>&1 </dev/null &
  else
    say "dockerd is running but does not answer yet; waiting"
  fi
  for _ in $(seq 1 120); do
    if daemon_answers; then
      say "dockerd answers"
      return
    fi
    sleep 0.5
  done
  tail -n 30 "$LOG" >&2 2>/dev/null || true
  die "dockerd did not answer within 60 s (see $LOG)"
}

ensure_swarm() {
  local state control
  state=$(docker info --format '{{.Swarm.LocalNodeState}}')
  case "$state" in
    active)
      control=$(docker info --format '{{.Swarm.ControlAvailable}}')
      [ "$control" = true ] || die "this daemon is a swarm worker; the tests need a manager (docker swarm leave --force, then re-run)"
      ;;
    inactive|"")
      say "docker swarm init --advertise-addr 127.0.0.1"
      docker swarm init --advertise-addr 127.0.0.1 >/dev/null
      ;;
    pending)
      die "the swarm join is pending: wait, or run docker swarm leave --force"
      ;;
    *)
      die "swarm state is '$state' (locked or error): fix it (docker swarm unlock / docker swarm leave --force)"
      ;;
  esac
}

# Docker sets FORWARD's policy to DROP and loads br_netfilter, so frames
# switched inside a plain Linux bridge (veth pairs of network namespaces, as
# the netns tests and swarm2.sh build) traverse iptables and are dropped.
# Frames that stay inside one bridge are not routed traffic: accept them.
# Docker's own isolation (between different bridges) is routed and unaffected.
fix_forward() {
  command -v iptables >/dev/null || return 0
  is_root || { say "not root: cannot check the FORWARD policy"; return 0; }
  if ! iptables -S FORWARD 2>/dev/null | grep -qx -- '-P FORWARD DROP'; then
    return
  fi
  if iptables -C FORWARD -m physdev --physdev-is-bridged -m comment --comment "$RULE_COMMENT" -j ACCEPT 2>/dev/null; then
    return
  fi
  if iptables -I FORWARD 1 -m physdev --physdev-is-bridged -m comment --comment "$RULE_COMMENT" -j ACCEPT 2>/dev/null; then
    say "FORWARD policy is DROP: accepting bridged frames (iptables rule '$RULE_COMMENT')"
  else
    say "WARNING: the physdev match is unavailable; tests that bridge namespaces must add their own FORWARD rules"
  fi
}

up() {
  ensure_installed
  ensure_daemon
  ensure_swarm
  fix_forward
  say "ready: $(docker version --format 'dockerd {{.Server.Version}} (API {{.Server.APIVersion}})'), swarm $(docker info --format '{{.Swarm.LocalNodeState}} at {{.Swarm.NodeAddr}}')"
}

# static_build CARGO_ARGS... -> builds with +crt-static for the host triple.
static_build() {
  (cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --target "$TARGET_TRIPLE" "$@")
}

# pack BINARY TAG ENTRYPOINT_JSON [CMD_JSON]
pack() {
  local bin=$1 tag=$2 entry=$3 cmd=${4:-} ctx
  [ -x "$bin" ] || die "no binary at $bin"
  # A dynamic binary lists libraries ("libc.so.6 => ..."); static-pie says "statically linked".
  if ldd "$bin" 2>&1 | grep -q '=>'; then
    die "$bin is dynamically linked; a FROM scratch image needs a static binary"
  fi
  ctx=$(mktemp -d)
  cp "$bin" "$ctx/"
  {
    echo "FROM scratch"
    echo "COPY $(basename "$bin") /$(basename "$bin")"
    echo "ENTRYPOINT $entry"
    [ -z "$cmd" ] || echo "CMD $cmd"
    echo "LABEL org.opencontainers.image.title=\"$tag\" rollcall.test.image=\"1\""
  } >"$ctx/Dockerfile"
  # The legacy builder is what docker.io 20.10 has; it needs no pull for scratch.
  DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" >/dev/null 2>&1 \
    || DOCKER_BUILDKIT=0 docker build -t "$tag" "$ctx"
  rm -rf "$ctx"
  say "built $tag ($(du -h "$bin" | cut -f1) binary)"
}

pack_probe() {
  pack "$TARGET_DIR/$TARGET_TRIPLE/release/examples/swarm-probe" rollcall-swarm-probe:test '["/swarm-probe"]' '["serve"]'
}

pack_agent() {
  # No CMD worth a default: run it as `rollcall agent -c FILE`, `rollcall peers ...`.
  pack "$TARGET_DIR/$TARGET_TRIPLE/release/rollcall" rollcall-agent:test '["/rollcall"]' '["--help"]'
}

image() {
  ensure_installed
  ensure_daemon
  case "${1:-all}" in
    all)
      # One cargo invocation: the two binaries share one feature-unified build.
      say "building the rollcall binary (--features full) and backend-swarm's test workload (static, release)"
      static_build -p rollcall-cli --bin rollcall --features rollcall-cli/full -p backend-swarm --example swarm-probe
      pack_agent
      pack_probe
      ;;
    probe)
      say "building backend-swarm's test workload (static, release)"
      static_build -p backend-swarm --example swarm-probe
      pack_probe
      ;;
    agent)
      say "building the rollcall binary (static, release, --features full)"
      static_build -p rollcall-cli --bin rollcall --features rollcall-cli/full
      pack_agent
      ;;
    *) die "unknown image '$1': use all, agent or probe" ;;
  esac
}

status() {
  if ! daemon_answers; then
    say "dockerd: not answering"
    return
  fi
  say "$(docker version --format 'dockerd {{.Server.Version}} (API {{.Server.APIVersion}}); CLI {{.Client.Version}}')"
  say "swarm: $(docker info --format '{{.Swarm.LocalNodeState}} at {{.Swarm.NodeAddr}}, manager={{.Swarm.ControlAvailable}}, nodes={{.Swarm.Nodes}}')"
  local img
  for img in rollcall-agent:test rollcall-swarm-probe:test; do
    if docker image inspect "$img" >/dev/null 2>&1; then say "image $img: present"; else say "image $img: missing (scripts/docker-rig.sh image)"; fi
  done
  if is_root && command -v iptables >/dev/null; then
    say "FORWARD: $(iptables -S FORWARD | head -n1)$(iptables -S FORWARD | grep -q "$RULE_COMMENT" && echo ', bridged frames accepted')"
  fi
  say "leftovers labelled rollcall.test: $(docker service ls -q --filter label=rollcall.test 2>/dev/null | wc -l) services, $(docker ps -aq --filter label=rollcall.test | wc -l) containers, $(docker network ls -q --filter label=rollcall.test | wc -l) networks"
}

clean() {
  daemon_answers || die "dockerd does not answer"
  local ids
  ids=$(docker service ls -q --filter label=rollcall.test 2>/dev/null || true)
  [ -z "$ids" ] || { say "removing services: $(echo $ids)"; docker service rm $ids >/dev/null; }
  ids=$(docker ps -aq --filter label=rollcall.test)
  [ -z "$ids" ] || { say "removing containers: $(echo $ids)"; docker rm -f $ids >/dev/null; }
  # Task containers leave their networks a moment after the service is gone.
  for _ in $(seq 1 40); do
    ids=$(docker network ls -q --filter label=rollcall.test)
    [ -n "$ids" ] || break
    docker network rm $ids >/dev/null 2>&1 || sleep 0.5
  done
  [ -z "$(docker network ls -q --filter label=rollcall.test)" ] || die "some rollcall.test networks are still in use"
  say "clean"
}

case "${1:-up}" in
  up) up ;;
  image) shift; image "${1:-all}" ;;
  status) status ;;
  clean) clean ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command '$1' (up, image [all|agent|probe], status, clean, help)" ;;
esac
