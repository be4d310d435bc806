#!/bin/bash
# Settles the spec's UNVERIFIED / derived rules that ipvlan-core decides, on the real kernel driver.
# Run: ../shared/oracle/run-kernel.sh --timeout 300 scripts/oracle/core-unverified.sh
# Fixture: spec §11.1 F-L2 — master m0 (02:00:00:00:00:01, 192.0.2.1) in the VM's initial
# namespace, its veth peer e0 in ns "ext" (192.0.2.254), slaves s1/s2 in ns1/ns2 (.11/.12).
x() { printf '$ %s\n' "$*"; "$@"; rc=$?; [ "$rc" -eq 0 ] || echo "[exit $rc]"; return 0; }
q() { "$@" >/dev/null 2>&1; }

setup() { # $1 = mode/flag words, $2 = hairpin (yes/no)
  q ip netns del ext; q ip netns del ns1; q ip netns del ns2; q ip link del m0
  ip netns add ext; ip netns add ns1; ip netns add ns2
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 address 02:00:00:00:00:fe
  ip link set e0 netns ext
  ip link set m0 up; ip addr add 192.0.2.1/24 dev m0
  ip -n ext link set lo up; ip -n ext link set e0 up
  if [ "$2" = yes ]; then
    ip -n ext link add br0 address 02:00:00:00:00:fd type bridge
    ip -n ext link set e0 master br0; ip -n ext link set br0 up
    ip netns exec ext bridge link set dev e0 hairpin on
    ip -n ext addr add 192.0.2.254/24 dev br0
  else
    ip -n ext addr add 192.0.2.254/24 dev e0
  fi
  for n in 1 2; do
    ip link add link m0 name s$n type ipvlan $1
    ip link set s$n netns ns$n
    ip -n ns$n link set lo up; ip -n ns$n link set s$n up
    ip -n ns$n addr add 192.0.2.1$n/24 dev s$n
    ip netns exec ns$n sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
  done
  sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
  ip netns exec ext sysctl -qw net.ipv4.icmp_echo_ignore_broadcasts=0
}

# ICMP echo requests a namespace's stack received ("" = the VM's initial namespace).
inechos() {
  ${1:+ip netns exec $1} awk '/^Icmp:/ { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else print $col["InEchos"] }' /proc/net/snmp
}

rx_of() { ip -n "$1" -s -j link show "$2" | jq '.[0].stats64.rx.packets'; }

# Broadcast ping from ns1: replies per source, and echo requests counted by the receivers' stacks.
bping() {
  local b2 bm a2 am
  b2=$(inechos ns2); bm=$(inechos "")
  ip netns exec ns1 ping -b -c 3 -i 0.3 -W 1 192.0.2.255 2>/dev/null \
    | awk '/bytes from/ { sub(":", "", $4); n[$4]++; if (/DUP/) d[$4]++ } END { for (k in n) printf "  replies from %s: %d (dup %d)\n", k, n[k], d[k] + 0 }' | sort
  a2=$(inechos ns2); am=$(inechos "")
  echo "  echo requests received: ns2 +$((a2 - b2)), master +$((am - bm)) (3 broadcasts sent)"
}

echo "### T-40: l2 private — does ns2 get ns1's broadcast? (R-MC-6, R-TX-PRIV-1)"
setup "mode l2 private" no
bping
echo "### T-43: l2 vepa, plain veth (no hairpin) — ns2 gets the broadcast exactly once?"
setup "mode l2 vepa" no
bping
echo "### T-44: l2 vepa behind a hairpin bridge — ns2 exactly one copy, master gets the reflection"
setup "mode l2 vepa" yes
bping
echo "### T-42: vepa unicast through the hairpin works"
x ip netns exec ns1 ping -c 2 -i 0.3 -W 1 192.0.2.12
echo "### VLAN: ext sends unicast tagged with VID 10 to a slave address (R-CLS-4 on receive)"
setup "mode l2 bridge" no
ip -n ext addr flush dev e0
ip -n ext link add link e0 name e0.10 type vlan id 10
ip -n ext link set e0.10 up; ip -n ext addr add 192.0.2.254/24 dev e0.10
ip -n ext neigh add 192.0.2.11 lladdr 02:00:00:00:00:01 dev e0.10
r0=$(rx_of ns1 s1)
x ip netns exec ext ping -c 2 -i 0.3 -W 1 192.0.2.11
r1=$(rx_of ns1 s1)
echo "  s1 rx_packets grew by $((r1 - r0)) (claimed by the slave, then discarded by its stack)"
echo "### R-SPC-MASTER-1: the master cannot reach its own l2 slave"
setup "mode l2 bridge" no
x ping -c 1 -W 1 192.0.2.11
echo "### done"
