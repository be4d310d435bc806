//! One data-plane thread per port: it waits on the master's packet socket and every slave's TAP,
//! asks the core what to do with each frame, and does it.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
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
/// Slave tokens are this plus the slave id.
const TOKEN_SLAVE: u64 = 0x1_0000;
/// Frames read from one descriptor before looking at the others (fairness).
const BURST: usize = 64;
/// Largest frame: a 64 KiB GSO packet plus headers and the vnet header.
const FRAME_MAX: usize = 65536 + 128;

/// What the data plane and the control thread share, under one lock.
pub struct Shared {
    pub port: Port,
    pub backlog: MulticastBacklog<Vec<u8>>,
    pub devs: HashMap<SlaveId, Arc<Tap>>,
    /// l3s: the TAP the master namespace's INPUT hands slave packets to.
    pub sink: Option<Arc<Tap>>,
}

impl Shared {
    pub fn new(port: Port) -> Shared {
        Shared {
            port,
            backlog: MulticastBacklog::default(),
            devs: HashMap::new(),
            sink: None,
        }
    }
}

pub fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves counters possibly half-updated, never unsafe.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running data-plane thread.
pub struct DataPlane {
    pub shared: Arc<Mutex<Shared>>,
    epoll: Arc<Epoll>,
    stop: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

struct Io {
    master: PacketSocket,
    host: HostStack,
}

impl DataPlane {
    pub fn start(
        shared: Arc<Mutex<Shared>>,
        master: PacketSocket,
        host: HostStack,
    ) -> io::Result<DataPlane> {
        let epoll = Arc::new(Epoll::new()?);
        let stop = Arc::new(EventFd::new()?);
        epoll.add(stop.fd(), TOKEN_STOP)?;
        epoll.add(master.poll_fd(), TOKEN_MASTER)?;
        let (s, e, st) = (shared.clone(), epoll.clone(), stop.clone());
        let io = Io { master, host };
        let thread = std::thread::Builder::new()
            .name("ipvlan-dataplane".into())
            .spawn(move || run(&s, &e, &st, &io))?;
        Ok(DataPlane {
            shared,
            epoll,
            stop,
            thread: Some(thread),
        })
    }

    /// Starts serving a slave's device.
    pub fn add_slave(&self, id: SlaveId, dev: Arc<Tap>) -> io::Result<()> {
        self.epoll
            .add(dev.poll_fd(), TOKEN_SLAVE + u64::from(id.get()))?;
        lock(&self.shared).devs.insert(id, dev);
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
            self.epoll.delete(d.poll_fd());
        }
        dev
    }

    /// Starts or stops reading the l3s sink.
    pub fn set_sink(&self, sink: Option<Arc<Tap>>) -> io::Result<()> {
        let old = lock(&self.shared).sink.take();
        if let Some(o) = old {
            self.epoll.delete(o.poll_fd());
        }
        if let Some(s) = &sink {
            self.epoll.add(s.poll_fd(), TOKEN_SINK)?;
        }
        lock(&self.shared).sink = sink;
        Ok(())
    }

    pub fn stop(&mut self) {
        self.stop.signal();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Mutex<Shared>, epoll: &Epoll, stop: &EventFd, io: &Io) {
    let mut ready = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    let mut copies = Vec::new();
    loop {
        if let Err(e) = epoll.wait(&mut ready, 1000) {
            warn!("data plane: epoll failed: {e}");
            return;
        }
        for Ready { token, error } in ready.iter().copied() {
            match token {
                TOKEN_STOP => {
                    stop.drain();
                    return;
                }
                TOKEN_MASTER => from_master(shared, io, &mut buf),
                TOKEN_SINK => from_sink(shared, &mut buf),
                t => {
                    let Ok(raw) = u16::try_from(t - TOKEN_SLAVE) else {
                        continue;
                    };
                    from_slave(shared, epoll, io, SlaveId::from_raw(raw), error, &mut buf);
                }
            }
        }
        drain_multicast(shared, io, &mut copies);
    }
}

fn from_master(shared: &Mutex<Shared>, io: &Io, buf: &mut [u8]) {
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
        // `whole` is what travels (vnet header + frame); `frame` is what the core judges.
        let whole = &buf[..n];
        let frame = &whole[VNET..];
        let mut sh = lock(shared);
        let meta = RxMeta {
            looped_back: pkttype == PktType::Loopback,
        };
        match sh.port.handle_rx(frame, meta) {
            RxAction::Deliver(to) => deliver(&mut sh, to, whole),
            // l3s: the master's stack routes it through INPUT to the sink (`from_sink`).
            RxAction::DeliverViaHost(_) => {}
            RxAction::PassAndMulticast => {
                let Shared { port, backlog, .. } = &mut *sh;
                port.queue_multicast(backlog, McOrigin::Wire, whole.to_vec());
            }
            RxAction::Pass | RxAction::Drop { .. } => {}
        }
    }
}

