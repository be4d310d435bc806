//! The data plane: worker threads (one per CPU by default) wait on the master's packet socket
//! and the slaves' TAPs, ask the core what to do with each frame, and do it.
//!
//! The port (decisions, counters, backlog) sits behind one lock, held only while deciding; the
//! reads and writes, where the kernel does the receiving stack's work, happen outside it, so
//! the workers run in parallel. Each slave's TAP has one queue per worker, or one (see
//! [`crate::backend::tap`]); queue `q` of slave `id` is read by worker `(id + q) % workers`, and any worker
//! may write to it. Each worker also has its own socket in the master's fanout group, which
//! spreads wire traffic over the workers by flow. The l3s sink is served by worker 0.
//!
//! - this file: the [`DataPlane`] handle (start and stop the workers, register slaves in their
//!   epolls) and the device traits the workers are generic over;
//! - `worker`: the worker loop and the path of one frame, rx → decide → tx;
//!
//! The workers see devices only through [`SlaveIo`], [`MasterIo`] and [`HostIo`], implemented
//! here for [`Tap`], [`PacketSocket`] and [`HostStack`]; the unit tests run them on in-memory
//! devices (`testing`).

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ipvlan_core::{MulticastBacklog, Port, SlaveId};
use ipvlan_linux::host::HostStack;
use ipvlan_linux::{Epoll, EventFd, PacketSocket, PktType, Tap};

pub(crate) use worker::client_id_warning;
use worker::{worker_loop, Io, Me, Token};

/// A slave's device as the workers use it: frames (each prefixed by a 10-byte virtio-net
/// header, `ipvlan_linux::vnet`) in and out of its queues, and a descriptor per queue to poll.
/// Queue numbers wrap around: queue `q` of a device with `n` queues is queue `q % n`.
///
/// Hot-path I/O returns `io::Result`: `WouldBlock` means "nothing to read" or "queue full".
pub trait SlaveIo: Send + Sync {
    /// How many queues the device has (at least one).
    fn queues(&self) -> usize;
    /// Reads one frame the slave transmitted on `queue` into `buf`; returns its length.
    /// `WouldBlock` when none is waiting.
    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize>;
    /// Delivers one frame to the slave through `queue`; returns the bytes written.
    /// `WouldBlock` when the queue is full.
    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize>;
    /// The descriptor of `queue`, readable when a frame waits.
    fn poll_fd(&self, queue: usize) -> RawFd;
}

impl SlaveIo for Tap {
    fn queues(&self) -> usize {
        Tap::queues(self)
    }
    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        Tap::recv(self, queue, buf)
    }
    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize> {
        Tap::send(self, queue, frame)
    }
    fn poll_fd(&self, queue: usize) -> RawFd {
        Tap::poll_fd(self, queue)
    }
}

/// The master as one worker uses it: its member of the fanout group. Frames carry the 10-byte
/// virtio-net header, as on the slaves.
pub trait MasterIo: Send {
    /// Reads one frame received (or looped back) on the master into `buf`: its length and
    /// packet type. `WouldBlock` when none is waiting.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PktType)>;
    /// Sends one frame out of the master; returns the bytes written.
    fn send(&self, frame: &[u8]) -> io::Result<usize>;
    /// The descriptor to poll for readability.
    fn poll_fd(&self) -> RawFd;
    /// Frames the kernel dropped before they could be read (a full receive buffer), since the
    /// last call.
    fn take_drops(&self) -> u32 {
        0
    }
}

impl MasterIo for PacketSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, PktType)> {
        PacketSocket::recv(self, buf)
    }
    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        PacketSocket::send(self, frame)
    }
    fn poll_fd(&self) -> RawFd {
        PacketSocket::poll_fd(self)
    }
    fn take_drops(&self) -> u32 {
        PacketSocket::take_drops(self).unwrap_or(0)
    }
}

/// The master namespace's IP stack, which slaves' packets enter in L2 local misses and l3/l3s
/// egress.
pub trait HostIo: Send + Sync {
    /// Hands one complete IPv4 or IPv6 packet (header included, no Ethernet header, at most
    /// the MTU) to the stack, addressed to `dst`; returns the bytes written.
    fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize>;
    /// The source address the stack picks towards `to` (see [`HostStack::source_for`]);
    /// `None` when it has no route there.
    fn source_for(&self, to: IpAddr) -> Option<IpAddr>;
    /// Sends a packet the master's namespace originates (see [`HostStack::send_unpinned`]).
    fn send_answer(&self, packet: &[u8], to: IpAddr) -> io::Result<usize>;
}

