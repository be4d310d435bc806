//! The stateful side of the decisions: each `handle_*` decides with the pure function of
//! [`crate::decide`] and charges the counters the kernel would (R-STAT-1..4), with drop reasons.

use crate::counters::DropReason;
use crate::decide::{
    decide_rx, decide_tx, multicast_fanout, DropSite, McCopy, RxAction, RxMeta, TxAction, TxMeta,
};
use crate::multicast::{McOrigin, MulticastBacklog};
use crate::port::Port;
use crate::slave_id::SlaveId;

impl Port {
    /// Decides a frame transmitted by `from` and counts it.
    pub fn handle_tx(&mut self, from: SlaveId, frame: &[u8], meta: TxMeta) -> TxAction {
        let meta = TxMeta {
            from: Some(from),
            ..meta
        };
        let action = decide_tx(self, frame, meta);
        let len = frame.len();
        if matches!(action, TxAction::Transmit { .. } | TxAction::Multicast) {
            self.note_dhcp_request(from, frame, meta.now);
        }
        match action {
            TxAction::Drop {
                reason,
                site: DropSite::Sender,
            } => {
                if let Some(s) = self.slave_mut(from) {
                    s.counters.tx_dropped.add(reason);
                }
            }
            _ => {
                // Everything else is a successful transmit for the sender (R-STAT-1), including
                // a local delivery the receiver then refuses.
                if let Some(s) = self.slave_mut(from) {
                    s.counters.count_tx(len);
                }
            }
        }
        match action {
            TxAction::Deliver(to) => {
                if let Some(s) = self.slave_mut(to) {
                    s.counters.count_rx(len, false);
                }
            }
            TxAction::Transmit { .. } => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += len as u64;
            }
            TxAction::ToHost | TxAction::Route { .. } => self.counters.to_host_stack += 1,
            TxAction::Drop {
                reason,
                site: DropSite::Receiver(to),
            } => {
                if let Some(s) = self.slave_mut(to) {
                    s.counters.rx_dropped.add(reason);
                }
            }
            TxAction::Drop {
                reason,
                site: DropSite::Master,
            } => self.counters.dropped.add(reason),
            TxAction::Multicast | TxAction::Drop { .. } => {}
        }
        action
    }

    /// Decides a frame received on the master and counts it.
    pub fn handle_rx(&mut self, frame: &[u8], meta: RxMeta) -> RxAction {
        let action = decide_rx(self, frame, meta);
        match action {
            RxAction::Deliver(to) => {
                self.counters.rx_claimed += 1;
                if let Some(s) = self.slave_mut(to) {
                    s.counters.count_rx(frame.len(), false);
                }
            }
            // l3s: the master's stack has it first; counted on the slave if it comes through
            // (`record_rx`).
            RxAction::Pass | RxAction::PassAndMulticast | RxAction::DeliverViaHost(_) => {
                self.counters.rx_passed += 1
            }
            RxAction::Drop { reason } => {
                self.counters.rx_claimed += 1;
                self.counters.dropped.add(reason);
            }
            RxAction::Steer(to) => {
                self.counters.rx_claimed += 1;
                if let Some(s) = self.slave_mut(to) {
                    s.counters.count_rx(frame.len(), false);
                    s.counters.rx_dhcp_steered += 1;
                }
            }
        }
        action
    }

    /// l2: remembers the xid of a DHCPv4 request `from` sends out of the master, so that the
    /// server's replies find it (`crate::dhcp`); another slave's live entry taken over is
    /// counted in `dhcp_xid_taken`. l3/l3s slaves cannot send the broadcast a lease starts
    /// with, and their renewals come back to an address they own: nothing is remembered.
    fn note_dhcp_request(&mut self, from: SlaveId, frame: &[u8], now: u64) {
        if self.mode() != crate::Mode::L2 {
            return;
        }
        let Some(msg) = crate::dhcp::parse(frame) else {
            return;
        };
        if msg.direction != crate::dhcp::Direction::Request {
            return;
        }
        if let crate::dhcp::Recorded::Taken { .. } = self.dhcp_xids_mut().record(msg.xid, from, now)
        {
            self.counters.dhcp_xid_taken += 1;
        }
    }

    /// Queues a multicast frame; on overflow counts the drop on the sending slave or the master
    /// (R-STAT-4) and returns `false`.
    pub fn queue_multicast<B>(
        &mut self,
        backlog: &mut MulticastBacklog<B>,
        origin: McOrigin,
        frame: B,
    ) -> bool {
        if backlog.push(origin, frame).is_ok() {
            if origin == McOrigin::Wire {
                self.counters.rx_multicast_queued += 1;
            }
            return true;
        }
        match origin {
            McOrigin::Slave(s) => {
                if let Some(s) = self.slave_mut(s) {
                    s.counters.rx_dropped.add(DropReason::BacklogFull);
                }
            }
            McOrigin::Wire => self.counters.dropped.add(DropReason::BacklogFull),
        }
        false
    }

    /// Distributes one multicast frame taken from the backlog: fills `out` with the copies to
    /// make, counts them, and returns whether the frame must then be sent out of the master
    /// (with the master's MAC as source).
    pub fn handle_multicast(
        &mut self,
        origin: McOrigin,
        frame: &[u8],
        gso: bool,
        out: &mut Vec<McCopy>,
    ) -> bool {
        let transmit = multicast_fanout(self, origin, frame, gso, out);
        for copy in out.iter() {
            match *copy {
                McCopy::Deliver(to) => {
                    if let Some(s) = self.slave_mut(to) {
                        s.counters.count_rx(frame.len(), true);
                    }
                }
                McCopy::Drop(to, reason) => {
                    if let Some(s) = self.slave_mut(to) {
                        s.counters.rx_dropped.add(reason);
                    }
                }
            }
        }
        if transmit {
            self.counters.tx_packets += 1;
            self.counters.tx_bytes += frame.len() as u64;
        }
        transmit
    }

    /// The master namespace could not route or send a slave's l3/l3s packet (R-STAT-3).
    pub fn record_tx_error(&mut self, from: SlaveId) {
        if let Some(s) = self.slave_mut(from) {
            s.counters.tx_errors += 1;
        }
    }

    /// A frame of `from`, `len` bytes, that [`Port::handle_tx`] counted as transmitted but that
    /// the I/O layer could not send on (the master or the host stack refused it): it moves
    /// from the sender's `tx_packets`/`tx_bytes` to its `tx_dropped` under `reason`
    /// (R-STAT-1: a transmit that did not succeed is a drop), so `link show -s` shows it.
    pub fn record_tx_drop(&mut self, from: SlaveId, reason: DropReason, len: usize) {
        if let Some(s) = self.slave_mut(from) {
            s.counters.uncount_tx(len);
            s.counters.tx_dropped.add(reason);
        }
    }

    /// A frame of `from` that [`Port::handle_tx`] decided to transmit out of the master
    /// (`TxAction::Transmit`, counted as the slave's and the port's transmit) but that the
    /// master refused (too long for it, down): the sender's drop, and neither transmit counts
    /// (R-STAT-1).
    pub fn record_transmit_drop(&mut self, from: SlaveId, reason: DropReason, len: usize) {
        self.counters.tx_packets = self.counters.tx_packets.saturating_sub(1);
        self.counters.tx_bytes = self.counters.tx_bytes.saturating_sub(len as u64);
        self.record_tx_drop(from, reason, len);
    }

    /// A frame delivered to a slave outside `handle_rx` (l3s, after the master's INPUT).
    pub fn record_rx(&mut self, to: SlaveId, len: usize) {
        if let Some(s) = self.slave_mut(to) {
            s.counters.count_rx(len, false);
        }
    }

    /// l3s ingress: a packet (as an Ethernet frame) that passed the master namespace's
    /// PREROUTING and INPUT for a slave address (R-RX-L3S-1). Returns the slave that owns its
    /// destination, with the frame counted as received by it, or `None` when no slave owns
    /// it any more (removed while the packet was in flight) or it is not IPv4/IPv6.
    pub fn handle_l3s_input(&mut self, frame: &[u8]) -> Option<SlaveId> {
        let dst: std::net::IpAddr = match crate::classify(frame).ok()?.l3 {
            crate::L3::Ipv4 { dst, .. } => dst.into(),
            crate::L3::Ipv6 { dst, .. } => dst.into(),
            _ => return None,
        };
        let to = self.lookup_rx(dst)?;
        self.record_rx(to, frame.len());
        Some(to)
    }

    /// A delivery the I/O layer could not complete (e.g. the slave's queue was full).
    pub fn record_rx_drop(&mut self, to: SlaveId, reason: DropReason) {
        if let Some(s) = self.slave_mut(to) {
            s.counters.rx_dropped.add(reason);
        }
    }
}
