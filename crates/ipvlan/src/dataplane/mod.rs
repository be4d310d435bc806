//! The data plane: worker threads (one per CPU by default) wait on the master's packet socket
//! and the slaves' TAPs, ask the core what to do with each frame, and do it.
//!
//! The port (decisions, counters, backlog) sits behind one lock, held only while deciding; the
//! reads and writes, where the kernel does the receiving stack's work, happen outside it, so
//! the workers run in parallel. Each slave's TAP has one queue per worker, or one (see
//! `queues`); queue `q` of slave `id` is read by worker `(id + q) % workers`, and any worker may
//! write to it. Each worker
//! also has its own socket in the master's fanout group, which spreads wire traffic over the
//! workers by flow. The l3s sink is served by worker 0.

pub mod queues;

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ipvlan_core::decide::McCopy;
use ipvlan_core::offload::{complete_checksum, segment_tcp};
use ipvlan_core::wire::ethernet::HEADER_LEN;
use ipvlan_core::wire::{EthernetFrame, MacAddr};
use ipvlan_core::{
    classify, DropReason, McOrigin, MulticastBacklog, Port, RxAction, RxMeta, SlaveId, TxAction,
    TxMeta, L3,
};
use ipvlan_linux::host::HostStack;
use ipvlan_linux::vnet::{VnetHdr, HEADER_LEN as VNET};
use ipvlan_linux::{Epoll, EventFd, PacketSocket, PktType, Ready, SlaveDevice, Tap};
use tracing::{debug, warn};

/// Token of the stop eventfd.
const TOKEN_STOP: u64 = 0;
/// Token of the master socket.
const TOKEN_MASTER: u64 = 1;
/// Token of the l3s sink TAP.
const TOKEN_SINK: u64 = 2;
/// Slave tokens are this plus the queue number shifted by 16 plus the slave id.
const TOKEN_SLAVE: u64 = 1 << 32;
/// Frames read from one descriptor before looking at the others (fairness).
const BURST: usize = 64;
/// Multicast frames one worker distributes per wake-up. Each costs a write per slave, so an
/// unbounded drain lets one broadcast storm starve unicast; bounded, the backlog fills and its
/// 1000-frame limit drops (and counts) the excess instead (R-MC-1).
const MC_BURST: usize = 4;
/// Largest frame: a 64 KiB GSO packet plus headers and the vnet header.
const FRAME_MAX: usize = 65536 + 128;

/// What the workers and the control thread share, under one lock.
struct Shared {
    port: Port,
    backlog: MulticastBacklog<Vec<u8>>,
    devs: HashMap<SlaveId, Arc<Tap>>,
    /// l3s: the TAP the master namespace's INPUT hands slave packets to.
    sink: Option<Arc<Tap>>,
}

impl Shared {
    fn new(port: Port) -> Shared {
        Shared {
            port,
            backlog: MulticastBacklog::default(),
            devs: HashMap::new(),
            sink: None,
        }
    }
}

/// The core port, locked: what the control plane changes through [`DataPlane::port`].
pub struct PortGuard<'a>(MutexGuard<'a, Shared>);

impl std::ops::Deref for PortGuard<'_> {
    type Target = Port;
    fn deref(&self) -> &Port {
        &self.0.port
    }
}

