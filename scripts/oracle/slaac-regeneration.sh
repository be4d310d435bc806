#!/bin/bash
# Every way the kernel (re)generates an l2 slave's own IPv6 addresses (issue 16, "Kind 1"): what
# the kernel's ipvlan gives and what ipvlan-rs gives (TAP and veth slaves, userspace data path),
# observed after each trigger. Runs inside the oracle VM (as differential.sh does); prints one
# table row per observation.
#
# Topology: master m0 (veth, 02:00:00:00:00:01) in the VM's namespace; the external host "ext"
# on the other end runs radvd advertising 2001:db8:5::/64 (autonomous, every 3-4 s); l2 bridge
# slaves s0 in ns0 (net.ipv6.conf.default.use_tempaddr=2 there: RFC 8981 temporary addresses)
# and s1 in ns1. The master has net.ipv6.conf.m0.accept_ra=2 so it takes SLAAC too.
#
# Steps, each followed by the addresses of both slaves and of the master:
#   initial       slaves moved, brought up, one RA later
#   down-up       s0 down, up
#   disable-ipv6  net.ipv6.conf.s0.disable_ipv6=1, then 0
#   mtu           s0 MTU 1200 (below IPv6's minimum: IPv6 goes away), then 1500
#   addrgen       net.ipv6.conf.s0.addr_gen_mode=1 (none), then 0 (eui64) (the sysctl regenerates)
#   addrgen-nl    ip link set s1 addrgenmode eui64, then s1 down, up
#   addrgen-random ip link set s1 addrgenmode random (RFC 7217 identifiers), then s1 down, up
#   move          s0 moved to ns2 (no temporary addresses there), up
# An address prints as its interface identifier (the last 64 bits) and its flags; temporary
# addresses print as "temp" (random by design), RFC 7217 ones as "rfc7217"; "EUI64(shared MAC)" marks the EUI-64 of the shared
# MAC, the master's own. "master" lists m0's SLAAC addresses; "master answers" is whether an echo
# request from ext to the master's SLAAC address was counted by the master's namespace.
#
# usage: slaac-regeneration.sh [--impls "kernel rs-tap rs-veth"]
# Last run (slaac-regeneration.out), from the repository root:
#   cargo build --release -p ipvlan
#   ORACLE_CACHE=/var/cache/ipvlan-oracle-bpf ORACLE_KERNEL_PKG=linux-image-6.1.0-57-amd64 \
#   ORACLE_MODULES_LOAD="dummy veth macvlan ipvlan tun sch_ingress cls_bpf" \
#     ../shared/oracle/run-kernel.sh --timeout 900 --mem 1G \
#     --add target/release/ipvlan:/usr/local/bin/ipvlan --add /usr/sbin/radvd:/usr/local/bin/radvd \
#     scripts/oracle/slaac-regeneration.sh > scripts/oracle/slaac-regeneration.out
q() { "$@" >/dev/null 2>&1; }
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
SOCK=/run/ipvlan-slaac.sock
DLOG=/run/ipvlan-slaac-daemon.log
DPID= RPID=
IMPLS="kernel"
command -v ipvlan >/dev/null && IMPLS="kernel rs-tap rs-veth"
if [ "${1:-}" = --impls ]; then IMPLS=$2; shift 2; fi
if [ "${1:-}" = --wait ]; then WAIT=$2; shift 2; fi
: >"$DLOG"
declare -A R SEEN
ORDER=()
put() { local key="$1"; [ -n "${SEEN[$key]}" ] || { ORDER+=("$key"); SEEN[$key]=1; }; R[$key|$IMPL]=$2; }

teardown() {
  [ -n "$RPID" ] && { kill "$RPID"; wait "$RPID" 2>/dev/null; RPID=; }
  [ -n "$DPID" ] && { kill "$DPID"; wait "$DPID" 2>/dev/null; DPID=; }
  for n in ext ns0 ns1 ns2; do q ip netns del $n; done
  q ip link del m0
  rm -rf /run/ipvlan-slaac-state
}