impl HostIo for HostStack {
    fn send(&self, packet: &[u8], dst: IpAddr) -> io::Result<usize> {
        HostStack::send(self, packet, dst)
    }

    fn source_for(&self, to: IpAddr) -> Option<IpAddr> {
        HostStack::source_for(self, to).ok()
    }

    fn send_answer(&self, packet: &[u8], to: IpAddr) -> io::Result<usize> {
        HostStack::send_unpinned(self, packet, to)
    }
}

/// What the workers and the control thread share, under one lock.
struct Shared<D> {
    port: Port,
    /// Queued multicast frames: vnet header + frame, with their origin.
    backlog: MulticastBacklog<Vec<u8>>,
    devs: HashMap<SlaveId, Arc<D>>,
    /// l3s: the TAP the master namespace's INPUT hands slave packets to.
    sink: Option<Arc<D>>,
    /// Slaves whose device is in the master's own namespace: what the host routes to them
    /// may be a packet the daemon just handed it (a routing loop).
    local: std::collections::HashSet<SlaveId>,
    /// Fingerprints of the packets recently handed to the host for routing (l3/l3s), kept
    /// while a local slave exists.
    routed: worker::RecentPackets,
    /// Bounds the ICMP errors sent for l3/l3s egress too big for the master.
    answers: ipvlan_core::pmtu::AnswerLimiter,
    /// The client identifiers of the slaves' DHCP requests, for the shared-lease warning.
    client_ids: ipvlan_core::dhcp::ClientIdWatch,
}

impl<D> Shared<D> {
    fn new(port: Port) -> Shared<D> {
        Shared {
            port,
            backlog: MulticastBacklog::default(),
            devs: HashMap::new(),
            sink: None,
            local: std::collections::HashSet::new(),
            routed: worker::RecentPackets::default(),
            answers: ipvlan_core::pmtu::AnswerLimiter::default(),
            client_ids: ipvlan_core::dhcp::ClientIdWatch::default(),
        }
    }
}

/// The core port, locked: what the control plane changes through [`DataPlane::port`]. Every
/// worker waits while it is held.
pub struct PortGuard<'a, D = Tap>(MutexGuard<'a, Shared<D>>);

impl<D> std::ops::Deref for PortGuard<'_, D> {
    type Target = Port;
    fn deref(&self) -> &Port {
        &self.0.port
    }
}

impl<D> std::ops::DerefMut for PortGuard<'_, D> {
    fn deref_mut(&mut self) -> &mut Port {
        &mut self.0.port
    }
}

/// Locks the shared state, recovering it from a poisoned lock: a panic while holding it leaves
/// counters possibly half-updated, never unsafe.
fn lock<D>(shared: &Mutex<Shared<D>>) -> MutexGuard<'_, Shared<D>> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Running data-plane workers of one port: `D` is the slaves' device, `M` the master's socket,
/// `H` the host stack (the defaults are the real ones; the tests use in-memory devices).
pub struct DataPlane<D = Tap, M = PacketSocket, H = HostStack> {
    shared: Arc<Mutex<Shared<D>>>,
    epolls: Vec<Arc<Epoll>>,
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The master sockets and the host stack belong to the worker threads, not to the handle.
    _io: std::marker::PhantomData<fn() -> (M, H)>,
}

/// Workers to start: one per CPU, at most 4, overridable with `IPVLAN_WORKERS` (clamped to
/// 1..=4).
pub fn worker_count() -> usize {
    std::env::var("IPVLAN_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 4)
}

impl<D: SlaveIo + 'static> DataPlane<D> {
    /// Starts a worker thread for each of the master's `sockets` (see
    /// [`PacketSocket::open_fanout`]), sharing `host`, for slaves whose devices are `D`.
    /// Errors: `InvalidInput` without sockets; the OS error if an epoll, the stop eventfd or a
    /// thread cannot be made.
    pub fn start(
        port: Port,
        sockets: Vec<PacketSocket>,
        host: HostStack,
    ) -> io::Result<DataPlane<D>> {
        DataPlane::start_on(port, sockets, host)
    }
}

