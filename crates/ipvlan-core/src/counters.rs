//! Per-slave and per-port counters, with drops broken down by reason.
//!
//! The kernel folds every drop into one `tx_dropped`/`rx_dropped`; we keep the reason too, which
//! is what an operator needs to tell a `private` policy drop from an overflowing backlog.

use std::fmt;

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than an Ethernet header (R-TX-0).
    Runt,
    /// Unicast between slaves on a `private` port (R-TX-PRIV-1).
    PrivateUnicast,
    /// Multicast or broadcast sent by an l3/l3s slave (R-TX-L3-3 step 1).
    L3Multicast,
    /// Non-IP frame sent by an l3/l3s slave (R-TX-L3-3 step 3).
    L3NotIp,
    /// IP EtherType whose header fails the checks, sent by an l3/l3s slave (R-TX-L3-3).
    MalformedIp,
    /// Longer than the receiving device's MTU + 18 (R-MTU-4).
    MtuExceeded,
    /// The receiving slave is down (R-STAT-2).
    ReceiverDown,
    /// The multicast backlog already holds its 1000 frames (R-MC-1, R-STAT-4).
    BacklogFull,
    /// 802.3x PAUSE frames are never distributed (R-MC-1).
    PauseFrame,
    /// Tagged with a VLAN id for a slave: slaves are VLAN-challenged (R-CRT-10).
    ForeignVlan,
    /// The receiving device's queue was full (reported by the I/O layer).
    QueueFull,
    /// Not IPv4/IPv6, so it cannot be handed to the master namespace's stack.
    HostNotIp,
    /// A source address the slave does not own, with its guard on (`spoofchk on`).
    SpoofedSource,
    /// A router advertisement or redirect from a slave with its guard on that is not allowed
    /// to act as a router (`spoofchk on`, `router off`).
    RouterMessage,
    /// Frames the kernel dropped before the daemon read them: the master socket's receive
    /// buffer was full (reported by the I/O layer, `PACKET_STATISTICS`).
    RxOverflow,
    /// An l3/l3s packet the daemon handed to the master namespace's stack came straight back
    /// from a slave in that namespace (the host routed it to it): the kernel's nested-transmit
    /// limit stops such a loop, this does.
    RoutingLoop,
    /// A frame from a VM's NIC behind an ipvtap whose Ethernet source is not the master's
    /// MAC (the guest's NIC must be given the master's: QEMU `mac=`, Firecracker
    /// `guest_mac`): what is sent back to it would never reach it.
    ForeignSourceMac,
}

impl DropReason {
    pub const COUNT: usize = 17;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Runt,
        DropReason::PrivateUnicast,
        DropReason::L3Multicast,
        DropReason::L3NotIp,
        DropReason::MalformedIp,
        DropReason::MtuExceeded,
        DropReason::ReceiverDown,
        DropReason::BacklogFull,
        DropReason::PauseFrame,
        DropReason::ForeignVlan,
        DropReason::QueueFull,
        DropReason::HostNotIp,
        DropReason::SpoofedSource,
        DropReason::RouterMessage,
        DropReason::RxOverflow,
        DropReason::RoutingLoop,
        DropReason::ForeignSourceMac,
    ];

    /// Stable snake_case name, used in JSON and `link show -s`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::PrivateUnicast => "private_unicast",
            DropReason::L3Multicast => "l3_multicast",
            DropReason::L3NotIp => "l3_not_ip",
            DropReason::MalformedIp => "malformed_ip",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::ReceiverDown => "receiver_down",
            DropReason::BacklogFull => "backlog_full",
            DropReason::PauseFrame => "pause_frame",
            DropReason::ForeignVlan => "foreign_vlan",
            DropReason::QueueFull => "queue_full",
            DropReason::HostNotIp => "host_not_ip",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::RouterMessage => "router_message",
            DropReason::RxOverflow => "rx_overflow",
            DropReason::RoutingLoop => "routing_loop",
            DropReason::ForeignSourceMac => "foreign_source_mac",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Drop counts indexed by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounts([u64; DropReason::COUNT]);

impl DropCounts {
    pub fn add(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }

    /// Adds `n` drops at once (counted elsewhere, e.g. by the kernel).
    pub fn add_n(&mut self, reason: DropReason, n: u64) {
        self.0[reason.index()] += n;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The reasons with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Counters of one slave, named from the slave's point of view (R-STAT-1..3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlaveCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Deliveries made by the multicast engine (also counted in `rx_packets`).
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// l3/l3s egress the master namespace could not route or send (R-STAT-3).
    pub tx_errors: u64,
    /// Frames this slave sent that were dropped, by reason.
    pub tx_dropped: DropCounts,
    /// Frames for this slave that were dropped, by reason.
    pub rx_dropped: DropCounts,
    /// DHCPv4 replies from the wire delivered to this slave by their transaction id
    /// (`crate::dhcp`; also counted in `rx_packets`).
    pub rx_dhcp_steered: u64,
}

impl SlaveCounters {
    pub fn count_rx(&mut self, len: usize, multicast: bool) {
        self.rx_packets += 1;
        self.rx_bytes += len as u64;
        if multicast {
            self.rx_multicast += 1;
        }
    }

    pub fn count_tx(&mut self, len: usize) {
        self.tx_packets += 1;
        self.tx_bytes += len as u64;
    }

    /// Takes back a transmit counted by [`Self::count_tx`] that did not happen after all.
    pub fn uncount_tx(&mut self, len: usize) {
        self.tx_packets = self.tx_packets.saturating_sub(1);
        self.tx_bytes = self.tx_bytes.saturating_sub(len as u64);
    }
}

/// Counters of the master side of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortCounters {
    /// Frames from the wire claimed for a slave.
    pub rx_claimed: u64,
    /// Frames from the wire left to the master namespace's stack.
    pub rx_passed: u64,
    /// Wire frames queued for multicast distribution.
    pub rx_multicast_queued: u64,
    /// Frames transmitted out of the master on behalf of slaves.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames slaves handed to the master namespace's stack (L2 local miss, L3 routing).
    pub to_host_stack: u64,
    /// Drops attributed to the master (wire-originated backlog overflow, R-STAT-4; MTU into the
    /// master's stack, R-MTU-4).
    pub dropped: DropCounts,
    /// DHCPv4 requests whose xid another slave's live request had used: the newest sender
    /// gets the replies (`crate::dhcp::Recorded::Taken`).
    pub dhcp_xid_taken: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counts_by_reason() {
        let mut d = DropCounts::default();
        d.add(DropReason::PrivateUnicast);
        d.add(DropReason::PrivateUnicast);
        d.add(DropReason::BacklogFull);
        assert_eq!(d.get(DropReason::PrivateUnicast), 2);
        assert_eq!(d.total(), 3);
        assert_eq!(
            d.nonzero().collect::<Vec<_>>(),
            vec![
                (DropReason::PrivateUnicast, 2),
                (DropReason::BacklogFull, 1)
            ]
        );
    }

    #[test]
    fn reason_names_are_unique_and_indexed() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