setup() {
  local impl=$1 s
  teardown
  ip link set lo up
  for n in ext ns0 ns1 ns2; do ip netns add $n; ip -n $n link set lo up; done
  ip netns exec ns0 sysctl -qw net.ipv6.conf.default.use_tempaddr=2
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext
  sysctl -qw net.ipv6.conf.m0.accept_ra=2
  ip link set m0 up
  ip -n ext link set e0 up
  ip netns exec ext sysctl -qw net.ipv6.conf.all.forwarding=1
  ip -n ext addr add 2001:db8:5::fe/64 dev e0 nodad
  mkdir -p /run/radvd
  printf 'interface e0 { AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4; prefix 2001:db8:5::/64 { AdvOnLink on; AdvAutonomous on; }; };\n' >/run/radvd/radvd.conf
  ip netns exec ext radvd -n -C /run/radvd/radvd.conf -p /run/radvd/radvd.pid -m logfile -l /run/radvd/log >/dev/null 2>&1 &
  RPID=$!
  if [ "$impl" != kernel ]; then
    echo "== $impl" >>"$DLOG"
    ipvlan daemon --socket $SOCK --state-dir /run/ipvlan-slaac-state --datapath user 2>>"$DLOG" &
    DPID=$!
    for _ in $(seq 50); do [ -S $SOCK ] && break; sleep 0.1; done
  fi
  for s in s0 s1; do
    if [ "$impl" = kernel ]; then ip link add link m0 name $s type ipvlan mode l2 bridge
    else ipvlan --socket $SOCK link add link m0 $s backend "${impl#rs-}" type ipvlan mode l2 bridge 2>>"$DLOG"; fi
  done
  ip link set s0 netns ns0; ip link set s1 netns ns1
  ip -n ns0 link set s0 up; ip -n ns1 link set s1 up
}

# addrs NS DEV: its IPv6 addresses as "scope:iid[flags]" sorted, one string
addrs() {
  local ns=$1 dev=$2
  ip ${ns:+-n $ns} -6 -o addr show dev "$dev" 2>/dev/null | awk '
    { a = $4; sub(/\/.*/, "", a); scope = "?"; fl = "";
      for (i = 5; i <= NF; i++) {
        if ($i == "scope") scope = $(i + 1);
        if ($i ~ /^(temporary|tentative|dadfailed|deprecated|mngtmpaddr|noprefixroute|stable-privacy)$/) fl = fl "," $i;
      }
      # the interface identifier: the last four groups of the fully expanded address
      n = split(a, g, ":"); iid = "";
      if (a ~ /::/) {
        # expand: count groups on each side
        split(a, h, "::"); nl = (h[1] == "" ? 0 : split(h[1], l, ":")); nr = (h[2] == "" ? 0 : split(h[2], r, ":"));
        for (i = 1; i <= nl; i++) e[i] = l[i]; for (i = nl + 1; i <= 8 - nr; i++) e[i] = "0"; for (i = 1; i <= nr; i++) e[8 - nr + i] = r[i];
      } else { for (i = 1; i <= 8; i++) e[i] = g[i]; }
      iid = e[5] ":" e[6] ":" e[7] ":" e[8];
      if (iid == "0:0ff:fe00:1" || iid == "0:ff:fe00:1") iid = "EUI64(shared MAC)";
      if (fl ~ /temporary/) { iid = "temp"; sub(/,temporary/, "", fl); }
      if (fl ~ /stable-privacy/) { iid = "rfc7217"; sub(/,stable-privacy/, "", fl); }
      pfx = (scope == "link") ? "ll" : "g";
      print pfx "=" iid (fl == "" ? "" : "[" substr(fl, 2) "]") }' | sort | paste -sd' ' -
}
snap6() { ${1:+ip netns exec $1} awk -v f="$2" '$1 == f { print $2 }' /proc/net/snmp6; }