impl<D, M, H> DataPlane<D, M, H>
where
    D: SlaveIo + 'static,
    M: MasterIo + 'static,
    H: HostIo + 'static,
{
    /// [`DataPlane::start`] on any devices.
    fn start_on(port: Port, masters: Vec<M>, host: H) -> io::Result<DataPlane<D, M, H>> {
        let workers = masters.len();
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a data plane needs at least one master socket",
            ));
        }
        let host = Arc::new(host);
        let mut dp = DataPlane {
            shared: Arc::new(Mutex::new(Shared::new(port))),
            epolls: Vec::new(),
            stop: Arc::new(EventFd::new()?),
            stopping: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            _io: std::marker::PhantomData,
        };
        for (w, master) in masters.into_iter().enumerate() {
            let epoll = Arc::new(Epoll::new()?);
            epoll.add(dp.stop.fd(), Token::Stop.encode())?;
            epoll.add(master.poll_fd(), Token::Master.encode())?;
            let io = Io {
                master,
                host: host.clone(),
            };
            let (s, e, st) = (dp.shared.clone(), epoll.clone(), dp.stopping.clone());
            dp.threads.push(
                std::thread::Builder::new()
                    .name(format!("ipvlan-dp{w}"))
                    .spawn(move || {
                        let me = Me { index: w, workers };
                        worker_loop(&s, &e, &st, &io, me)
                    })?,
            );
            dp.epolls.push(epoll);
        }
        Ok(dp)
    }

    fn epoll_for(&self, id: SlaveId, q: usize) -> &Epoll {
        &self.epolls[Me::owner(id, q, self.epolls.len())]
    }

    /// Starts serving a slave's device: each queue joins the epoll of the worker that reads it.
    /// Errors: the OS error of the registration; nothing stays registered then.
    pub fn add_slave(&self, id: SlaveId, dev: Arc<D>) -> io::Result<()> {
        lock(&self.shared).devs.insert(id, dev.clone());
        for q in 0..dev.queues() {
            let token = Token::Slave { id, queue: q }.encode();
            if let Err(e) = self.epoll_for(id, q).add(dev.poll_fd(q), token) {
                self.remove_slave(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops serving a slave and forgets its queued multicast frames; returns its device
    /// (`None` if it was not served).
    pub fn remove_slave(&self, id: SlaveId) -> Option<Arc<D>> {
        let dev = {
            let mut sh = lock(&self.shared);
            sh.backlog.forget_slave(id);
            sh.local.remove(&id);
            sh.client_ids.forget_slave(id);
            sh.devs.remove(&id)
        };
        if let Some(d) = &dev {
            for q in 0..d.queues() {
                self.epoll_for(id, q).delete(d.poll_fd(q));
            }
        }
        dev
    }

    /// Starts (`Some`) or stops (`None`) reading the l3s sink, on worker 0. Errors: the OS
    /// error of the registration.
    pub fn set_sink(&self, sink: Option<Arc<D>>) -> io::Result<()> {
        let old = lock(&self.shared).sink.take();
        if let Some(o) = old {
            self.epolls[0].delete(o.poll_fd(0));
        }
        if let Some(s) = &sink {
            self.epolls[0].add(s.poll_fd(0), Token::Sink.encode())?;
        }
        lock(&self.shared).sink = sink;
        Ok(())
    }
}

impl<D, M, H> DataPlane<D, M, H> {
    /// Whether slave `id`'s device is in the master's own namespace (see `Shared::local`).
    pub fn set_local(&self, id: SlaveId, local: bool) {
        let mut sh = lock(&self.shared);
        if local {
            sh.local.insert(id);
        } else {
            sh.local.remove(&id);
        }
    }

    /// The core port, locked. Hold the guard only to decide: every worker waits on it.
    pub fn port(&self) -> PortGuard<'_, D> {
        PortGuard(lock(&self.shared))
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.epolls.len()
    }

    /// Stops the workers and waits for them. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.signal(); // never drained: wakes every worker
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<D, M, H> Drop for DataPlane<D, M, H> {
    fn drop(&mut self) {
        self.stop();
    }
}
