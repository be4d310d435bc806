#!/bin/bash
# Differential conformance: the same wire scenarios (spec §11.3/§11.4) for every mode × flag,
# run twice in one VM — on the kernel's ipvlan driver and on ipvlan-rs — printing what a user
# observes, side by side. See README "Kernel oracle" for the command line (tun and the nft dup
# modules are added to the stock oracle kernel).
#
# usage: differential.sh [--datapath auto|bpf|bpf-tc|user] [l2|l3|l3s]
#   --datapath is passed to the daemon (default: the daemon's own default, auto). After the
#   table the script prints the data path each ipvlan-rs port took (`ipvlan -d link show`)
#   and the daemon's warnings (why a port fell back, failed requests), timestamps cut.
#
# The eBPF clsact path on the oracle's 6.1 kernel (no tcx) needs sch_ingress and cls_bpf loaded
# in the guest; its last output is differential-bpf-tc.out (separate cache directory):
#   ORACLE_CACHE=/var/cache/ipvlan-oracle-bpf \
#   ORACLE_MODULES_LOAD="dummy veth macvlan ipvlan tun sch_ingress cls_bpf" \
#   ORACLE_MODULES_EXTRA="<as in the README>" \
#     ../shared/oracle/run-kernel.sh --timeout 1500 --mem 1G \
#     --add target/release/ipvlan:/usr/local/bin/ipvlan scripts/oracle/differential.sh -- --datapath bpf-tc
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-diff.sock
DLOG=/run/ipvlan-diff-daemon.log
DPID=
DATAPATH=
if [ "${1:-}" = --datapath ]; then DATAPATH=$2; shift 2; fi
ONLY=${1:-}
: >"$DLOG"
declare -A DP

teardown() {
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in ext ns1 ns2; do q ip netns del $n; done
  q ip link del m0; q nft flush ruleset
  rm -rf /run/ipvlan-diff-state
}

# setup IMPL MODE FLAG: F-L2 for l2, F-L3 for l3/l3s (spec §11.1).
setup() {
  local impl=$1 mode=$2 flag=$3 n
  teardown
  ip link set lo up
  ip netns add ext; ip netns add ns1; ip netns add ns2
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext; ip link set m0 up
  ip addr add 192.0.2.1/24 dev m0; ip addr add 2001:db8:1::1/64 dev m0 nodad
  ip -n ext link set lo up; ip -n ext link set e0 up
  ip -n ext addr add 192.0.2.254/24 dev e0; ip -n ext addr add 2001:db8:1::fe/64 dev e0 nodad
  sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
  if [ "$impl" = rs ]; then
    echo "== $mode $flag" >>"$DLOG"
    ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-diff-state ${DATAPATH:+--datapath $DATAPATH} 2>>"$DLOG" & DPID=$!
    for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  fi
  for n in 1 2; do
    if [ "$impl" = kernel ]; then ip link add link m0 name s$n type ipvlan mode $mode $flag
    else ipvlan --socket $SOCK link add link m0 s$n type ipvlan mode $mode $flag 2>>"$DLOG"; fi
    ip link set s$n netns ns$n
    ip -n ns$n link set lo up; ip -n ns$n link set s$n up
    ip netns exec ns$n sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
    if [ "$mode" = l2 ]; then
      ip -n ns$n addr add 192.0.2.1$n/24 dev s$n; ip -n ns$n addr add 2001:db8:1::1$n/64 dev s$n nodad
    else
      ip -n ns$n addr add 198.51.100.1$n/32 dev s$n; ip -n ns$n addr add 2001:db8:2::1$n/128 dev s$n nodad
      ip -n ns$n route add default dev s$n; ip -n ns$n -6 route add default dev s$n
    fi
  done
  if [ "$mode" != l2 ]; then
    ip -n ext route add 198.51.100.0/24 via 192.0.2.1; ip -n ext -6 route add 2001:db8:2::/64 via 2001:db8:1::1
  fi
  sleep 0.5
}

yn() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
ping1() { ip netns exec "$1" ping -c 2 -i 0.2 -W 1 "$2"; }
inechos() { ${1:+ip netns exec $1} awk '/^Icmp:/ { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["InEchos"] }' /proc/net/snmp; }
# count NS CMD...: echo requests NS's stack received while CMD ran
count() { local ns=$1 b; shift; b=$(inechos "$ns"); q "$@"; echo $(( $(inechos "$ns") - b )); }