impl std::ops::DerefMut for PortGuard<'_> {
    fn deref_mut(&mut self) -> &mut Port {
        &mut self.0.port
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves counters possibly half-updated, never unsafe.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A worker's sockets: its member of the master's fanout group, and the host stack's.
struct Io {
    master: PacketSocket,
    host: Arc<HostStack>,
}

/// Which worker this is, among how many.
#[derive(Clone, Copy)]
struct Me {
    index: usize,
    workers: usize,
}

impl Me {
    /// The queue of slave `id` this worker writes through: its own when the device has one per
    /// worker (the device wraps the number around when it has fewer).
    fn queue(self, id: SlaveId) -> usize {
        (self.index + self.workers - usize::from(id.get()) % self.workers) % self.workers
    }

    /// The worker that serves queue `q` of slave `id`.
    fn owner(id: SlaveId, q: usize, workers: usize) -> usize {
        (usize::from(id.get()) + q) % workers
    }
}

fn slave_token(id: SlaveId, q: usize) -> u64 {
    TOKEN_SLAVE + ((q as u64) << 16) + u64::from(id.get())
}

/// Running data-plane workers.
pub struct DataPlane {
    shared: Arc<Mutex<Shared>>,
    epolls: Vec<Arc<Epoll>>,
    stop: Arc<EventFd>,
    stopping: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Workers to start: one per CPU, at most 4, overridable with `IPVLAN_WORKERS`.
pub fn worker_count() -> usize {
    std::env::var("IPVLAN_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 4)
}

impl DataPlane {
    /// Starts a worker for each of the master's `sockets` (see [`PacketSocket::open_fanout`]).
    pub fn start(port: Port, sockets: Vec<PacketSocket>, host: HostStack) -> io::Result<DataPlane> {
        let shared = Arc::new(Mutex::new(Shared::new(port)));
        let stop = Arc::new(EventFd::new()?);
        let stopping = Arc::new(AtomicBool::new(false));
        let host = Arc::new(host);
        let workers = sockets.len();
        if workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a data plane needs at least one master socket",
            ));
        }
        let mut dp = DataPlane {
            shared,
            epolls: Vec::new(),
            stop,
            stopping,
            threads: Vec::new(),
        };
        for (w, master) in sockets.into_iter().enumerate() {
            let epoll = Arc::new(Epoll::new()?);
            epoll.add(dp.stop.fd(), TOKEN_STOP)?;
            epoll.add(master.poll_fd(), TOKEN_MASTER)?;
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
                        run(&s, &e, &st, &io, me)
                    })?,
            );
            dp.epolls.push(epoll);
        }
        Ok(dp)
    }

    /// The core port, locked. Hold the guard only to decide: every worker waits on it.
    pub fn port(&self) -> PortGuard<'_> {
        PortGuard(lock(&self.shared))
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.epolls.len()
    }

    fn epoll_for(&self, id: SlaveId, q: usize) -> &Epoll {
        &self.epolls[Me::owner(id, q, self.epolls.len())]
    }

    /// Starts serving a slave's device.
    pub fn add_slave(&self, id: SlaveId, dev: Arc<Tap>) -> io::Result<()> {
        lock(&self.shared).devs.insert(id, dev.clone());
        for q in 0..dev.queues() {
            if let Err(e) = self
                .epoll_for(id, q)
                .add(dev.poll_fd(q), slave_token(id, q))
            {
                self.remove_slave(id);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops serving a slave; returns its device.
    pub fn remove_slave(&self, id: SlaveId) -> Option<Arc<Tap>> {
        let dev = {
            let mut sh = lock(&self.shared);
            sh.backlog.forget_slave(id);
            sh.devs.remove(&id)
        };
        if let Some(d) = &dev {
            for q in 0..d.queues() {
                self.epoll_for(id, q).delete(d.poll_fd(q));
            }
        }
        dev
    }

    /// Starts or stops reading the l3s sink.
    pub fn set_sink(&self, sink: Option<Arc<Tap>>) -> io::Result<()> {
        let old = lock(&self.shared).sink.take();
        if let Some(o) = old {
            self.epolls[0].delete(o.poll_fd(0));
        }
        if let Some(s) = &sink {
            self.epolls[0].add(s.poll_fd(0), TOKEN_SINK)?;
        }
        lock(&self.shared).sink = sink;
        Ok(())
    }

    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop.signal(); // never drained: wakes every worker
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Mutex<Shared>, epoll: &Epoll, stopping: &AtomicBool, io: &Io, me: Me) {
    let mut ready = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    let mut copies = Vec::new();
    let mut pending = false;
    while !stopping.load(Ordering::SeqCst) {
        // Multicast still queued: look at the descriptors without sleeping, then go on with it.
        if let Err(e) = epoll.wait(&mut ready, if pending { 0 } else { 1000 }) {
            warn!("data plane: epoll failed: {e}");
            return;
        }
        for Ready { token, error } in ready.iter().copied() {
            match token {
                TOKEN_STOP => return,
                TOKEN_MASTER => from_master(shared, io, me, &mut buf),
                TOKEN_SINK => from_sink(shared, me, &mut buf),
                t => {
                    let t = t - TOKEN_SLAVE;
                    let id = SlaveId::from_raw((t & 0xffff) as u16);
                    from_slave(
                        shared,
                        epoll,
                        io,
                        me,
                        (id, (t >> 16) as usize),
                        error,
                        &mut buf,
                    );
                }
            }
        }
        pending = drain_multicast(shared, io, me, &mut copies);
    }
}

/// Where a decided frame goes, resolved under the lock, written after it.
enum Out {
    None,
    Slave(SlaveId, Arc<Tap>),
    Master(MacAddr),
    Host { routed: bool },
}

/// The device of slave `to`, or a counted drop.
fn target(sh: &mut Shared, to: SlaveId) -> Out {
    match sh.devs.get(&to) {
        Some(d) => Out::Slave(to, d.clone()),
        None => {
            sh.port.record_rx_drop(to, DropReason::ReceiverDown);
            Out::None
        }
    }
}

fn from_master(shared: &Mutex<Shared>, io: &Io, me: Me, buf: &mut [u8]) {
    for _ in 0..BURST {
        let (n, pkttype) = match io.master.recv(buf) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                warn!("master receive failed: {e}");
                return;
            }
        };
        if pkttype == PktType::Outgoing || n > buf.len() || n < VNET {
            continue;
        }
        // `whole` is what travels (vnet header + frame); the core judges the frame.
        let whole = &buf[..n];
        let meta = RxMeta {
            looped_back: pkttype == PktType::Loopback,
        };
        let out = {
            let mut sh = lock(shared);
            match sh.port.handle_rx(&whole[VNET..], meta) {
                RxAction::Deliver(to) => target(&mut sh, to),
                RxAction::PassAndMulticast => {
                    let Shared { port, backlog, .. } = &mut *sh;
                    port.queue_multicast(backlog, McOrigin::Wire, whole.to_vec());
                    Out::None
                }
                // l3s: the master's stack routes it through INPUT to the sink (`from_sink`).
                RxAction::DeliverViaHost(_) | RxAction::Pass | RxAction::Drop { .. } => Out::None,
            }
        };
        if let Out::Slave(to, dev) = out {
            deliver(shared, me, to, &dev, whole);
        }
    }
}

