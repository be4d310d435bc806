//! In-memory devices for the unit tests: a slave, a master socket and a host stack that keep
//! what is written to them and hand out what a test injected. Each queue has an eventfd that is
//! readable while frames wait, so the devices also work under the workers' real epolls.

use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use ipvlan_linux::{EventFd, PktType};

use super::{HostIo, MasterIo, SlaveIo};

/// Frames waiting to be read, readable through an eventfd while there are any.
struct Inbox<T> {
    wake: EventFd,
    waiting: Mutex<VecDeque<T>>,
}

impl<T> Inbox<T> {
    fn new() -> Inbox<T> {
        Inbox {
            wake: EventFd::new().expect("eventfd"),
            waiting: Mutex::new(VecDeque::new()),
        }
    }

    fn push(&self, item: T) {
        let mut w = self.waiting.lock().unwrap();
        w.push_back(item);
        self.wake.signal();
    }

    /// The next item, or `WouldBlock` (and the eventfd quiet) when there is none.
    fn pop(&self) -> io::Result<T> {
        let mut w = self.waiting.lock().unwrap();
        match w.pop_front() {
            Some(item) => Ok(item),
            None => {
                self.wake.drain();
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }
}

/// Copies `frame` into `buf` as a read would (truncated to `buf`), returning its length.
fn copy_out(frame: &[u8], buf: &mut [u8]) -> usize {
    let n = frame.len().min(buf.len());
    buf[..n].copy_from_slice(&frame[..n]);
    n
}

/// A slave with `n` queues: frames its stack "transmits" are injected with [`MemSlave::inject`],
/// frames delivered to it are kept per queue.
pub(super) struct MemSlave {
    inboxes: Vec<Inbox<Vec<u8>>>,
    /// What was written, with the queue it was written through (already wrapped around).
    written: Mutex<Vec<(usize, Vec<u8>)>>,
    /// Writes fail with this errno (EAGAIN: a full queue).
    refuse: Mutex<Option<i32>>,
    /// Reads fail with this errno (EBADFD: the device is gone).
    broken: Mutex<Option<i32>>,
}

impl MemSlave {
    pub(super) fn new(queues: usize) -> Arc<MemSlave> {
        Arc::new(MemSlave {
            inboxes: (0..queues).map(|_| Inbox::new()).collect(),
            written: Mutex::new(Vec::new()),
            refuse: Mutex::new(None),
            broken: Mutex::new(None),
        })
    }

    /// The slave's stack transmits `frame` (vnet header + frame) on `queue`.
    pub(super) fn inject(&self, queue: usize, frame: &[u8]) {
        self.inboxes[queue].push(frame.to_vec());
    }

    /// Everything written to the slave so far: (queue, vnet header + frame).
    pub(super) fn written(&self) -> Vec<(usize, Vec<u8>)> {
        self.written.lock().unwrap().clone()
    }

    /// From now on writes fail with `errno` (`None`: they succeed again).
    pub(super) fn refuse_writes(&self, errno: Option<i32>) {
        *self.refuse.lock().unwrap() = errno;
    }

    /// From now on reads fail with `errno`, as on a TAP whose device was deleted.
    pub(super) fn break_reads(&self, errno: i32) {
        *self.broken.lock().unwrap() = Some(errno);
    }
}

impl SlaveIo for MemSlave {
    fn queues(&self) -> usize {
        self.inboxes.len()
    }

    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(errno) = *self.broken.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let frame = self.inboxes[queue % self.inboxes.len()].pop()?;
        Ok(copy_out(&frame, buf))
    }

    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize> {
        if let Some(errno) = *self.refuse.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let q = queue % self.inboxes.len();
        self.written.lock().unwrap().push((q, frame.to_vec()));
        Ok(frame.len())
    }

    fn poll_fd(&self, queue: usize) -> RawFd {
        self.inboxes[queue % self.inboxes.len()].wake.fd()
    }
}

struct MasterInner {
    inbox: Inbox<(Vec<u8>, PktType)>,
    sent: Mutex<Vec<Vec<u8>>>,
    /// Sends fail with this errno (a frame too long for the device, say).
    refuse: Mutex<Option<i32>>,
    /// Frames "the kernel" dropped, reported (and reset) by `take_drops`.
    drops: Mutex<u32>,
}

/// A master socket; clones share it (a test keeps one, a worker owns another).
#[derive(Clone)]
pub(super) struct MemMaster(Arc<MasterInner>);

impl MemMaster {
    pub(super) fn new() -> MemMaster {
        MemMaster(Arc::new(MasterInner {
            inbox: Inbox::new(),
            sent: Mutex::new(Vec::new()),
            refuse: Mutex::new(None),
            drops: Mutex::new(0),
        }))
    }

