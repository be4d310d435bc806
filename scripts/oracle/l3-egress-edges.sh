#!/bin/bash
# l3/l3s egress edges (issue 16, "Kind 2" beyond the too-big sizes of l3-egress-sizes.sh): what
# the kernel's ipvlan does, and ipvlan-rs per data path, with
#   ttl1      a slave's packet with TTL / hop limit 1: to the external host (on the master's link)
#             and to a network routed one hop beyond it (the external host answers "time
#             exceeded");
#   loop      the usual host-side set-up (an l3 slave h0 left in the master's namespace, routes
#             198.51.100.0/24 and 2001:db8:2::/64 dev h0): a slave pings an unused address of
#             the slaves' prefix once; how many packets h0 transmits in the 3 s after, and what
#             ping is told (issue 16's l3-v6-loop case, IPv4 and IPv6);
#   slave-mtu the slave's MTU 9000 on a 1500 master: ping -s 4000 with and without DF, IPv4 and
#             IPv6 (the master namespace's output fragments or answers, as for a smaller route).
# in mode l3 and l3s. Topology: l3-egress-sizes.sh's "hostroute" variant without the lowered
# route MTU, plus 203.0.113.0/24 and 2001:db8:9::/64 routed from the master's namespace via ext,
# which forwards them to a dummy device.
#
# usage: l3-egress-edges.sh [--datapaths "user bpf-tc"] [l3|l3s]
# Last run (l3-egress-edges.out), from the repository root, as l3-egress-sizes.sh's (6.1 guest,
# so "rs-bpf-tc" ports in l3s run the userspace path with veth slaves). What differs there, and
# why: README "Differences from the kernel" (the loop counts are all bounded; FragCreates is the
# kernel's counter, which userspace fragmentation does not bump; IPv6 too big on the eBPF path
# needs force_forwarding (Linux >= 6.17); l3s on the user path with veth slaves on 6.1 is open).
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-edges.sock
DLOG=/run/ipvlan-edges-daemon.log
TD=/run/ipvlan-edges-tcpdump
DPID=
DATAPATHS="user bpf-tc"
if [ "${1:-}" = --datapaths ]; then DATAPATHS=$2; shift 2; fi
ONLY=${1:-}
: >"$DLOG"
declare -A R DP SEEN
have_tc_bpf() { [ -d /sys/module/sch_ingress ] && [ -d /sys/module/cls_bpf ]; }
RSIMPLS=
if command -v ipvlan >/dev/null; then
  for d in $DATAPATHS; do
    if [ "$d" = bpf-tc ] && ! have_tc_bpf; then echo "note: bpf-tc skipped (sch_ingress/cls_bpf not loaded)"; continue; fi
    RSIMPLS="$RSIMPLS rs-$d"
  done
fi
IMPLS="kernel$RSIMPLS"

teardown() {
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in ext ns1; do q ip netns del $n; done
  q ip link del h0; q ip link del m0
  rm -rf /run/ipvlan-edges-state
}

