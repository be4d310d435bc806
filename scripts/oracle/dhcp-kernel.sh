#!/bin/bash
# What DHCPv4 clients in two kernel ipvlan l2 slaves get from one server (issue 19 part 3).
# dnsmasq is copied into the VM: ORACLE_CACHE=/var/cache/ipvlan-oracle-dhcp ORACLE_EXTRA_BINS=/usr/sbin/dnsmasq \
#   ../shared/oracle/run-kernel.sh --timeout 300 scripts/oracle/dhcp-kernel.sh
cat > /tmp/ud.sh <<'S'
#!/bin/sh
case "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface"; echo "  $interface bound $ip";; esac
S
chmod +x /tmp/ud.sh
ip netns add ext; ip netns add ns0; ip netns add ns1
ip link add m0 address 02:00:00:00:00:01 type veth peer name e0 netns ext
ip -n ext link set e0 up; ip -n ext addr add 192.0.2.254/24 dev e0; ip link set m0 up
for i in 0 1; do ip link add link m0 name s$i type ipvlan mode l2; ip link set s$i netns ns$i; ip -n ns$i link set s$i up; done
run() { # $1 label, then udhcpc args for ns0 and ns1
  label=$1; a0=$2; a1=$3
  : > /tmp/leases
  ip netns exec ext dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=e0 --bind-interfaces \
     --dhcp-range=192.0.2.100,192.0.2.150,2m --dhcp-leasefile=/tmp/leases --pid-file=/tmp/dnsmasq.pid -q 2>/tmp/dnsmasq.log &
  d=$!; sleep 0.5
  echo "=== $label"
  for i in 0 1; do
    eval "args=\$a$i"
    ip -n ns$i addr flush dev s$i
    timeout 15 ip netns exec ns$i busybox udhcpc -i s$i -s /tmp/ud.sh -q -n -f -t 3 -T 1 $args >/tmp/ud$i.log 2>&1
    echo "  ns$i udhcpc exit $?: $(ip -n ns$i -4 -o addr show dev s$i | awk '{print $4}')"
  done
  echo "  leases:"; sed 's/^[0-9]* /    /' /tmp/leases
  kill $d; wait $d 2>/dev/null
}
run "broadcast replies (-B), default client id" "-B" "-B"
run "unicast replies, default client id" "" ""
run "broadcast replies (-B), distinct client ids" "-B -x 0x3d:00736c61766530" "-B -x 0x3d:00736c61766531"
run "unicast replies, distinct client ids" "-x 0x3d:00736c61766530" "-x 0x3d:00736c61766531"