observe() { # STEP
  local step=$1 before after m
  sleep "${WAIT:-9}"   # an RA (every 3-4 s), DAD (1 s), and the temporary addresses
  [ "$step" != move ] && put "$step: s0 (ns0, temporary addresses on)" "$(addrs ns0 s0)"
  put "$step: s1 (ns1)" "$(addrs ns1 s1)"
  [ "$step" = move ] && put "$step: s0 (now in ns2)" "$(addrs ns2 s0)"
  put "$step: master m0" "$(addrs '' m0)"
  m=$(ip -6 -o addr show dev m0 scope global | awk '{print $4}' | sed 's|/.*||' | grep -v temporary | head -1)
  if [ -n "$m" ]; then
    before=$(snap6 '' Icmp6InEchos)
    q ip netns exec ext ping -6 -c 2 -i 0.3 -W 1 "$m"
    after=$(snap6 '' Icmp6InEchos)
    put "$step: master answers its SLAAC address (echo requests it counted of 2)" "$((after - before))"
  else
    put "$step: master answers its SLAAC address (echo requests it counted of 2)" "no address"
  fi
}

run() {
  IMPL=$1
  setup "$1"
  observe initial
  ip -n ns0 link set s0 down; sleep 0.5; ip -n ns0 link set s0 up
  observe down-up
  ip netns exec ns0 sysctl -qw net.ipv6.conf.s0.disable_ipv6=1; sleep 0.5
  ip netns exec ns0 sysctl -qw net.ipv6.conf.s0.disable_ipv6=0
  observe disable-ipv6
  ip -n ns0 link set s0 mtu 1200; sleep 0.5; ip -n ns0 link set s0 mtu 1500
  observe mtu
  ip netns exec ns0 sysctl -qw net.ipv6.conf.s0.addr_gen_mode=1; sleep 0.5
  ip netns exec ns0 sysctl -qw net.ipv6.conf.s0.addr_gen_mode=0
  observe addrgen
  put "addrgen: s0 addrgenmode (ip -d link)" "$(ip -n ns0 -d link show s0 | grep -oE 'addrgenmode [a-z_0-9]+' | head -1)"
  ip -n ns1 link set s1 addrgenmode eui64; ip -n ns1 link set s1 down; sleep 0.5; ip -n ns1 link set s1 up
  observe addrgen-nl
  ip -n ns1 link set s1 addrgenmode random; ip -n ns1 link set s1 down; sleep 0.5; ip -n ns1 link set s1 up
  observe addrgen-random
  ip -n ns0 link set s0 netns ns2; ip -n ns2 link set s0 up
  observe move
  teardown
}

for impl in $IMPLS; do run $impl; done

echo "kernel $(uname -r); master 02:00:00:00:00:01, RA 2001:db8:5::/64 from radvd on ext"
printf '| observation |'; for i in $IMPLS; do printf ' %s |' "$i"; done; printf ' same |\n'
printf '|---|'; for i in $IMPLS; do printf -- '---|'; done; printf -- '---|\n'
for key in "${ORDER[@]}"; do
  kv=${R[$key|kernel]}; same=yes; row=
  for i in $IMPLS; do val=${R[$key|$i]:-n/a}; row="$row $val |"; [ "$val" = "$kv" ] || same=DIFF; done
  printf '| %s |%s %s |\n' "$key" "$row" $same
done
if [ "$IMPLS" != kernel ]; then
  echo
  echo "daemon warnings and errors (timestamps cut, '== impl' starts each daemon; repeats counted):"
  sed -e 's/\x1b\[[0-9;]*m//g' "$DLOG" | grep -iE '^==|WARN|ERROR' | sed -E 's/^[0-9T:.Z-]+ +//' | uniq -c | sed 's/^/  /'
fi
