#!/bin/bash
# Secondary performance anchor: the kernel's own ipvlan and ipvlan-rs on the same paths, in the
# same oracle VM (kernel macvlan and veth as well). slave↔slave on one master and
# slave→external host through the master (a veth whose peer is the external namespace); l2
# bridge, and l3 (slaves 198.51.100.1x/32 routed by the master's namespace, 192.0.2.1 on m0).
# iperf3 TCP one stream and UDP 64-byte payloads at unlimited rate, SECONDS each.
#
#   cargo build --release -p ipvlan
#   ORACLE_CACHE=/var/cache/ipvlan-oracle-tun ORACLE_MODULES_LOAD="dummy veth macvlan ipvlan tun" \
#     ../shared/oracle/run-kernel.sh --timeout 900 --mem 1G \
#     --add target/release/ipvlan:/usr/local/bin/ipvlan scripts/oracle/perf-side-by-side.sh -- 5
#
# Under TCG (software emulation, as on the sandbox) the figures are indicative only: compare the
# ratios within one run, not the absolute numbers.
T=${1:-5}
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-perf.sock
DPID=
teardown() {
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in a b ext; do q ip netns del $n; done
  q ip link del m0; rm -rf /run/ipvlan-perf-state; sleep 0.2
}
setup() { # impl [mode]
  teardown
  MODE=${2:-l2}
  ip link set lo up
  for n in a b ext; do ip netns add $n; ip -n $n link set lo up; done
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0
  ip link set e0 netns ext; ip link set m0 up
  ip -n ext link set e0 up; ip -n ext addr add 192.0.2.254/24 dev e0
  case $1 in
    veth)
      ip -n a link add sa type veth peer name sb netns b ;;
    kernel-ipvlan)
      ip link add link m0 name sa type ipvlan mode $MODE; ip link add link m0 name sb type ipvlan mode $MODE
      ip link set sa netns a; ip link set sb netns b ;;
    macvlan)
      ip link add link m0 name sa address 02:00:00:00:00:0a type macvlan mode bridge
      ip link add link m0 name sb address 02:00:00:00:00:0b type macvlan mode bridge
      ip link set sa netns a; ip link set sb netns b ;;
    ipvlan-rs)
      ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-perf-state 2>/run/ipvlan-perf.log & DPID=$!
      for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
      ipvlan --socket $SOCK link add link m0 sa type ipvlan mode $MODE >/dev/null
      ipvlan --socket $SOCK link add link m0 sb type ipvlan mode $MODE >/dev/null
      # How the daemon queued its slaves on this kernel (flow steering or one queue).
      QUEUES="$(ls /sys/class/net/sa/queues | grep -c '^tx-') TAP queues per slave ($(grep -o 'slaves get [^:]*' /run/ipvlan-perf.log | head -1))"
      ip link set sa netns a; ip link set sb netns b ;;
  esac
  ip -n a link set sa up; ip -n b link set sb up
  if [ "$MODE" = l3 ]; then
    ip addr add 192.0.2.1/24 dev m0
    ip -n ext route add 198.51.100.0/24 via 192.0.2.1
    ip -n a addr add 198.51.100.11/32 dev sa; ip -n a route add default dev sa
    ip -n b addr add 198.51.100.12/32 dev sb; ip -n b route add default dev sb
  else
    ip -n a addr add 192.0.2.11/24 dev sa; ip -n b addr add 192.0.2.12/24 dev sb
  fi
  sleep 0.5
}
measure() { # client-ns server-ns server-ip -> "tcp_gbps udp_kpps"
  ip netns exec "$2" iperf3 -s -1 -D -p 5201 >/dev/null 2>&1; sleep 0.3
  tcp=$(ip netns exec "$1" iperf3 -c "$3" -p 5201 -t "$T" -J 2>/dev/null | jq '.end.sum_received.bits_per_second / 1e9' 2>/dev/null)
  ip netns exec "$2" iperf3 -s -1 -D -p 5202 >/dev/null 2>&1; sleep 0.3
  udp=$(ip netns exec "$1" iperf3 -c "$3" -p 5202 -u -b 0 -l 64 -t "$T" -J 2>/dev/null | jq '(.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds / 1e3' 2>/dev/null)
  printf '%.3f %.1f' "${tcp:-0}" "${udp:-0}"
}
declare -A R
run() { # impl mode peer-ip
  setup "$1" "$2"
  ip netns exec a ping -c 1 -W 2 "$3" >/dev/null 2>&1
  R[$1$2,s2s]=$(measure a b "$3")
  if [ "$1" != veth ]; then
    ip netns exec a ping -c 1 -W 2 192.0.2.254 >/dev/null 2>&1
    R[$1$2,ext]=$(measure a ext 192.0.2.254)
  fi
  teardown
}
for impl in kernel-ipvlan ipvlan-rs macvlan veth; do run $impl l2 192.0.2.12; done
for impl in kernel-ipvlan ipvlan-rs; do run $impl l3 198.51.100.12; done
echo "kernel $(uname -r), $(nproc) vCPUs, ${T}s per test; ipvlan-rs: ${QUEUES:-?}"
printf '| mode | path | implementation | TCP Gbit/s | UDP64 kpps | ipvlan-rs / this (TCP, UDP) |\n|---|---|---|---:|---:|---|\n'
for mode in l2 l3; do
  for p in s2s ext; do
    read -r rt ru <<<"${R[ipvlan-rs$mode,$p]}"
    for impl in kernel-ipvlan ipvlan-rs macvlan veth; do
      v=${R[$impl$mode,$p]:-}; [ -z "$v" ] && continue
      read -r t u <<<"$v"
      ratio=$(awk -v a="$rt" -v b="$t" -v c="$ru" -v d="$u" 'BEGIN { printf "%.2fx, %.2fx", (b > 0 ? a / b : 0), (d > 0 ? c / d : 0) }')
      printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$p" "$impl" "$t" "$u" "$ratio"
    done
  done
done
