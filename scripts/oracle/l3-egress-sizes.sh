#!/bin/bash
# l3-mode egress of odd sizes (issue 16, "Kind 2"): what the kernel's ipvlan does when an l3
# slave's packet is too big for the master namespace's route towards its destination — ICMP
# "fragmentation needed" / "packet too big" back to the slave, fragmentation in the master
# namespace, the TTL/hop limit as the packet arrives — and what ipvlan-rs does, per data path.
# Runs inside the oracle VM (as differential.sh does); prints one table row per observation.
#
# Topology: differential.sh's F-L3 with one slave. Master m0 (veth) in the VM's namespace with
# 192.0.2.1/24, 2001:db8:1::1/64; the external host "ext" on the other veth end (192.0.2.254,
# 2001:db8:1::fe) routes 198.51.100.0/24 and 2001:db8:2::/64 back via the master; l3 bridge
# slave s1 in ns1 with 198.51.100.11/32, 2001:db8:2::11/128, default routes via s1.
# The path MTU is lowered in the master's namespace only, with host routes
#   ip route add 192.0.2.254/32 dev m0 mtu lock 1280
#   ip -6 route add 2001:db8:1::fe/128 dev m0 mtu lock 1280
# and NOT by lowering m0's MTU: the kernel's ipvlan copies a master's MTU change to its slaves
# (the slave's own stack would then fragment / refuse before the master is involved, which is not
# what is being settled); the wire stays at 1500, so replies are not affected.
#
# Two variants:
#   plain     F-L3 as above: the master's namespace has no route to the slaves' addresses, so an
#             ICMP error it generates for a slave's packet has nowhere to go;
#   hostroute the usual host-side set-up: a second l3 slave h0 left in the master's namespace,
#             no address, with routes 198.51.100.0/24 and 2001:db8:2::/64 dev h0, so the master's
#             namespace can reach the slaves (and send them ICMP errors).
#
# Observation groups (each on a fresh set-up, so no PMTU state carries over):
#   v4-nodf  ping -M dont -s 1400 -c 3 (1428-byte datagrams): replies; fragments the external
#            host reassembled (its Ip ReasmReqds/ReasmOKs), the master namespace's FragCreates;
#   v4-df    ping -M do -s 1400 -c 3: replies; what ping printed about an MTU; the slave's
#            IcmpInDestUnreachs; the slave's `ip route get` MTU afterwards; echo requests / fragments
#            the external host received; the master namespace's IcmpOutDestUnreachs;
#   v6       ping -6 -s 1400 -c 4 (default PMTU discovery, "want"): the same for IPv6 with
#            Icmp6InPktTooBigs / Ip6ReasmReqds; "answered after PMTU" = replies;
#   v6-df    ping -6 -M do -s 1400 -c 3;
#   ttl      one normal ping (56 bytes) each way: TTL / hop limit as seen by tcpdump on ext's e0.
# Counters are read from /proc/net/snmp{,6} (no nstat in the guest).
#
# usage: l3-egress-sizes.sh [--datapaths "user bpf-tc"] [plain|hostroute]
#   ipvlan-rs is run once per data path named (passed as the daemon's --datapath); bpf-tc is
#   skipped unless sch_ingress and cls_bpf are loaded. The kernel's driver always runs.
#
# Last run (l3-egress-sizes.out), from the repository root, kernel 6.1.0-57 with sch_ingress and
# cls_bpf (the cache of differential-bpf-tc.out):
#   cargo build --release -p ipvlan
#   ORACLE_CACHE=/var/cache/ipvlan-oracle-bpf ORACLE_KERNEL_PKG=linux-image-6.1.0-57-amd64 \
#   ORACLE_MODULES_LOAD="dummy veth macvlan ipvlan tun sch_ingress cls_bpf" \
#   ORACLE_MODULES_EXTRA="ipvtap macvtap bridge 8021q sch_netem crc32c_generic crc32c_intel nf_tables nft_dup_ipv4 nft_dup_ipv6 nf_dup_ipv4 nf_dup_ipv6 nft_ct nf_conntrack nft_nat nft_masq" \
#     ../shared/oracle/run-kernel.sh --timeout 900 --mem 1G \
#     --add target/release/ipvlan:/usr/local/bin/ipvlan scripts/oracle/l3-egress-sizes.sh \
#     > scripts/oracle/l3-egress-sizes.out
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-sizes.sock
DLOG=/run/ipvlan-sizes-daemon.log
TD=/run/ipvlan-sizes-tcpdump
DPID=
DATAPATHS="user bpf-tc"
if [ "${1:-}" = --datapaths ]; then DATAPATHS=$2; shift 2; fi
ONLY=${1:-}
: >"$DLOG"
declare -A R DP

