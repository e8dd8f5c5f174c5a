#!/usr/bin/env bash
# A two-node Docker Swarm on one machine, independent of the host's dockerd:
# two more dockerds, each in its own network namespace, one the manager and
# one a worker.
#
#   scripts/swarm2.sh up       build it (idempotent) and print the two sockets
#   scripts/swarm2.sh down     remove everything `up` made (idempotent, also after a failed up)
#   scripts/swarm2.sh status
#   scripts/swarm2.sh env      print MANAGER=... WORKER=... (the docker -H values)
#
# Layout (../shared/TESTING.md, "A multi-node Docker Swarm on one machine"):
#   host bridge dbr0 10.98.0.1/24; namespaces rc-node1 (10.98.0.11, manager,
#   hostname rollcall-node1) and rc-node2 (10.98.0.12, worker, rollcall-node2),
#   each joined by a veth, default route via 10.98.0.1, own UTS namespace;
#   their dockerds run with --bridge none --iptables=false under $SWARM2_DIR
#   (default /tmp/rollcall-swarm2), sockets $SWARM2_DIR/nodeK/docker.sock;
#   FORWARD rules tagged "rollcall-swarm2" (Docker's FORWARD policy is DROP and
#   bridged frames go through iptables).
# Why not make the host's dockerd the manager: the rig's swarm advertises
# 127.0.0.1, which a worker cannot reach, and a swarm manager's address cannot
# be changed in place (`swarm init --force-new-cluster --advertise-addr` keeps
# the old Raft address, so workers are told to gossip with 127.0.0.1 and their
# tasks hang in "Preparing"). Separate nodes leave the host's swarm alone.
# Images are copied from the host daemon (docker save | load; there is no
# registry): rollcall-swarm-probe:test and rollcall-agent:test when present.
# Needs root and the host's dockerd (scripts/docker-rig.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${SWARM2_DIR:-/tmp/rollcall-swarm2}
BR=dbr0
HOST_IP=10.98.0.1
COMMENT=rollcall-swarm2
IMAGES=(rollcall-swarm-probe:test rollcall-agent:test)
NODES=(1 2)

say() { printf '[swarm2] %s\n' "$*"; }
die() { printf '[swarm2] ERROR: %s\n' "$*" >&2; exit 1; }

ns() { echo "rc-node$1"; }
ip_of() { echo "10.98.0.1$1"; }
sock() { echo "$DIR/node$1/docker.sock"; }
d() { local k=$1; shift; docker -H "unix://$(sock "$k")" "$@"; }
node_up() { d "$1" info >/dev/null 2>&1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, more dockerds, iptables)"

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "timed out after ${secs}s waiting for $what"
}

iptables_rule() { # add|del ARGS...
  local op=$1; shift
  if [ "$op" = add ]; then
    iptables -C FORWARD "$@" -m comment --comment "$COMMENT" -j ACCEPT 2>/dev/null \
      || iptables -I FORWARD 1 "$@" -m comment --comment "$COMMENT" -j ACCEPT
  else
    while iptables -D FORWARD "$@" -m comment --comment "$COMMENT" -j ACCEPT 2>/dev/null; do :; done
  fi
}

has_netns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

make_node() { # K
  local k=$1 n veth
  n=$(ns "$k"); veth="$n-h"
  has_netns "$n" || ip netns add "$n"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$n"
    ip link set "$veth" master "$BR" up
    ip netns exec "$n" ip addr add "$(ip_of "$k")/24" dev eth0
    ip netns exec "$n" ip link set eth0 up
    ip netns exec "$n" ip link set lo up
    ip netns exec "$n" ip route add default via "$HOST_IP"
  fi
  if ! node_up "$k"; then
    mkdir -p "$DIR/node$k/data" "$DIR/node$k/exec"
    say "starting dockerd of rollcall-node$k (log: $DIR/node$k/dockerd.log)"
    # nsenter, not `ip netns exec` (that remounts /sys and dockerd then fails
    # with "Devices cgroup isn't mounted"); unshare --uts for its own hostname.
    # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: a task uses the local image
    # instead of first trying a pull, which from a namespace without a route to
    # a DNS server hangs ~20 s per task in "Preparing".
    DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 setsid nohup nsenter --net="/var/run/netns/$n" unshare --uts sh -c "
      hostname rollcall-node$k
      exec dockerd --data-root '$DIR/node$k/data' --exec-root '$DIR/node$k/exec' \
        -H 'unix://$(sock "$k")' --pidfile '$DIR/node$k/dockerd.pid' \
        --containerd-namespace rcnode$k --containerd-plugins-namespace rcnode${k}p \
        --bridge none --iptables=false --ip-masq=false" >"$DIR/node$k/dockerd.log" 2>&1 </dev/null &
  fi
}