declare -A R
SCEN="s1-s2-v4 s1-s2-v6 s1-ext-v4 ext-s2-v6 s1-bcast-to-s2 ext-bcast-to-s2 ext-bcast-to-master master-to-s1 input-drop-blocks-ext-s1 dup-addr-add first-owner-after-dup"
run() { # impl mode flag
  local impl=$1 mode=$2 flag=$3 k="$2 $3" a1 a2 b6 bc
  setup "$impl" "$mode" "$flag"
  [ "$impl" = rs ] && DP[$k]=$(ipvlan --socket $SOCK -d link show 2>&1 | grep -o 'datapath [a-z-]*' | sort -u | awk '{print $2}' | paste -sd, -)
  if [ "$mode" = l2 ]; then a1=192.0.2.11; a2=192.0.2.12; b6=2001:db8:1::12; bc=192.0.2.255
  else a1=198.51.100.11; a2=198.51.100.12; b6=2001:db8:2::12; bc=255.255.255.255; fi
  R[$k,s1-s2-v4,$impl]=$(yn ping1 ns1 $a2)
  R[$k,s1-s2-v6,$impl]=$(yn ping1 ns1 $b6)
  R[$k,s1-ext-v4,$impl]=$(yn ping1 ns1 192.0.2.254)
  R[$k,ext-s2-v6,$impl]=$(yn ping1 ext $b6)
  R[$k,s1-bcast-to-s2,$impl]=$(count ns2 ip netns exec ns1 ping -4 -b -c 3 -i 0.2 -W 1 -I s1 $bc)
  R[$k,ext-bcast-to-s2,$impl]=$(count ns2 ip netns exec ext ping -4 -b -c 3 -i 0.2 -W 1 192.0.2.255)
  R[$k,ext-bcast-to-master,$impl]=$(count "" ip netns exec ext ping -4 -b -c 3 -i 0.2 -W 1 192.0.2.255)
  R[$k,master-to-s1,$impl]=$(yn ping -c 1 -W 1 $a1)
  nft add table ip t57; nft 'add chain ip t57 in { type filter hook input priority 0; }'; nft add rule ip t57 in ip daddr $a1 drop
  R[$k,input-drop-blocks-ext-s1,$impl]=$(if ping1 ext $a1 >/dev/null 2>&1; then echo no; else echo yes; fi)
  nft delete table ip t57
  if ip -n ns2 addr add $a1/32 dev s2 2>/dev/null; then R[$k,dup-addr-add,$impl]=accepted; else R[$k,dup-addr-add,$impl]=refused; fi
  # Whatever the answer to the duplicate, the first owner is still reached from outside.
  R[$k,first-owner-after-dup,$impl]=$(count ns1 ip netns exec ext ping -c 2 -i 0.2 -W 1 $a1)
  teardown
}

for mode in l2 l3 l3s; do
  for flag in bridge private vepa; do
    [ -n "$ONLY" ] && [ "$ONLY" != "$mode" ] && continue
    run kernel $mode $flag
    command -v ipvlan >/dev/null && run rs $mode $flag
  done
done

printf '| mode flag | scenario | kernel ipvlan | ipvlan-rs | same |\n|---|---|---|---|---|\n'
for mode in l2 l3 l3s; do
  for flag in bridge private vepa; do
    [ -n "$ONLY" ] && [ "$ONLY" != "$mode" ] && continue
    for s in $SCEN; do
      kv=${R[$mode $flag,$s,kernel]}; rv=${R[$mode $flag,$s,rs]:-n/a}
      same=yes; [ "$kv" = "$rv" ] || same=DIFF
      printf '| %s %s | %s | %s | %s | %s |\n' $mode $flag $s "$kv" "$rv" $same
    done
  done
done

if command -v ipvlan >/dev/null; then
  echo
  echo "ipvlan-rs daemon: --datapath ${DATAPATH:-auto (default)}; data path per port (ipvlan -d link show; l3s ports always take the userspace path):"
  for mode in l2 l3 l3s; do
    for flag in bridge private vepa; do
      [ -n "$ONLY" ] && [ "$ONLY" != "$mode" ] && continue
      printf '  %s %s: %s\n' $mode $flag "${DP[$mode $flag]:-none}"
    done
  done
  echo "daemon warnings and errors (timestamps cut, '== mode flag' starts each daemon):"
  sed -e 's/\x1b\[[0-9;]*m//g' "$DLOG" | grep -E '^==|WARN|ERROR|Error' | sed -E 's/^[0-9T:.Z-]+ +//' | sed 's/^/  /'
fi