have_tc_bpf() { [ -d /sys/module/sch_ingress ] && [ -d /sys/module/cls_bpf ]; }
IMPLS=kernel
if command -v ipvlan >/dev/null; then
  for d in $DATAPATHS; do
    if [ "$d" = bpf-tc ] && ! have_tc_bpf; then echo "note: bpf-tc skipped (sch_ingress/cls_bpf not loaded)"; continue; fi
    IMPLS="$IMPLS rs-$d"
  done
fi

teardown() {
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in ext ns1; do q ip netns del $n; done
  q ip link del h0; q ip link del m0
  rm -rf /run/ipvlan-sizes-state
}

# setup IMPL VARIANT
setup() {
  local impl=$1 variant=$2 s
  teardown
  ip link set lo up
  ip netns add ext; ip netns add ns1
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext; ip link set m0 up
  ip addr add 192.0.2.1/24 dev m0; ip addr add 2001:db8:1::1/64 dev m0 nodad
  ip -n ext link set lo up; ip -n ext link set e0 up
  ip -n ext addr add 192.0.2.254/24 dev e0; ip -n ext addr add 2001:db8:1::fe/64 dev e0 nodad
  if [ "$impl" != kernel ]; then
    echo "== $impl $variant" >>"$DLOG"
    ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-sizes-state --datapath "${impl#rs-}" 2>>"$DLOG" & DPID=$!
    for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  fi
  for s in s1 h0; do
    [ $s = h0 ] && [ "$variant" != hostroute ] && continue
    if [ "$impl" = kernel ]; then ip link add link m0 name $s type ipvlan mode l3 bridge
    else ipvlan --socket $SOCK link add link m0 $s type ipvlan mode l3 bridge 2>>"$DLOG"; fi
  done
  ip link set s1 netns ns1
  ip -n ns1 link set lo up; ip -n ns1 link set s1 up
  ip -n ns1 addr add 198.51.100.11/32 dev s1; ip -n ns1 addr add 2001:db8:2::11/128 dev s1 nodad
  ip -n ns1 route add default dev s1; ip -n ns1 -6 route add default dev s1
  if [ "$variant" = hostroute ]; then
    ip link set h0 up
    ip route add 198.51.100.0/24 dev h0; ip -6 route add 2001:db8:2::/64 dev h0
  fi
  ip -n ext route add 198.51.100.0/24 via 192.0.2.1; ip -n ext -6 route add 2001:db8:2::/64 via 2001:db8:1::1
  ip route add 192.0.2.254/32 dev m0 mtu lock 1280
  ip -6 route add 2001:db8:1::fe/128 dev m0 mtu lock 1280
  sleep 0.5
  # Warm the neighbour entries with small packets, so the first big one is not queued behind ARP/ND.
  q ip netns exec ns1 ping -c 1 -W 1 192.0.2.254; q ip netns exec ns1 ping -6 -c 1 -W 1 2001:db8:1::fe
  [ "$impl" != kernel ] && [ -z "${DP[$impl $variant]}" ] &&
    DP[$impl $variant]=$(ipvlan --socket $SOCK -d link show 2>&1 | grep -o 'datapath [a-z-]*' | sort -u | awk '{print $2}' | paste -sd, -)
}

