#!/bin/sh
# Node agent: installs the CNI plugin on the host, then runs the daemon in the host's network
# namespace (the pod uses hostNetwork) with its socket and state on host paths.
#
# It installs no CNI network configuration: ipvlan-rs is meant for secondary networks, attached
# through Multus with a NetworkAttachmentDefinition (network-attachment.yaml beside this file).
# A conflist in /etc/cni/net.d would make it a candidate for the pods' primary network, which
# needs cluster-wide address management and the node reaching its pods (kubelet probes,
# Services); see README, "Kubernetes / Multus".
set -eu
# Copied beside the old one and renamed over it: a runtime starting the plugin meanwhile runs
# either the old or the new binary, never a half-written one.
install -m 0755 /usr/local/lib/ipvlan-rs/ipvlan-rs /host/opt/cni/bin/.ipvlan-rs.new
mv -f /host/opt/cni/bin/.ipvlan-rs.new /host/opt/cni/bin/ipvlan-rs
exec /usr/local/bin/ipvlan daemon --socket /run/ipvlan/ipvlan.sock --state-dir /var/lib/ipvlan