setup() { # IMPL MODE
  local impl=$1 mode=$2 s
  teardown
  ip link set lo up
  ip netns add ext; ip netns add ns1
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext; ip link set m0 up
  ip addr add 192.0.2.1/24 dev m0; ip addr add 2001:db8:1::1/64 dev m0 nodad
  ip -n ext link set lo up; ip -n ext link set e0 up
  ip -n ext addr add 192.0.2.254/24 dev e0; ip -n ext addr add 2001:db8:1::fe/64 dev e0 nodad
  ip netns exec ext sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  ip -n ext link add d0 type dummy; ip -n ext link set d0 up
  ip -n ext route add 203.0.113.0/24 dev d0; ip -n ext -6 route add 2001:db8:9::/64 dev d0
  ip route add 203.0.113.0/24 via 192.0.2.254; ip -6 route add 2001:db8:9::/64 via 2001:db8:1::fe
  if [ "$impl" != kernel ]; then
    echo "== $impl $mode" >>"$DLOG"
    ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-edges-state --datapath "${impl#rs-}" 2>>"$DLOG" & DPID=$!
    for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  fi
  for s in s1 h0; do
    if [ "$impl" = kernel ]; then ip link add link m0 name $s type ipvlan mode $mode bridge
    else ipvlan --socket $SOCK link add link m0 $s type ipvlan mode $mode bridge 2>>"$DLOG"; fi
  done
  ip link set s1 netns ns1
  ip -n ns1 link set lo up; ip -n ns1 link set s1 up
  ip -n ns1 addr add 198.51.100.11/32 dev s1; ip -n ns1 addr add 2001:db8:2::11/128 dev s1 nodad
  ip -n ns1 route add default dev s1; ip -n ns1 -6 route add default dev s1
  ip link set h0 up
  ip route add 198.51.100.0/24 dev h0; ip -6 route add 2001:db8:2::/64 dev h0
  ip -n ext route add 198.51.100.0/24 via 192.0.2.1; ip -n ext -6 route add 2001:db8:2::/64 via 2001:db8:1::1
  sleep 0.5
  q ip netns exec ns1 ping -c 1 -W 1 192.0.2.254; q ip netns exec ns1 ping -6 -c 1 -W 1 2001:db8:1::fe
  [ "$impl" != kernel ] && [ -z "${DP[$impl $mode]}" ] &&
    DP[$impl $mode]=$(ipvlan --socket $SOCK -d link show 2>&1 | grep -o 'datapath [a-z-]*' | sort -u | awk '{print $2}' | paste -sd, -)
}