    /// `frame` (vnet header + frame) arrives from the wire with packet type `pkttype`.
    pub(super) fn inject(&self, frame: &[u8], pkttype: PktType) {
        self.0.inbox.push((frame.to_vec(), pkttype));
    }

    /// From now on sends fail with `errno`.
    pub(super) fn refuse(&self, errno: i32) {
        *self.0.refuse.lock().unwrap() = Some(errno);
    }

    /// The socket's receive buffer overflowed: `n` more frames were dropped.
    pub(super) fn overflow(&self, n: u32) {
        *self.0.drops.lock().unwrap() += n;
    }

    /// Everything sent out of the master so far (vnet header + frame).
    pub(super) fn sent(&self) -> Vec<Vec<u8>> {
        self.0.sent.lock().unwrap().clone()
    }
}

impl MasterIo for MemMaster {
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PktType)> {
        let (frame, pkttype) = self.0.inbox.pop()?;
        Ok((copy_out(&frame, buf), pkttype))
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        if let Some(errno) = *self.0.refuse.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.0.sent.lock().unwrap().push(frame.to_vec());
        Ok(frame.len())
    }

    fn poll_fd(&self) -> RawFd {
        self.0.inbox.wake.fd()
    }

    fn take_drops(&self) -> u32 {
        std::mem::take(&mut *self.0.drops.lock().unwrap())
    }
}

/// A packet handed to the host stack, with its destination.
type HostPacket = (Vec<u8>, IpAddr);

/// A host stack; clones share it.
#[derive(Clone, Default)]
pub(super) struct MemHost(Arc<HostInner>);

#[derive(Default)]
struct HostInner {
    sent: Mutex<Vec<HostPacket>>,
    /// Sends fail with this errno (no route, say).
    refuse: Mutex<Option<i32>>,
    /// Packets longer than this fail with `EMSGSIZE`, as a raw socket refuses what exceeds
    /// the device MTU.
    mtu: Mutex<Option<usize>>,
}

impl MemHost {
    /// From now on sends fail with `errno`.
    pub(super) fn refuse(&self, errno: i32) {
        *self.0.refuse.lock().unwrap() = Some(errno);
    }

    /// From now on packets longer than `mtu` fail with `EMSGSIZE`.
    pub(super) fn set_mtu(&self, mtu: usize) {
        *self.0.mtu.lock().unwrap() = Some(mtu);
    }

    /// Every packet handed to the stack so far, with its destination.
    pub(super) fn sent(&self) -> Vec<HostPacket> {
        self.0.sent.lock().unwrap().clone()
    }
}

impl HostIo for MemHost {
    fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        if let Some(errno) = *self.0.refuse.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if self.0.mtu.lock().unwrap().is_some_and(|m| packet.len() > m) {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        self.0.sent.lock().unwrap().push((packet.to_vec(), dst));
        Ok(packet.len())
    }

    fn send_answer(&self, packet: &[u8], to: IpAddr) -> io::Result<usize> {
        self.send(packet, to)
    }

    fn source_for(&self, to: IpAddr) -> Option<IpAddr> {
        // The master namespace's addresses of `frames`' test topology.
        match to {
            IpAddr::V4(_) => Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1))),
            IpAddr::V6(_) => "2001:db8:1::1".parse().ok(),
        }
    }
}