fn from_slave(
    shared: &Mutex<Shared>,
    epoll: &Epoll,
    io: &Io,
    me: Me,
    (from, queue): (SlaveId, usize),
    error: bool,
    buf: &mut [u8],
) {
    let Some(dev) = lock(shared).devs.get(&from).cloned() else {
        return;
    };
    for _ in 0..BURST {
        let n = match dev.recv(queue, buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // The device is gone (its namespace was deleted): stop polling it; the control
                // thread notices and removes the slave.
                if error || e.raw_os_error() == Some(libc::EBADFD) {
                    debug!("slave {from}: device gone ({e})");
                    epoll.delete(dev.poll_fd(queue));
                }
                return;
            }
        };
        if n < VNET {
            continue;
        }
        let whole = &mut buf[..n];
        let meta = TxMeta {
            gso: VnetHdr::parse(whole).is_gso(),
            from: Some(from),
        };
        let out = {
            let mut sh = lock(shared);
            match sh.port.handle_tx(from, &whole[VNET..], meta) {
                TxAction::Deliver(to) => target(&mut sh, to),
                TxAction::Transmit { src_mac } => Out::Master(src_mac),
                TxAction::ToHost => Out::Host { routed: false },
                TxAction::Route { .. } => Out::Host { routed: true },
                TxAction::Multicast => {
                    let Shared { port, backlog, .. } = &mut *sh;
                    port.queue_multicast(backlog, McOrigin::Slave(from), whole.to_vec());
                    Out::None
                }
                TxAction::Drop { .. } => Out::None,
            }
        };
        match out {
            Out::None => {}
            Out::Slave(to, d) => deliver(shared, me, to, &d, whole),
            Out::Master(mac) => transmit(shared, io, whole, mac),
            Out::Host { routed } => to_host(shared, io, from, whole, routed),
        }
    }
}