# snmp NS PROTO FIELD (NS empty = the master's namespace); snmp6 NS FIELD
snmp() { ${1:+ip netns exec $1} awk -v p="$2:" -v f="$3" '$1 == p { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c[f] }' /proc/net/snmp; }
snmp6() { ${1:+ip netns exec $1} awk -v f="$2" '$1 == f { print $2 }' /proc/net/snmp6; }
# Counter snapshots: C[name] before, delta NAME after.
CTRS="ns1:Icmp:InDestUnreachs ext:Icmp:InEchos ext:Ip:ReasmReqds ext:Ip:ReasmOKs :Ip:FragCreates :Icmp:OutDestUnreachs ns1:6:Icmp6InPktTooBigs ext:6:Icmp6InEchos ext:6:Ip6ReasmReqds ext:6:Ip6ReasmOKs :6:Ip6FragCreates :6:Icmp6OutPktTooBigs :6:Ip6InDiscards :6:Ip6InAddrErrors :6:Ip6InTooBigErrors :6:Ip6InNoRoutes :6:Ip6OutForwDatagrams :Ip:ForwDatagrams"
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
declare -A SEEN
P=/run/ipvlan-sizes-ping

run() { # impl variant
  local impl=$1 v=$2
  IMPL=$impl

  setup "$impl" "$v"; snap; tdstart 'src 198.51.100.11 and dst 192.0.2.254'
  timeout 10 ip netns exec ns1 ping -M dont -s 1400 -c 3 -i 0.3 -W 1 192.0.2.254 >$P 2>&1; tdstop
  put $v "v4-nodf ping replies (of 3)" "$(replies $P)"
  put $v "v4-nodf packets on ext's wire (IP lengths)" "$(wire4)"
  put $v "v4-nodf ext Ip ReasmReqds/ReasmOKs" "$(delta ext:Ip:ReasmReqds)/$(delta ext:Ip:ReasmOKs)"
  put $v "v4-nodf ext Icmp InEchos" "$(delta ext:Icmp:InEchos)"
  put $v "v4-nodf master Ip FragCreates" "$(delta :Ip:FragCreates)"
  put $v "v4-nodf ping messages" "$(pingmsgs $P)"

  setup "$impl" "$v"; snap; tdstart 'src 198.51.100.11 and dst 192.0.2.254'
  timeout 10 ip netns exec ns1 ping -M do -s 1400 -c 3 -i 0.3 -W 1 192.0.2.254 >$P 2>&1; tdstop
  put $v "v4-df ping replies (of 3)" "$(replies $P)"
  put $v "v4-df ping messages" "$(pingmsgs $P)"
  put $v "v4-df slave Icmp InDestUnreachs" "$(delta ns1:Icmp:InDestUnreachs)"
  put $v "v4-df slave route get mtu" "$(routemtu -4 192.0.2.254)"
  put $v "v4-df packets on ext's wire (IP lengths)" "$(wire4)"
  put $v "v4-df ext Icmp InEchos" "$(delta ext:Icmp:InEchos)"
  put $v "v4-df master Icmp OutDestUnreachs" "$(delta :Icmp:OutDestUnreachs)"
  put $v "v4-df master Ip ForwDatagrams" "$(delta :Ip:ForwDatagrams)"

  setup "$impl" "$v"; snap; tdstart 'ip6 and src 2001:db8:2::11'
  timeout 12 ip netns exec ns1 ping -6 -s 1400 -c 4 -i 0.3 -W 1 2001:db8:1::fe >$P 2>&1; tdstop
  put $v "v6 ping replies (of 4)" "$(replies $P)"
  put $v "v6 ping messages" "$(pingmsgs $P)"
  put $v "v6 slave Icmp6 InPktTooBigs" "$(delta ns1:6:Icmp6InPktTooBigs)"
  put $v "v6 slave route get mtu" "$(routemtu -6 2001:db8:1::fe)"
  put $v "v6 packets on ext's wire (payload lengths)" "$(wire6)"
  put $v "v6 ext Ip6 ReasmReqds/ReasmOKs" "$(delta ext:6:Ip6ReasmReqds)/$(delta ext:6:Ip6ReasmOKs)"
  put $v "v6 ext Icmp6 InEchos" "$(delta ext:6:Icmp6InEchos)"
  put $v "v6 master Icmp6 OutPktTooBigs / Ip6 FragCreates" "$(delta :6:Icmp6OutPktTooBigs)/$(delta :6:Ip6FragCreates)"
  put $v "v6 master Ip6 InDiscards/InAddrErrors/InTooBigErrors/InNoRoutes/OutForwDatagrams" "$(delta :6:Ip6InDiscards)/$(delta :6:Ip6InAddrErrors)/$(delta :6:Ip6InTooBigErrors)/$(delta :6:Ip6InNoRoutes)/$(delta :6:Ip6OutForwDatagrams)"

  setup "$impl" "$v"; snap; tdstart 'ip6 and src 2001:db8:2::11'
  timeout 10 ip netns exec ns1 ping -6 -M do -s 1400 -c 3 -i 0.3 -W 1 2001:db8:1::fe >$P 2>&1; tdstop
  put $v "v6-df ping replies (of 3)" "$(replies $P)"
  put $v "v6-df ping messages" "$(pingmsgs $P)"
  put $v "v6-df slave Icmp6 InPktTooBigs" "$(delta ns1:6:Icmp6InPktTooBigs)"
  put $v "v6-df packets on ext's wire (payload lengths)" "$(wire6)"
  put $v "v6-df master Icmp6 OutPktTooBigs / Ip6 FragCreates" "$(delta :6:Icmp6OutPktTooBigs)/$(delta :6:Ip6FragCreates)"

  setup "$impl" "$v"
  tdstart -c 1 'icmp and icmp[0] = 8 and src 198.51.100.11'
  q timeout 5 ip netns exec ns1 ping -c 1 -W 1 192.0.2.254; tdstop
  put $v "ttl: IPv4 TTL at ext (slave sends 64)" "$(grep -oE 'ttl [0-9]+' $TD | head -1 | awk '{print $2}')"
  tdstart -c 1 'icmp6 and ip6[40] = 128 and src 2001:db8:2::11'
  q timeout 5 ip netns exec ns1 ping -6 -c 1 -W 1 2001:db8:1::fe; tdstop
  put $v "ttl: IPv6 hop limit at ext (slave sends 64)" "$(grep -oE 'hlim [0-9]+' $TD | head -1 | awk '{print $2}')"
  teardown
}

