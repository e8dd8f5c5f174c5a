#!/usr/bin/env bash
# What `rollcall compare` needs for its netns environment, and the cleanup of
# what a killed run left behind. `rollcall compare` makes and removes its own
# network namespaces (rc<TAG>-a<N>, rc<TAG>-nats, rc<TAG>-disc, rc<TAG>-vip),
# bridge (rcb<TAG>) and iptables rule (comment rollcall-compare-<TAG>); TAG is
# the harness's pid modulo 100000. It removes them itself, also on error and
# Ctrl-C; only a SIGKILLed harness leaves them.
#
#   scripts/netns.sh check     are root, ip, iptables, nats-server, haproxy there?
#   scripts/netns.sh install   apt-get what is missing (root)
#   scripts/netns.sh status    leftovers of earlier runs
#   scripts/netns.sh clean     remove leftovers of runs that are no longer running
set -euo pipefail

say() { printf '[netns] %s\n' "$*"; }
die() { printf '[netns] ERROR: %s\n' "$*" >&2; exit 1; }

NEEDS=(ip:iproute2 iptables:iptables nats-server:nats-server haproxy:haproxy)

check() {
  local ok=0 pair prog
  [ "$(id -u)" = 0 ] || { say "not root: the netns environment needs root"; ok=1; }
  for pair in "${NEEDS[@]}"; do
    prog=${pair%%:*}
    if command -v "$prog" >/dev/null; then say "$prog: $(command -v "$prog")"; else say "$prog: MISSING (apt-get install -y ${pair#*:})"; ok=1; fi
  done
  return $ok
}

install() {
  [ "$(id -u)" = 0 ] || die "run as root to apt-get"
  local pkgs=() pair
  for pair in "${NEEDS[@]}"; do command -v "${pair%%:*}" >/dev/null || pkgs+=("${pair#*:}"); done
  if [ "${#pkgs[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
  check
}

# A tag is live while its harness runs (its pid is the tag, or ends in it).
live() {
  local tag=$1 pid
  for pid in $(pgrep -f 'rollcall compare' || true); do
    [ "$((pid % 100000))" = "$tag" ] && return 0
  done
  return 1
}

namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rc[0-9]+-(a[0-9]+|nats|disc|vip)$' || true; }
bridges() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^rcb[0-9]+$' || true; }
rules() { iptables -S FORWARD 2>/dev/null | grep -E -- '--comment "?rollcall-compare-[0-9]+' || true; }
tag_of() { echo "$1" | grep -oE '[0-9]+' | head -n1; }

status() {
  say "namespaces: $(namespaces | wc -l), bridges: $(bridges | tr '\n' ' ')"
  rules | sed 's/^/[netns] rule: /'
}

clean() {
  [ "$(id -u)" = 0 ] || die "run as root"
  local n b r tag
  for n in $(namespaces); do
    tag=$(tag_of "$n"); live "$tag" && continue
    ip netns del "$n" && say "removed namespace $n"
  done
  for b in $(bridges); do
    tag=$(tag_of "$b"); live "$tag" && continue
    ip link del "$b" && say "removed bridge $b"
  done
  rules | while read -r r; do
    tag=$(echo "$r" | grep -oE 'rollcall-compare-[0-9]+' | grep -oE '[0-9]+$')
    live "$tag" && continue
    # shellcheck disable=SC2086
    eval "iptables ${r/-A/-D}" && say "removed rule: $r"
  done
  say "clean"
}

case "${1:-check}" in
  check) check ;;
  install) install ;;
  status) status ;;
  clean) clean ;;
  *) die "usage: $0 check|install|status|clean" ;;
esac
