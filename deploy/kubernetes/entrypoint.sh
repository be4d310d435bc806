#!/bin/sh
# Node agent: installs the CNI plugin on the host, then runs the daemon in the host's network
# namespace (the pod uses hostNetwork) with its socket and state on host paths.
set -eu
install -m 0755 /usr/local/lib/ipvlan-rs/ipvlan-rs /host/opt/cni/bin/ipvlan-rs
exec /usr/local/bin/ipvlan daemon --socket /run/ipvlan/ipvlan.sock --state-dir /var/lib/ipvlan