for v in plain hostroute; do
  [ -n "$ONLY" ] && [ "$ONLY" != "$v" ] && continue
  for impl in $IMPLS; do run $impl $v; done
done

echo "kernel $(uname -r); path MTU lowered with a master-namespace host route 'mtu lock 1280' (v4 and v6); slave MTU 1500"
echo "master namespace: net.ipv4.ip_forward=$(sysctl -n net.ipv4.ip_forward) net.ipv6.conf.all.forwarding=$(sysctl -n net.ipv6.conf.all.forwarding) (read after the runs)"
printf '| variant | observation |'; for i in $IMPLS; do printf ' %s |' "$i"; done; printf ' same |\n'
printf '|---|---|'; for i in $IMPLS; do printf -- '---|'; done; printf -- '---|\n'
for key in "${ORDER[@]}"; do
  kv=${R[$key|kernel]}; same=yes; row=
  for i in $IMPLS; do val=${R[$key|$i]:-n/a}; row="$row $val |"; [ "$val" = "$kv" ] || same=DIFF; done
  printf '| %s | %s |%s %s |\n' "${key%%|*}" "${key#*|}" "$row" $same
done

if [ "$IMPLS" != kernel ]; then
  echo
  echo "ipvlan-rs data path per run (ipvlan -d link show):"
  for k in "${!DP[@]}"; do printf '  %s: %s\n' "$k" "${DP[$k]:-none}"; done | sort
  echo "daemon warnings and errors (timestamps cut, '== impl variant' starts each daemon; repeats counted):"
  sed -e 's/\x1b\[[0-9;]*m//g' "$DLOG" | grep -E '^==|WARN|ERROR|Error' | sed -E 's/^[0-9T:.Z-]+ +//' | uniq -c | sed 's/^/  /'
fi
