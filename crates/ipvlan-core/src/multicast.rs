//! The L2 multicast/broadcast engine's state (spec §5): per-slave filters and the bounded
//! backlog. The backlog is drained by the caller (the kernel uses a work item); the fan-out
//! decision for each drained frame is [`crate::decide::multicast_fanout`], applied and counted by
//! [`crate::Port::handle_multicast`].

use std::collections::{HashSet, VecDeque};

use crate::slave_id::SlaveId;
use crate::wire::MacAddr;

/// Frames the backlog holds at most: `IPVLAN_QBACKLOG_LIMIT` in the kernel's
/// `drivers/net/ipvlan/ipvlan.h` (R-MC-1).
pub const BACKLOG_LIMIT: usize = 1000;

/// Where a queued multicast frame came from; decides who is skipped and whether it is sent out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McOrigin {
    /// Sent by this slave: every other slave gets a copy, then it leaves on the master.
    Slave(SlaveId),
    /// Received on the master: every slave may get a copy; the master already had its own.
    Wire,
}

/// Which multicast destinations a slave accepts (R-MC-3). The kernel uses a 256-bit hash with
/// false positives; an exact set is a conformant refinement. Broadcast is always accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McFilter {
    /// PROMISC or ALLMULTI: accept every group.
    pub all: bool,
    /// Groups on the slave's multicast list.
    pub groups: HashSet<MacAddr>,
}

impl McFilter {
    /// A filter that accepts every group (a slave whose list is not known yet).
    pub fn accept_all() -> McFilter {
        McFilter {
            all: true,
            groups: HashSet::new(),
        }
    }

    pub fn accepts(&self, dst: MacAddr) -> bool {
        self.all || dst.is_broadcast() || self.groups.contains(&dst)
    }
}

/// The backlog is full; the frame was not queued (R-STAT-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogFull;

/// The port's FIFO of multicast frames awaiting distribution, shared by both directions and
/// bounded at [`BACKLOG_LIMIT`] (R-MC-1). Generic over the buffer so the I/O layer can queue
/// pooled buffers.
#[derive(Debug)]
pub struct MulticastBacklog<B> {
    queue: VecDeque<(McOrigin, B)>,
    limit: usize,
}

impl<B> Default for MulticastBacklog<B> {
    fn default() -> Self {
        MulticastBacklog::with_limit(BACKLOG_LIMIT)
    }
}

impl<B> MulticastBacklog<B> {
    pub fn with_limit(limit: usize) -> MulticastBacklog<B> {
        MulticastBacklog {
            queue: VecDeque::new(),
            limit,
        }
    }

    /// Queues a frame while fewer than `limit` are waiting.
    pub fn push(&mut self, origin: McOrigin, frame: B) -> Result<(), (BacklogFull, B)> {
        if self.queue.len() >= self.limit {
            return Err((BacklogFull, frame));
        }
        self.queue.push_back((origin, frame));
        Ok(())
    }

    /// The oldest frame, in FIFO order.
    pub fn pop(&mut self) -> Option<(McOrigin, B)> {
        self.queue.pop_front()
    }

    /// Drops the frames a deleted slave sent (the kernel holds a device reference instead).
    pub fn forget_slave(&mut self, slave: SlaveId) {
        self.queue.retain(|(o, _)| *o != McOrigin::Slave(slave));
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_mc_1_backlog_is_bounded_at_1000_and_fifo() {
        let mut b = MulticastBacklog::default();
        for i in 0..BACKLOG_LIMIT {
            b.push(McOrigin::Wire, i).unwrap();
        }
        assert_eq!(b.push(McOrigin::Wire, 1000), Err((BacklogFull, 1000)));
        assert_eq!(b.len(), 1000);
        assert_eq!(b.pop(), Some((McOrigin::Wire, 0)));
        assert!(b.push(McOrigin::Wire, 1001).is_ok());
    }

    #[test]
    fn forget_slave_drops_its_frames_only() {
        let mut b = MulticastBacklog::with_limit(10);
        let s = SlaveId::from_raw(1);
        b.push(McOrigin::Slave(s), "a").unwrap();
        b.push(McOrigin::Wire, "b").unwrap();
        b.forget_slave(s);
        assert_eq!(b.pop(), Some((McOrigin::Wire, "b")));
        assert!(b.is_empty());
    }

    #[test]
    fn r_mc_3_filter() {
        let group = MacAddr([0x01, 0x00, 0x5e, 0x01, 0x01, 0x01]);
        let mut f = McFilter::default();
        assert!(f.accepts(MacAddr::BROADCAST));
        assert!(!f.accepts(group));
        f.groups.insert(group);
        assert!(f.accepts(group));
        assert!(McFilter::accept_all().accepts(MacAddr([0x33, 0x33, 0, 0, 0, 1])));
    }
}