/// l3s: packets that passed the master namespace's INPUT, copied to the sink by `dup`.
fn from_sink(shared: &Mutex<Shared>, me: Me, buf: &mut [u8]) {
    let Some(sink) = lock(shared).sink.clone() else {
        return;
    };
    for _ in 0..BURST {
        let n = match sink.recv(0, buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        if n < VNET + HEADER_LEN {
            continue;
        }
        ipvlan_linux::l3s::restore_hop_limit(&mut buf[VNET + HEADER_LEN..n]);
        let dst: Option<IpAddr> = classify(&buf[VNET..n]).ok().and_then(|c| match c.l3 {
            L3::Ipv4 { dst, .. } => Some(dst.into()),
            L3::Ipv6 { dst, .. } => Some(dst.into()),
            _ => None,
        });
        let out = {
            let mut sh = lock(shared);
            match dst.and_then(|d| sh.port.lookup(d)) {
                Some(to) => {
                    sh.port.record_rx(to, n - VNET);
                    let mac = sh.port.master().mac;
                    (target(&mut sh, to), mac)
                }
                None => continue,
            }
        };
        if let (Out::Slave(to, dev), mac) = out {
            if let Some(mut eth) = EthernetFrame::new_checked(&mut buf[VNET..n]) {
                eth.set_dst(mac);
                eth.set_src(mac);
            }
            deliver(shared, me, to, &dev, &buf[..n]);
        }
    }
}

/// Counts a drop that belongs to no slave in particular (the port's counters).
fn count_drop(shared: &Mutex<Shared>, reason: DropReason) {
    lock(shared).port.counters.dropped.add(reason);
}

/// Writes vnet header + frame to a slave through this worker's queue; a refused write is
/// counted on it.
fn deliver(shared: &Mutex<Shared>, me: Me, to: SlaveId, dev: &Tap, frame: &[u8]) {
    if let Err(e) = dev.send(me.queue(to), frame) {
        let reason = if e.kind() == io::ErrorKind::WouldBlock {
            DropReason::QueueFull
        } else {
            DropReason::ReceiverDown
        };
        lock(shared).port.record_rx_drop(to, reason);
    }
}

/// Sends vnet header + frame out of the master, with `src_mac` as the Ethernet source.
fn transmit(shared: &Mutex<Shared>, io: &Io, frame: &mut [u8], src_mac: MacAddr) {
    if let Some(mut eth) = frame.get_mut(VNET..).and_then(EthernetFrame::new_checked) {
        eth.set_src(src_mac);
    }
    if let Err(e) = io.master.send(frame) {
        debug!("master transmit failed: {e}");
        count_drop(shared, DropReason::QueueFull);
    }
}

/// Hands the IP packet inside `whole` (vnet header + frame) to the master namespace's stack,
/// finishing a partial checksum or segmenting a TCP super-frame first (a raw socket takes only
/// complete packets that fit the MTU). `routed` (l3/l3s) counts failures as the sender's
/// tx_errors (R-STAT-3).
fn to_host(shared: &Mutex<Shared>, io: &Io, from: SlaveId, whole: &mut [u8], routed: bool) {
    let hdr = VnetHdr::parse(whole);
    let frame = &mut whole[VNET..];
    let dst: Option<IpAddr> = classify(frame).ok().and_then(|c| match c.l3 {
        L3::Ipv4 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        L3::Ipv6 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        _ => None,
    });
    let Some(dst) = dst else {
        count_drop(shared, DropReason::HostNotIp);
        return;
    };
    let packet = &mut frame[HEADER_LEN..];
    let mut failed = false;
    let mut send = |p: &[u8]| {
        if let Err(e) = io.host.send(p, dst) {
            debug!("handing a packet to the host stack failed: {e}");
            failed = true;
        }
    };
    if hdr.is_gso() {
        if segment_tcp(packet, usize::from(hdr.gso_size), &mut send).is_err() {
            failed = true;
        }
    } else {
        if hdr.needs_csum() {
            let start = usize::from(hdr.csum_start).saturating_sub(HEADER_LEN);
            if complete_checksum(packet, start, usize::from(hdr.csum_offset)).is_err() {
                count_drop(shared, DropReason::MalformedIp);
                return;
            }
        }
        send(packet);
    }
    if failed {
        if routed {
            lock(shared).port.record_tx_error(from);
        } else {
            count_drop(shared, DropReason::QueueFull);
        }
    }
}

/// Distributes up to `MC_BURST` queued multicast frames, one at a time: who gets a copy is
/// decided under the lock, the copies are written after it. Returns whether frames remain.
fn drain_multicast(shared: &Mutex<Shared>, io: &Io, me: Me, copies: &mut Vec<McCopy>) -> bool {
    for _ in 0..MC_BURST {
        let (mut frame, targets, out_mac) = {
            let mut sh = lock(shared);
            let Some((origin, frame)) = sh.backlog.pop() else {
                return false;
            };
            let Some(eth) = frame.get(VNET..) else {
                continue;
            };
            let gso = VnetHdr::parse(&frame).is_gso();
            let out = sh.port.handle_multicast(origin, eth, gso, copies);
            let targets: Vec<(SlaveId, Arc<Tap>)> = copies
                .iter()
                .filter_map(|c| match *c {
                    McCopy::Deliver(to) => sh.devs.get(&to).map(|d| (to, d.clone())),
                    McCopy::Drop(..) => None,
                })
                .collect();
            (frame, targets, out.then(|| sh.port.master().mac))
        };
        for (to, dev) in &targets {
            deliver(shared, me, *to, dev, &frame);
        }
        if let Some(mac) = out_mac {
            transmit(shared, io, &mut frame, mac);
        }
    }
    !lock(shared).backlog.is_empty()
}
