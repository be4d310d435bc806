#!/bin/bash
# What the kernel's ipvlan does between the master's own stack and its slaves (issue 19 part 2),
# and what an ipvtap is made of (part 1). Run: ../shared/oracle/run-kernel.sh scripts/oracle/host-slave-kernel.sh
x() { printf '$ %s\n' "$*"; "$@"; rc=$?; [ "$rc" -eq 0 ] || echo "[exit $rc]"; return 0; }
modprobe ipvtap 2>/dev/null
for mode in l2 l3 l3s; do
  echo "=== mode $mode"
  ip netns add ext; ip netns add ns0
  ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 netns ext
  ip -n ext link set e0 up; ip -n ext addr add 192.0.2.254/24 dev e0; ip -n ext addr add 2001:db8::fe/64 dev e0 nodad
  ip link set m0 up; ip addr add 192.0.2.1/24 dev m0; ip addr add 2001:db8::1/64 dev m0 nodad
  ip link add link m0 name s0 type ipvlan mode $mode
  ip link set s0 netns ns0
  ip -n ns0 link set s0 up; ip -n ns0 addr add 192.0.2.11/24 dev s0; ip -n ns0 addr add 2001:db8::11/64 dev s0 nodad
  ip -n ns0 route add default dev s0 2>/dev/null
  sleep 1
  echo "-- host -> slave"
  x ping -c 2 -W 1 -i 0.3 192.0.2.11
  x ping -6 -c 2 -W 1 -i 0.3 2001:db8::11
  echo "-- slave -> host (master's address)"
  x ip netns exec ns0 ping -c 2 -W 1 -i 0.3 192.0.2.1
  x ip netns exec ns0 ping -6 -c 2 -W 1 -i 0.3 2001:db8::1
  echo "-- what the external host's end received (frames)"
  ip -n ext -s link show e0 | awk '/RX:/{getline; print "ext e0 rx packets", $2}'
  ip link del m0; ip netns del ext; ip netns del ns0
done
echo "=== ipvtap"
ip link add m0 address 02:00:00:00:00:01 type dummy; ip link set m0 up
x ip link add link m0 name vt0 type ipvtap mode l2
x ip -d link show vt0
ls -l /dev/tap* 2>&1 | sed 's/ *[A-Z][a-z][a-z] .*\(\/dev\)/ \1/'
x ip link add link m0 name vt1 type ipvtap mode l3 bridge
x ip -d link show vt1