up() {
  bash "$ROOT/scripts/docker-rig.sh" up >/dev/null
  mkdir -p "$DIR"
  if ! ip link show "$BR" >/dev/null 2>&1; then
    [ -z "$(ip -o addr show to "$HOST_IP" 2>/dev/null)" ] || die "$HOST_IP is already used by another interface"
    ip link add "$BR" type bridge
    ip addr add "$HOST_IP/24" dev "$BR"
  fi
  ip link set "$BR" up
  iptables_rule add -i "$BR"
  iptables_rule add -o "$BR"
  local k
  for k in "${NODES[@]}"; do make_node "$k"; done
  for k in "${NODES[@]}"; do wait_for 60 "dockerd of rollcall-node$k (see $DIR/node$k/dockerd.log)" node_up "$k"; done

  # The swarm: node1 manages, node2 works.
  local state control
  state=$(d 1 info --format '{{.Swarm.LocalNodeState}}')
  control=$(d 1 info --format '{{.Swarm.ControlAvailable}}')
  if [ "$state" = active ] && [ "$control" != true ]; then
    d 1 swarm leave --force >/dev/null
    state=inactive
  fi
  if [ "$state" != active ]; then
    say "swarm init on rollcall-node1 ($(ip_of 1))"
    d 1 swarm init --advertise-addr "$(ip_of 1)" >/dev/null
  fi
  # The worker belongs if the manager knows its node id.
  local wstate wid_now
  wstate=$(d 2 info --format '{{.Swarm.LocalNodeState}}')
  wid_now=$(d 2 info --format '{{.Swarm.NodeID}}')
  if [ "$wstate" = active ] && ! d 1 node inspect "$wid_now" >/dev/null 2>&1; then
    d 2 swarm leave --force >/dev/null
    wstate=inactive
  fi
  if [ "$wstate" != active ]; then
    say "joining rollcall-node2 ($(ip_of 2)) as a worker"
    d 2 swarm join --token "$(d 1 swarm join-token -q worker)" --advertise-addr "$(ip_of 2)" "$(ip_of 1):2377" >/dev/null
  fi
  local wid
  wid=$(d 2 info --format '{{.Swarm.NodeID}}')
  wait_for 60 "rollcall-node2 to be Ready" sh -c "[ \"\$(docker -H unix://$(sock 1) node inspect -f '{{.Status.State}}' $wid)\" = ready ]"
  # Node entries left by earlier joins.
  local stale
  for stale in $(d 1 node ls -q); do
    [ "$stale" = "$wid" ] && continue
    [ "$(d 1 node inspect -f '{{.Spec.Role}}' "$stale")" = worker ] && d 1 node rm --force "$stale" >/dev/null
  done

  # Images from the host daemon.
  local img id
  for img in "${IMAGES[@]}"; do
    id=$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null) || continue
    for k in "${NODES[@]}"; do
      if [ "$(d "$k" image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)" != "$id" ]; then
        say "copying $img to rollcall-node$k"
        docker save "$img" | d "$k" load >/dev/null
      fi
    done
  done
  say "up: manager rollcall-node1 unix://$(sock 1), worker rollcall-node2 unix://$(sock 2)"
}

stop_daemon() { # K
  local k=$1 pidfile pid
  pidfile="$DIR/node$k/dockerd.pid"
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 0
  say "stopping dockerd of rollcall-node$k (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  local k
  # Services first, so containers stop while their daemons still run.
  if node_up 1 && [ "$(d 1 info --format '{{.Swarm.ControlAvailable}}')" = true ]; then
    local svcs
    svcs=$(d 1 service ls -q 2>/dev/null || true)
    [ -z "$svcs" ] || d 1 service rm $svcs >/dev/null 2>&1 || true
  fi
  for k in 2 1; do
    node_up "$k" && d "$k" swarm leave --force >/dev/null 2>&1 || true
    stop_daemon "$k"
  done
  # Mounts a killed daemon may have left behind.
  if [ -d "$DIR" ]; then
    { grep -o " $DIR/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  for k in "${NODES[@]}"; do
    if has_netns "$(ns "$k")"; then ip netns del "$(ns "$k")"; fi
    if ip link show "$(ns "$k")-h" >/dev/null 2>&1; then ip link del "$(ns "$k")-h"; fi
  done
  if ip link show "$BR" >/dev/null 2>&1; then ip link del "$BR"; fi
  iptables_rule del -i "$BR"
  iptables_rule del -o "$BR"
  rm -rf "$DIR"
  say "down: daemons, namespaces, bridge, rules and $DIR removed"
}

status() {
  local k
  for k in "${NODES[@]}"; do
    if node_up "$k"; then
      say "rollcall-node$k: $(d "$k" info --format 'swarm={{.Swarm.LocalNodeState}} manager={{.Swarm.ControlAvailable}} node={{.Swarm.NodeID}}') unix://$(sock "$k")"
    else
      say "rollcall-node$k: not running"
    fi
  done
  if node_up 1; then d 1 node ls 2>/dev/null || true; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) echo "MANAGER=unix://$(sock 1)"; echo "WORKER=unix://$(sock 2)" ;;
  *) die "usage: $0 up|down|status|env" ;;
esac