# snmp NS PROTO FIELD (NS empty = the master's namespace); snmp6 NS FIELD
snmp() { ${1:+ip netns exec $1} awk -v p="$2:" -v f="$3" '$1 == p { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c[f] }' /proc/net/snmp; }
snmp6() { ${1:+ip netns exec $1} awk -v f="$2" '$1 == f { print $2 }' /proc/net/snmp6; }
# Counter snapshots: C[name] before, delta NAME after.
CTRS="ns1:Icmp:InTimeExcds ns1:6:Icmp6InTimeExcds ext:Icmp:OutTimeExcds ext:6:Icmp6OutTimeExcds ns1:Icmp:InDestUnreachs ext:Icmp:InEchos ext:Ip:ReasmReqds ext:Ip:ReasmOKs :Ip:FragCreates :Icmp:OutDestUnreachs ns1:6:Icmp6InPktTooBigs ext:6:Icmp6InEchos ext:6:Ip6ReasmReqds ext:6:Ip6ReasmOKs :6:Ip6FragCreates :6:Icmp6OutPktTooBigs :6:Ip6InDiscards :6:Ip6InAddrErrors :6:Ip6InTooBigErrors :6:Ip6InNoRoutes :6:Ip6OutForwDatagrams :Ip:ForwDatagrams"
declare -A C
val() { local ns=${1%%:*} rest=${1#*:}; if [ "${rest%%:*}" = 6 ]; then snmp6 "$ns" "${rest#6:}"; else snmp "$ns" "${rest%%:*}" "${rest#*:}"; fi; }
snap() { local k; for k in $CTRS; do C[$k]=$(val $k); done; }
delta() { echo $(( $(val "$1") - ${C[$1]} )); }

# tcpdump on ext's e0 while a command runs; the lines land in $TD.
tdstart() { ip netns exec ext tcpdump -i e0 -nn -v -l "$@" >$TD 2>/dev/null & TPID=$!; sleep 1; }
tdstop() { sleep 0.3; kill $TPID 2>/dev/null; wait $TPID 2>/dev/null; }
# what ping said about an MTU or errors ("From A: Frag needed ... mtu = N", "local error ... mtu=N")
pingmsgs() {
  local m
  m=$(grep -oiE 'from [0-9a-f:.]+( icmp_seq=[0-9]+)? (frag needed[^(]*\(mtu = [0-9]+\)|packet too big: ?mtu ?[=:]? ?[0-9]+|destination unreachable[^,]*)|local error: [^,]*, mtu ?[=:]? ?[0-9]+' "$1" |
      sed -E 's/ icmp_seq=[0-9]+//' | sort | uniq -c | sed -E 's/^ +//' | paste -sd';' -)
  echo "${m:-none}"
}
replies() { grep -oE '[0-9]+ received' "$1" | awk '{print $1}' | head -1; }
routemtu() { local m; m=$(ip -n ns1 $1 route get $2 2>/dev/null | grep -oE 'mtu [0-9]+'); echo "${m:-none}"; }
# fragments ext saw on the wire: "N pkts: lengths" (IPv4: IP total lengths of the echo request's fragments)
wire4() { local n l; n=$(grep -cE '^[0-9:.]+ IP .*proto ICMP' $TD); l=$(grep -oE 'proto ICMP \(1\), length [0-9]+' $TD | awk '{print $NF}' | sort -n | uniq -c | awk '{print $1"x"$2}' | paste -sd, -); echo "$n (${l:-none})"; }
wire6() { local n l; n=$(grep -cE '^[0-9:.]+ IP6 .*2001:db8:2::11 > 2001:db8:1::fe' $TD); l=$(grep -E '2001:db8:2::11 > 2001:db8:1::fe' $TD | grep -oE 'payload length: [0-9]+' | awk '{print $NF}' | sort -n | uniq -c | awk '{print $1"x"$2}' | paste -sd, -); echo "$n (${l:-none})"; }

ORDER=()
put() { local key="$1|$2"; [ -n "${SEEN[$key]}" ] || { ORDER+=("$key"); SEEN[$key]=1; }; R[$key|$IMPL]=$3; }
P=/run/ipvlan-edges-ping
txp() { cat /sys/class/net/h0/statistics/tx_packets; }
extmsgs() { # what ping said, with "Time to live exceeded" / "Time exceeded" counted
  local m
  m=$(grep -oiE 'from [0-9a-f:.]+( icmp_seq=[0-9]+)? (time to live exceeded|time exceeded[^,]*|destination unreachable[^,]*|frag needed[^(]*\(mtu = [0-9]+\)|packet too big: ?mtu ?[=:]? ?[0-9]+)|local error: [^,]*, mtu ?[=:]? ?[0-9]+' "$1" |
      sed -E 's/ icmp_seq=[0-9]+//' | sort | uniq -c | sed -E 's/^ +//' | paste -sd';' -)
  echo "${m:-none}"
}

run() { # impl mode
  local impl=$1 v=$2 b
  IMPL=$impl

  setup "$impl" "$v"; snap
  timeout 8 ip netns exec ns1 ping -t 1 -c 2 -i 0.3 -W 1 192.0.2.254 >$P 2>&1
  put $v "ttl1 v4 to ext (on the master's link): replies (of 2)" "$(replies $P)"
  timeout 8 ip netns exec ns1 ping -t 1 -c 2 -i 0.3 -W 1 203.0.113.1 >$P 2>&1
  put $v "ttl1 v4 one hop beyond ext: ping messages" "$(extmsgs $P)"
  put $v "ttl1 v4 ext Icmp OutTimeExcds / slave InTimeExcds" "$(delta ext:Icmp:OutTimeExcds)/$(delta ns1:Icmp:InTimeExcds)"
  timeout 8 ip netns exec ns1 ping -6 -t 1 -c 2 -i 0.3 -W 1 2001:db8:1::fe >$P 2>&1
  put $v "ttl1 v6 to ext (on the master's link): replies (of 2)" "$(replies $P)"
  timeout 8 ip netns exec ns1 ping -6 -t 1 -c 2 -i 0.3 -W 1 2001:db8:9::1 >$P 2>&1
  put $v "ttl1 v6 one hop beyond ext: ping messages" "$(extmsgs $P)"
  put $v "ttl1 v6 ext Icmp6 OutTimeExcds / slave InTimeExcds" "$(delta ext:6:Icmp6OutTimeExcds)/$(delta ns1:6:Icmp6InTimeExcds)"

  setup "$impl" "$v"
  b=$(txp); timeout 8 ip netns exec ns1 ping -c 1 -W 2 198.51.100.99 >$P 2>&1; sleep 1
  put $v "loop v4: h0 tx packets in 3 s for 1 echo request" "$(( $(txp) - b ))"
  put $v "loop v4: ping messages" "$(extmsgs $P)"
  b=$(txp); timeout 8 ip netns exec ns1 ping -6 -c 1 -W 2 2001:db8:2::99 >$P 2>&1; sleep 1
  put $v "loop v6: h0 tx packets in 3 s for 1 echo request" "$(( $(txp) - b ))"
  put $v "loop v6: ping messages" "$(extmsgs $P)"
  b=$(txp); sleep 2
  put $v "loop: h0 tx packets in the next 2 s (still looping?)" "$(( $(txp) - b ))"

  setup "$impl" "$v"
  ip -n ns1 link set s1 mtu 9000 2>/dev/null
  put $v "slave-mtu: slave MTU after 'mtu 9000' on a 1500 master" "$(ip -n ns1 -o link show s1 | grep -oE 'mtu [0-9]+')"
  snap; tdstart 'src 198.51.100.11 and dst 192.0.2.254'
  timeout 10 ip netns exec ns1 ping -M dont -s 4000 -c 2 -i 0.3 -W 1 192.0.2.254 >$P 2>&1; tdstop
  put $v "slave-mtu v4-nodf replies (of 2)" "$(replies $P)"
  put $v "slave-mtu v4-nodf packets on ext's wire (IP lengths)" "$(wire4)"
  put $v "slave-mtu v4-nodf master Ip FragCreates" "$(delta :Ip:FragCreates)"
  snap; tdstart 'src 198.51.100.11 and dst 192.0.2.254'
  timeout 10 ip netns exec ns1 ping -M do -s 4000 -c 3 -i 0.3 -W 1 192.0.2.254 >$P 2>&1; tdstop
  put $v "slave-mtu v4-df replies (of 3)" "$(replies $P)"
  put $v "slave-mtu v4-df ping messages" "$(extmsgs $P)"
  put $v "slave-mtu v4-df slave route get mtu" "$(routemtu -4 192.0.2.254)"
  put $v "slave-mtu v4-df packets on ext's wire" "$(wire4)"
  snap; tdstart 'ip6 and src 2001:db8:2::11'
  timeout 12 ip netns exec ns1 ping -6 -s 4000 -c 4 -i 0.3 -W 1 2001:db8:1::fe >$P 2>&1; tdstop
  put $v "slave-mtu v6 replies (of 4)" "$(replies $P)"
  put $v "slave-mtu v6 ping messages" "$(extmsgs $P)"
  put $v "slave-mtu v6 slave route get mtu" "$(routemtu -6 2001:db8:1::fe)"
  put $v "slave-mtu v6 packets on ext's wire (payload lengths)" "$(wire6)"
  put $v "slave-mtu v6 master Icmp6 OutPktTooBigs / Ip6 FragCreates" "$(delta :6:Icmp6OutPktTooBigs)/$(delta :6:Ip6FragCreates)"
  teardown
}

for v in l3 l3s; do
  [ -n "$ONLY" ] && [ "$ONLY" != "$v" ] && continue
  for impl in $IMPLS; do run $impl $v; done
done

echo "kernel $(uname -r); hostroute set-up (h0 in the master namespace), master MTU 1500"
printf '| mode | observation |'; for i in $IMPLS; do printf ' %s |' "$i"; done; printf ' same |\n'
printf '|---|---|'; for i in $IMPLS; do printf -- '---|'; done; printf -- '---|\n'
for key in "${ORDER[@]}"; do
  kv=${R[$key|kernel]}; same=yes; row=
  for i in $IMPLS; do val=${R[$key|$i]:-n/a}; row="$row $val |"; [ "$val" = "$kv" ] || same=DIFF; done
  printf '| %s | %s |%s %s |\n' "${key%%|*}" "${key#*|}" "$row" $same
done
if [ -n "$RSIMPLS" ]; then
  echo
  echo "ipvlan-rs data path per run (ipvlan -d link show):"
  for k in "${!DP[@]}"; do printf '  %s: %s\n' "$k" "${DP[$k]:-none}"; done | sort
  echo "daemon warnings and errors (timestamps cut, '== impl mode' starts each daemon; repeats counted):"
  sed -e 's/\x1b\[[0-9;]*m//g' "$DLOG" | grep -iE '^==|WARN|ERROR' | sed -E 's/^[0-9T:.Z-]+ +//' | uniq -c | sed 's/^/  /'
fi