fn from_slave(
    shared: &Mutex<Shared>,
    epoll: &Epoll,
    io: &Io,
    from: SlaveId,
    error: bool,
    buf: &mut [u8],
) {
    let Some(dev) = lock(shared).devs.get(&from).cloned() else {
        return;
    };
    for _ in 0..BURST {
        let n = match dev.recv(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // The device is gone (its namespace was deleted): stop polling it; the control
                // thread notices and removes the slave.
                if error || e.raw_os_error() == Some(libc::EBADFD) {
                    debug!("slave {from}: device gone ({e})");
                    epoll.delete(dev.poll_fd());
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
        };
        let mut sh = lock(shared);
        match sh.port.handle_tx(from, &whole[VNET..], meta) {
            TxAction::Deliver(to) => deliver(&mut sh, to, whole),
            TxAction::Transmit { src_mac } => transmit(io, &mut sh, whole, src_mac),
            TxAction::ToHost => to_host(io, &mut sh, from, whole, false),
            TxAction::Route { .. } => to_host(io, &mut sh, from, whole, true),
            TxAction::Multicast => {
                let Shared { port, backlog, .. } = &mut *sh;
                port.queue_multicast(backlog, McOrigin::Slave(from), whole.to_vec());
            }
            TxAction::Drop { .. } => {}
        }
    }
}

/// l3s: packets that passed the master namespace's INPUT, copied to the sink by `dup`.
fn from_sink(shared: &Mutex<Shared>, buf: &mut [u8]) {
    let Some(sink) = lock(shared).sink.clone() else {
        return;
    };
    for _ in 0..BURST {
        let n = match sink.recv(buf) {
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
        let mut sh = lock(shared);
        let Some(to) = dst.and_then(|d| sh.port.lookup(d)) else {
            continue;
        };
        let mac = sh.port.master().mac;
        if let Some(mut eth) = EthernetFrame::new_checked(&mut buf[VNET..n]) {
            eth.set_dst(mac);
            eth.set_src(mac);
        }
        sh.port.record_rx(to, n - VNET);
        deliver(&mut sh, to, &buf[..n]);
    }
}

/// Writes vnet header + frame to a slave.
fn deliver(sh: &mut Shared, to: SlaveId, frame: &[u8]) {
    let Some(dev) = sh.devs.get(&to) else {
        sh.port.record_rx_drop(to, DropReason::ReceiverDown);
        return;
    };
    if let Err(e) = dev.send(frame) {
        let reason = if e.kind() == io::ErrorKind::WouldBlock {
            DropReason::QueueFull
        } else {
            DropReason::ReceiverDown
        };
        sh.port.record_rx_drop(to, reason);
    }
}

/// Sends vnet header + frame out of the master, with `src_mac` as the Ethernet source.
fn transmit(io: &Io, sh: &mut Shared, frame: &mut [u8], src_mac: MacAddr) {
    if let Some(mut eth) = frame.get_mut(VNET..).and_then(EthernetFrame::new_checked) {
        eth.set_src(src_mac);
    }
    if let Err(e) = io.master.send(frame) {
        debug!("master transmit failed: {e}");
        sh.port.counters.dropped.add(DropReason::QueueFull);
    }
}

/// Hands the IP packet inside `whole` (vnet header + frame) to the master namespace's stack,
/// finishing a partial checksum or segmenting a TCP super-frame first (a raw socket takes only
/// complete packets that fit the MTU). `routed` (l3/l3s) counts failures as the sender's
/// tx_errors (R-STAT-3).
fn to_host(io: &Io, sh: &mut Shared, from: SlaveId, whole: &mut [u8], routed: bool) {
    let hdr = VnetHdr::parse(whole);
    let frame = &mut whole[VNET..];
    let dst: Option<IpAddr> = classify(frame).ok().and_then(|c| match c.l3 {
        L3::Ipv4 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        L3::Ipv6 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        _ => None,
    });
    let Some(dst) = dst else {
        sh.port.counters.dropped.add(DropReason::HostNotIp);
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
                sh.port.counters.dropped.add(DropReason::MalformedIp);
                return;
            }
        }
        send(packet);
    }
    if failed {
        if routed {
            sh.port.record_tx_error(from);
        } else {
            sh.port.counters.dropped.add(DropReason::QueueFull);
        }
    }
}

fn drain_multicast(shared: &Mutex<Shared>, io: &Io, copies: &mut Vec<McCopy>) {
    let mut sh = lock(shared);
    while let Some((origin, mut frame)) = sh.backlog.pop() {
        let Some(eth) = frame.get(VNET..) else {
            continue;
        };
        let gso = VnetHdr::parse(&frame).is_gso();
        let out = sh.port.handle_multicast(origin, eth, gso, copies);
        for c in copies.iter() {
            if let McCopy::Deliver(to) = *c {
                deliver(&mut sh, to, &frame);
            }
        }
        if out {
            let mac = sh.port.master().mac;
            transmit(io, &mut sh, &mut frame, mac);
        }
    }
}
