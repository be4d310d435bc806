#!/bin/bash
# Runs the same l2 scenarios twice in one VM — once on the kernel's ipvlan driver, once on
# ipvlan-rs (the `ipvlan` binary, copied in with --add) — and prints what a user observes.
#
#   ORACLE_CACHE=/var/cache/ipvlan-oracle-tun ORACLE_MODULES_LOAD="dummy veth macvlan ipvlan tun" \
#     ../shared/oracle/run-kernel.sh --timeout 600 \
#       --add target/release/ipvlan:/usr/local/bin/ipvlan scripts/oracle/l2-differential.sh
#
# (The stock oracle kernel ships no tun module; the two variables add it.)
# Fixture: spec §11.1 F-L2 — master m0 (02:00:00:00:00:01, 192.0.2.1) with its veth peer e0 in
# "ext" (192.0.2.254, 2001:db8:1::fe); slaves s1/s2 in ns1/ns2 (.11/.12, ::11/::12).
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-diff.sock
DPID=

teardown() {
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in ext ns1 ns2; do q ip netns del $n; done
  q ip link del m0; q ip link del s1; q ip link del s2
  rm -rf /run/ipvlan-diff-state
}

add_slave() { # impl name words...
  local impl=$1 name=$2; shift 2
  if [ "$impl" = kernel ]; then ip link add link m0 name "$name" type ipvlan "$@"
  else ipvlan --socket $SOCK link add link m0 "$name" type ipvlan "$@"; fi
}

setup() { # impl, mode/flag words
  local impl=$1; shift
  teardown
  ip netns add ext; ip netns add ns1; ip netns add ns2
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext; ip link set m0 up; ip addr add 192.0.2.1/24 dev m0
  ip -n ext link set lo up; ip -n ext link set e0 up
  ip -n ext addr add 192.0.2.254/24 dev e0; ip -n ext addr add 2001:db8:1::fe/64 dev e0 nodad
  if [ "$impl" = rs ]; then
    ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-diff-state 2>/dev/null & DPID=$!
    for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  fi
  for n in 1 2; do
    add_slave "$impl" s$n "$@" >/dev/null
    ip link set s$n netns ns$n
    ip -n ns$n link set lo up; ip -n ns$n link set s$n up
    ip -n ns$n addr add 192.0.2.1$n/24 dev s$n
    ip -n ns$n addr add 2001:db8:1::1$n/64 dev s$n nodad
    ip netns exec ns$n sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
  done
  sleep 0.5
}

yn() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
ping_ok() { ip netns exec "$1" ping -c 2 -i 0.2 -W 1 "$2"; }
inechos() { ${1:+ip netns exec $1} awk '/^Icmp:/ { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["InEchos"] }' /proc/net/snmp; }
bcast_to_ns2() {
  local b; b=$(inechos ns2)
  q ip netns exec ns1 ping -4 -b -c 3 -i 0.2 -W 1 192.0.2.255
  echo $(( $(inechos ns2) - b ))
}

declare -A R
run() { # impl flag
  local impl=$1 flag=$2 k
  setup "$impl" mode l2 "$flag"
  k="$flag"
  R[$k,ns1-ns2-v4,$impl]=$(yn ping_ok ns1 192.0.2.12)
  R[$k,ns1-ns2-v6,$impl]=$(yn ping_ok ns1 2001:db8:1::12)
  R[$k,ns1-ext-v4,$impl]=$(yn ping_ok ns1 192.0.2.254)
  R[$k,ext-ns2-v6,$impl]=$(yn ping_ok ext 2001:db8:1::12)
  R[$k,bcast-ns1-to-ns2,$impl]=$(bcast_to_ns2)
  R[$k,master-ns1,$impl]=$(yn ping -c 1 -W 1 192.0.2.11)
  if ip -n ns2 addr add 192.0.2.11/32 dev s2 2>/dev/null; then R[$k,dup-addr-add,$impl]=accepted; else R[$k,dup-addr-add,$impl]=refused; fi
  R[$k,ext-ns1-after-dup,$impl]=$(yn ping_ok ext 192.0.2.11)
  teardown
}

for flag in bridge private; do
  run kernel $flag
  if command -v ipvlan >/dev/null; then run rs $flag; fi
done

printf '| mode | scenario | kernel ipvlan | ipvlan-rs |\n|---|---|---|---|\n'
for flag in bridge private; do
  for s in ns1-ns2-v4 ns1-ns2-v6 ns1-ext-v4 ext-ns2-v6 bcast-ns1-to-ns2 master-ns1 dup-addr-add ext-ns1-after-dup; do
    printf '| l2 %s | %s | %s | %s |\n' "$flag" "$s" "${R[$flag,$s,kernel]}" "${R[$flag,$s,rs]:-n/a}"
  done
done
