//! One worker: its loop, and the path of a frame through it, top-down as it travels: read
//! (`from_master`, `from_slave`, `from_sink`), decided by the core under the lock, then written
//! (`deliver`, `transmit`, `to_host`, and `drain_multicast` for the copies of queued multicast).
//!
//! Every frame is read into the worker's one buffer and written from it: the path does not
//! allocate, except to queue a multicast frame.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ipvlan_core::decide::{DropSite, McCopy};
use ipvlan_core::dhcp::ClientIdProblem;
use ipvlan_core::identity::assert_master_identity;
use ipvlan_core::offload::{complete_checksum, segment_tcp};
use ipvlan_core::pmtu::{self, TooBig};
use ipvlan_core::wire::ethernet::HEADER_LEN;
use ipvlan_core::wire::{EthernetFrame, MacAddr};
use ipvlan_core::{
    classify, DropReason, McOrigin, RxAction, RxMeta, SlaveId, TxAction, TxMeta, L3,
};
use ipvlan_linux::vnet::{VnetHdr, HEADER_LEN as VNET};
use ipvlan_linux::{Epoll, PktType, Ready};
use tracing::{debug, warn};

use super::{lock, HostIo, MasterIo, Shared, SlaveIo};
use crate::monitor::{Direction, DropEvent, HUB};

/// Frames read from one descriptor before looking at the others (fairness).
const BURST: usize = 64;
/// Multicast frames one worker distributes per wake-up. Each costs a write per slave, so an
/// unbounded drain lets one broadcast storm starve unicast; bounded, the backlog fills and its
/// 1000-frame limit drops (and counts) the excess instead (R-MC-1).
pub(super) const MC_BURST: usize = 4;
/// Largest frame: a 64 KiB GSO packet plus headers and the vnet header.
pub(super) const FRAME_MAX: usize = 65536 + 128;

/// What woke a worker: the 64-bit data word of its epoll registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// The stop eventfd.
    Stop,
    /// This worker's master socket.
    Master,
    /// The l3s sink TAP (worker 0 only).
    Sink,
    /// Queue `queue` (below 2^16) of slave `id`.
    Slave { id: SlaveId, queue: usize },
}

/// Slave tokens have this bit set, the queue in bits 16..32 and the id in bits 0..16.
const SLAVE_BIT: u64 = 1 << 32;

impl Token {
    /// The data word to register. A slave's queue number must be below 2^16 (devices have at
    /// most 4).
    pub(super) fn encode(self) -> u64 {
        match self {
            Token::Stop => 0,
            Token::Master => 1,
            Token::Sink => 2,
            Token::Slave { id, queue } => {
                debug_assert!(queue <= 0xffff, "queue {queue} does not fit a token");
                SLAVE_BIT | ((queue as u64 & 0xffff) << 16) | u64::from(id.get())
            }
        }
    }

    /// The token a data word was made from; `None` for a word no [`Token::encode`] makes.
    pub(super) fn decode(word: u64) -> Option<Token> {
        match word {
            0 => Some(Token::Stop),
            1 => Some(Token::Master),
            2 => Some(Token::Sink),
            w if w >> 32 == 1 => Some(Token::Slave {
                id: SlaveId::from_raw((w & 0xffff) as u16),
                queue: ((w >> 16) & 0xffff) as usize,
            }),
            _ => None,
        }
    }
}

/// A worker's sockets: its member of the master's fanout group, and the host stack (shared).
pub(super) struct Io<M, H> {
    pub(super) master: M,
    pub(super) host: Arc<H>,
}

/// Which worker this is (`index`), among how many (`workers`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Me {
    pub(super) index: usize,
    pub(super) workers: usize,
}

impl Me {
    /// The queue of slave `id` this worker writes through: the one it reads, when the device
    /// has a queue per worker, so `Me::owner(id, me.queue(id), workers) == me.index`; a device
    /// with fewer queues wraps the number around.
    pub(super) fn queue(self, id: SlaveId) -> usize {
        (self.index + self.workers - usize::from(id.get()) % self.workers) % self.workers
    }

    /// The worker that reads queue `q` of slave `id`.
    pub(super) fn owner(id: SlaveId, q: usize, workers: usize) -> usize {
        (usize::from(id.get()) + q) % workers
    }
}

/// A worker's life: wait on its epoll, serve what woke it, distribute queued multicast; until
/// `stopping` is set (and the stop eventfd wakes it) or its epoll fails.
pub(super) fn worker_loop<D: SlaveIo, M: MasterIo, H: HostIo>(
    shared: &Mutex<Shared<D>>,
    epoll: &Epoll,
    stopping: &AtomicBool,
    io: &Io<M, H>,
    me: Me,
) {
    let mut ready = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    let mut copies = Vec::new();
    let mut pending = false;
    let mut stats_read = std::time::Instant::now();
    while !stopping.load(Ordering::SeqCst) {
        // Multicast still queued: look at the descriptors without sleeping, then go on with it.
        if let Err(e) = epoll.wait(&mut ready, if pending { 0 } else { 1000 }) {
            warn!("data plane: epoll failed: {e}");
            return;
        }
        for Ready { token, error } in ready.iter().copied() {
            match Token::decode(token) {
                Some(Token::Stop) => return,
                Some(Token::Master) => from_master(shared, io, me, &mut buf),
                Some(Token::Sink) => from_sink(shared, me, &mut buf),
                Some(Token::Slave { id, queue }) => {
                    from_slave(shared, epoll, io, me, (id, queue), error, &mut buf)
                }
                None => debug!("data plane: unknown epoll token {token:#x}"),
            }
        }
        pending = drain_multicast(shared, io, me, &mut copies);
        if stats_read.elapsed() >= STATS_EVERY {
            count_socket_drops(shared, io);
            stats_read = std::time::Instant::now();
        }
    }
}

/// How often a worker reads its master socket's drop count (a system call).
const STATS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Adds the frames the kernel dropped on this worker's master socket (its receive buffer was
/// full) to the port's drops, as `rx_overflow`: they never reached the daemon, so no slave is
/// charged, but they are counted.
pub(super) fn count_socket_drops<D, M: MasterIo, H>(shared: &Mutex<Shared<D>>, io: &Io<M, H>) {
    let n = io.master.take_drops();
    if n > 0 {
        lock(shared)
            .port
            .counters
            .dropped
            .add_n(DropReason::RxOverflow, u64::from(n));
    }
}

// ------------------------------------------------------------ rx: reading a frame

/// Frames from the wire: up to `BURST` read from this worker's master socket into `buf`
/// (vnet header + frame), each decided by `Port::handle_rx` and delivered or queued.
pub(super) fn from_master<D: SlaveIo, M: MasterIo, H: HostIo>(
    shared: &Mutex<Shared<D>>,
    io: &Io<M, H>,
    me: Me,
    buf: &mut [u8],
) {
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
            now: now_ns(),
        };
        let out = {
            let mut sh = lock(shared);
            match sh.port.handle_rx(&whole[VNET..], meta) {
                // A unicast DHCP reply steered by its xid is delivered like any claimed frame.
                RxAction::Deliver(to) | RxAction::Steer(to) => target(&mut sh, to, &whole[VNET..]),
                RxAction::PassAndMulticast => {
                    let Shared { port, backlog, .. } = &mut *sh;
                    if !port.queue_multicast(backlog, McOrigin::Wire, whole.to_vec()) {
                        watch(
                            &sh,
                            Direction::Port,
                            None,
                            DropReason::BacklogFull,
                            &whole[VNET..],
                        );
                    }
                    Out::None
                }
                RxAction::Drop { reason } => {
                    watch(&sh, Direction::Port, None, reason, &whole[VNET..]);
                    Out::None
                }
                // l3s: the master's stack routes it through INPUT to the sink (`from_sink`).
                RxAction::DeliverViaHost(_) | RxAction::Pass => Out::None,
            }
        };
        if let Out::Slave(to, dev) = out {
            deliver(shared, me, to, &*dev, whole);
        }
    }
}

/// Frames a slave transmitted: up to `BURST` read from queue `queue` of slave `from` into `buf`,
/// each decided by `Port::handle_tx` and written to a slave, the wire or the host stack, or
/// queued as multicast. `error`: epoll reported an error or hang-up on the queue; with a failed
/// read, the queue is taken out of `epoll` (the device is gone).
pub(super) fn from_slave<D: SlaveIo, M: MasterIo, H: HostIo>(
    shared: &Mutex<Shared<D>>,
    epoll: &Epoll,
    io: &Io<M, H>,
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
                // thread notices and removes the slave. A veth host end that went down reports
                // ENETDOWN once on its packet socket, which reads again once it is up.
                let down = e.raw_os_error() == Some(libc::ENETDOWN);
                if (error || e.raw_os_error() == Some(libc::EBADFD)) && !down {
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
        let hdr = VnetHdr::parse(whole);
        let meta = TxMeta {
            gso: hdr.is_gso(),
            from: Some(from),
            now: now_ns(),
        };
        let out = {
            let mut sh = lock(shared);
            // Whatever it wrote, a slave's frame asserts only the master's L2 identity: in the
            // Ethernet header and inside ARP and NDP (`ipvlan_core::identity`).
            let mac = sh.port.master().mac;
            // But a frame of an ipvtap guest with another source MAC is dropped as such
            // (`foreign_source_mac`, core `decide_tx`): the rewrite would hide it.
            let guarded = sh.port.slave(from).is_some_and(|s| s.mac_guard());
            if !(guarded && whole.get(VNET + 6..VNET + 12).is_some_and(|m| m != mac.0)) {
                assert_master_identity(&mut whole[VNET..], mac, hdr.needs_csum());
            }
            match sh.port.handle_tx(from, &whole[VNET..], meta) {
                TxAction::Deliver(to) => target(&mut sh, to, &whole[VNET..]),
                TxAction::Transmit { src_mac } => Out::Master(src_mac),
                TxAction::ToHost => Out::Host { routed: false },
                TxAction::Route { .. } => routed_or_loop(&mut sh, from, &whole[VNET..]),
                TxAction::Multicast => {
                    let Shared { port, backlog, .. } = &mut *sh;
                    if !port.queue_multicast(backlog, McOrigin::Slave(from), whole.to_vec()) {
                        // Counted as the sender's rx_dropped (R-STAT-4).
                        let f = &whole[VNET..];
                        watch(&sh, Direction::Rx, Some(from), DropReason::BacklogFull, f);
                    }
                    Out::None
                }
                TxAction::Drop { reason, site } => {
                    let (dir, who) = match site {
                        DropSite::Sender => (Direction::Tx, Some(from)),
                        DropSite::Receiver(to) => (Direction::Rx, Some(to)),
                        DropSite::Master => (Direction::Port, None),
                    };
                    watch(&sh, dir, who, reason, &whole[VNET..]);
                    Out::None
                }
            }
        };
        dhcp_client_id_check(shared, from, &whole[VNET..], meta.now);
        match out {
            Out::None => {}
            Out::Slave(to, d) => deliver(shared, me, to, &*d, whole),
            Out::Master(mac) => transmit(shared, io, whole, mac, Some(from)),
            Out::Host { routed } => to_host(shared, io, from, whole, routed),
        }
    }
}

/// Nanoseconds of the data plane's monotonic clock ([`CLOCK`]): the `now` of the core's
/// DHCP transaction table.
pub(super) fn now_ns() -> u64 {
    CLOCK.elapsed().as_nanos() as u64
}

/// Warns (at most once per slave every `ipvlan_core::dhcp::WARN_EVERY_NS`) when a slave's
/// DHCP client asks for a lease without a client identifier (option 61), or with the one
/// another slave's client used: the server would see the master's MAC, or the same id, from
/// both, and give them one lease (`ipvlan_core::dhcp::ClientIdWatch`, docs/dhcp.md).
fn dhcp_client_id_check<D>(shared: &Mutex<Shared<D>>, from: SlaveId, frame: &[u8], now: u64) {
    let Some(msg) = ipvlan_core::dhcp::parse(frame) else {
        return;
    };
    let text = {
        let mut sh = lock(shared);
        if sh.port.mode() != ipvlan_core::Mode::L2 {
            return; // l3/l3s slaves cannot get a lease by broadcast at all (docs/dhcp.md)
        }
        let Some(problem) = sh.client_ids.check(from, &msg, now) else {
            return;
        };
        client_id_warning(&sh.port, from, &problem)
    };
    warn!("{text}");
}

/// The warning about slave `from`'s DHCP client identifier (`problem`), naming the slaves
/// and the fix; shared by both data paths.
pub(crate) fn client_id_warning(
    port: &ipvlan_core::Port,
    from: SlaveId,
    problem: &ClientIdProblem,
) -> String {
    let name = |id: SlaveId| {
        port.slave(id)
            .map_or_else(|| id.to_string(), |s| s.name().to_string())
    };
    let what = match problem {
        ClientIdProblem::Missing => "sends no client identifier (DHCP option 61)".to_string(),
        ClientIdProblem::SameAs { other } => format!(
            "sends the same client identifier (DHCP option 61) as slave {}",
            name(*other)
        ),
    };
    {
        format!(
            "slave {}: its DHCP client {what}; all slaves share the master's MAC, so the \
             server may give them one lease. Give each slave's client its own id: udhcpc -x \
             0x3d:<hex>, dhclient 'send dhcp-client-identifier \"<id>\";', systemd-networkd \
             ClientIdentifier=duid (see docs/dhcp.md)",
            name(from)
        )
    }
}

/// l3s: packets that passed the master namespace's INPUT, copied to the sink by `dup`: up to
/// `BURST`, each delivered to the slave owning its destination address with the master's MAC
/// as both Ethernet addresses.
pub(super) fn from_sink<D: SlaveIo>(shared: &Mutex<Shared<D>>, me: Me, buf: &mut [u8]) {
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
        let out = {
            let mut sh = lock(shared);
            match sh.port.handle_l3s_input(&buf[VNET..n]) {
                Some(to) => {
                    let mac = sh.port.master().mac;
                    (target(&mut sh, to, &buf[VNET..n]), mac)
                }
                None => continue,
            }
        };
        if let (Out::Slave(to, dev), mac) = out {
            if let Some(mut eth) = EthernetFrame::new_checked(&mut buf[VNET..n]) {
                eth.set_dst(mac);
                eth.set_src(mac);
            }
            deliver(shared, me, to, &*dev, &buf[..n]);
        }
    }
}

// ------------------------------------------------------------ decided: where it goes

/// How many routed packets' fingerprints are kept, and for how long.
const RECENT: usize = 256;
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Fingerprints of the packets recently handed to the host for routing.
pub(super) struct RecentPackets {
    seen: Vec<(u64, std::time::Instant)>,
    next: usize,
}

impl Default for RecentPackets {
    fn default() -> RecentPackets {
        RecentPackets {
            seen: Vec::with_capacity(RECENT),
            next: 0,
        }
    }
}

impl RecentPackets {
    fn record(&mut self, fp: u64) {
        let now = std::time::Instant::now();
        if self.seen.len() < RECENT {
            self.seen.push((fp, now));
        } else {
            self.seen[self.next] = (fp, now);
            self.next = (self.next + 1) % RECENT;
        }
    }

    fn contains(&self, fp: u64) -> bool {
        self.seen
            .iter()
            .any(|(f, at)| *f == fp && at.elapsed() < RECENT_FOR)
    }
}

/// FNV-1a over the IP packet inside an Ethernet frame (its first 128 bytes): the same packet
/// coming back unchanged has the same fingerprint (local output keeps TTL and hop limit).
fn fingerprint(frame: &[u8]) -> u64 {
    let packet = frame.get(HEADER_LEN..).unwrap_or(&[]);
    packet
        .iter()
        .take(128)
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// An l3/l3s packet for the master namespace's routing (R-TX-L3-3) — unless it is one the
/// daemon handed the host a moment ago, back from a slave in that namespace: the host routed
/// it there, and handing it over again would loop forever (the kernel's nested-transmit limit
/// ends such a loop). That is dropped on the sender as `routing_loop`. Fingerprints are kept
/// only while a slave lives in the master's namespace.
fn routed_or_loop<D>(sh: &mut Shared<D>, from: SlaveId, frame: &[u8]) -> Out<D> {
    if sh.local.is_empty() {
        return Out::Host { routed: true };
    }
    let fp = fingerprint(frame);
    if sh.local.contains(&from) && sh.routed.contains(fp) {
        sh.port
            .record_tx_drop(from, DropReason::RoutingLoop, frame.len());
        watch(
            sh,
            Direction::Tx,
            Some(from),
            DropReason::RoutingLoop,
            frame,
        );
        return Out::None;
    }
    sh.routed.record(fp);
    Out::Host { routed: true }
}

/// Where a decided frame goes, resolved under the lock, written after it.
enum Out<D> {
    None,
    Slave(SlaveId, Arc<D>),
    Master(MacAddr),
    Host { routed: bool },
}

/// The device of slave `to`, or a counted drop (`receiver_down`) of `frame`.
fn target<D>(sh: &mut Shared<D>, to: SlaveId, frame: &[u8]) -> Out<D> {
    match sh.devs.get(&to) {
        Some(d) => Out::Slave(to, d.clone()),
        None => {
            sh.port.record_rx_drop(to, DropReason::ReceiverDown);
            watch(sh, Direction::Rx, Some(to), DropReason::ReceiverDown, frame);
            Out::None
        }
    }
}

/// Offers a drop of `frame` (Ethernet header on) charged to slave `who` (the master when
/// `None`) to the drop monitor: one relaxed atomic load while nobody watches.
#[inline]
fn watch<D>(
    sh: &Shared<D>,
    dir: Direction,
    who: Option<SlaveId>,
    reason: DropReason,
    frame: &[u8],
) {
    if !HUB.active() {
        return;
    }
    HUB.offer(|| {
        let master = sh.port.master().name.as_str();
        let dev = who
            .and_then(|id| sh.port.slave(id))
            .map_or(master, |s| s.name().as_str());
        DropEvent::now(master, dev, dir, reason, frame)
    });
}

// ------------------------------------------------------------ tx: writing it

/// Writes `frame` (vnet header + frame) to slave `to` through this worker's queue
/// ([`Me::queue`]). A refused write is counted on the receiver: `queue_full` for
/// `WouldBlock`, `receiver_down` for any other error.
pub(super) fn deliver<D: SlaveIo>(
    shared: &Mutex<Shared<D>>,
    me: Me,
    to: SlaveId,
    dev: &D,
    frame: &[u8],
) {
    if let Err(e) = dev.send(me.queue(to), frame) {
        let reason = if e.kind() == io::ErrorKind::WouldBlock {
            DropReason::QueueFull
        } else {
            DropReason::ReceiverDown
        };
        let mut sh = lock(shared);
        sh.port.record_rx_drop(to, reason);
        let f = frame.get(VNET..).unwrap_or_default();
        watch(&sh, Direction::Rx, Some(to), reason, f);
    }
}

/// Sends `frame` (vnet header + frame) out of the master, with `src_mac` as the Ethernet
/// source. A refused send is counted on the sender `from` (the port when none) with the
/// reason of [`send_failure`].
pub(super) fn transmit<D, M: MasterIo, H>(
    shared: &Mutex<Shared<D>>,
    io: &Io<M, H>,
    frame: &mut [u8],
    src_mac: MacAddr,
    from: Option<SlaveId>,
) {
    if let Some(mut eth) = frame.get_mut(VNET..).and_then(EthernetFrame::new_checked) {
        eth.set_src(src_mac);
    }
    if let Err(e) = io.master.send(frame) {
        debug!("master transmit failed: {e}");
        let reason = send_failure(&e);
        let f = frame.get(VNET..).unwrap_or_default();
        let mut sh = lock(shared);
        match from {
            Some(from) => {
                sh.port.record_transmit_drop(from, reason, f.len());
                watch(&sh, Direction::Tx, Some(from), reason, f);
            }
            None => {
                sh.port.counters.dropped.add(reason);
                watch(&sh, Direction::Port, None, reason, f);
            }
        }
    }
}

/// Why the kernel refused to send a frame: `mtu_exceeded` for a frame longer than the device
/// takes (`EMSGSIZE`, e.g. a slave whose MTU is above the master's), `receiver_down` when the
/// device is down or gone, `queue_full` otherwise (a full socket buffer, `ENOBUFS`).
pub(super) fn send_failure(e: &io::Error) -> DropReason {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => DropReason::MtuExceeded,
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV) => DropReason::ReceiverDown,
        _ => DropReason::QueueFull,
    }
}

/// Hands the IP packet inside `whole` (vnet header + frame) to the master namespace's stack,
/// finishing a partial checksum or segmenting a TCP super-frame first (a raw socket takes only
/// complete packets that fit the MTU). A frame without an untagged IP packet is counted as
/// the sender's drop `host_not_ip`, a bad checksum position `malformed_ip`. A failed send is
/// counted as the sender's tx_errors when `routed` (l3/l3s, R-STAT-3), else as its drop with
/// the reason of [`send_failure`].
pub(super) fn to_host<D, M, H: HostIo>(
    shared: &Mutex<Shared<D>>,
    io: &Io<M, H>,
    from: SlaveId,
    whole: &mut [u8],
    routed: bool,
) {
    let hdr = VnetHdr::parse(whole);
    let frame = &mut whole[VNET..];
    let dst: Option<IpAddr> = classify(frame).ok().and_then(|c| match c.l3 {
        L3::Ipv4 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        L3::Ipv6 { dst, .. } if c.vlan.is_none() => Some(dst.into()),
        _ => None,
    });
    let Some(dst) = dst else {
        let mut sh = lock(shared);
        sh.port
            .record_tx_drop(from, DropReason::HostNotIp, frame.len());
        watch(&sh, Direction::Tx, Some(from), DropReason::HostNotIp, frame);
        return;
    };
    let packet = &mut frame[HEADER_LEN..];
    let mut failed = None;
    // Packets (a super-frame's segments, each) refused as too long (EMSGSIZE): by the raw
    // socket itself when longer than the device MTU, or by the stack's output, which then
    // answered the sender itself. Rare: copied.
    let mut refused: Vec<Vec<u8>> = Vec::new();
    let mut send = |p: &[u8]| {
        if let Err(e) = io.host.send(p, dst) {
            if routed && e.raw_os_error() == Some(libc::EMSGSIZE) {
                refused.push(p.to_vec());
                return;
            }
            debug!("handing a packet to the host stack failed: {e}");
            failed = Some(send_failure(&e));
        }
    };
    if hdr.is_gso() {
        if segment_tcp(packet, usize::from(hdr.gso_size), &mut send).is_err() {
            failed = Some(DropReason::MalformedIp);
        }
    } else {
        if hdr.needs_csum() {
            let start = usize::from(hdr.csum_start).saturating_sub(HEADER_LEN);
            if complete_checksum(packet, start, usize::from(hdr.csum_offset)).is_err() {
                let len = packet.len() + HEADER_LEN;
                let mut sh = lock(shared);
                sh.port.record_tx_drop(from, DropReason::MalformedIp, len);
                let f = whole.get(VNET..).unwrap_or_default();
                watch(&sh, Direction::Tx, Some(from), DropReason::MalformedIp, f);
                return;
            }
        }
        send(packet);
    }
    if !refused.is_empty() {
        let mtu = lock(shared).port.master().mtu;
        for p in &refused {
            // Longer than the master's MTU: the raw socket refused what the kernel's local
            // output would fragment or answer. Shorter: the stack refused and answered it.
            let sent = p.len() > mtu as usize && local_output_too_big(shared, io, p, dst, mtu);
            if !sent {
                failed = Some(DropReason::MtuExceeded);
            }
        }
    }
    if let Some(reason) = failed {
        if routed {
            lock(shared).port.record_tx_error(from);
        } else {
            let len = packet.len() + HEADER_LEN;
            let mut sh = lock(shared);
            sh.port.record_tx_drop(from, reason, len);
            let f = whole.get(VNET..).unwrap_or_default();
            watch(&sh, Direction::Tx, Some(from), reason, f);
        }
    }
}

/// l3/l3s egress longer than the master's MTU, done as the master namespace's local output
/// does it (`ipvlan_core::pmtu`, R-TX-L3-3): IPv4 without DF is sent in fragments that fit;
/// IPv4 with DF and IPv6 get an ICMP "fragmentation needed" / "Packet Too Big" with the
/// master's MTU, sent into the master's namespace towards the sender (so it reaches the slave
/// only where that namespace routes back to it, as the kernel's does), at most
/// [`AnswerLimiter::RATE`](ipvlan_core::pmtu::AnswerLimiter::RATE) a second per port.
/// `packet` is the IP packet (a TCP super-frame's segments are each answered alike). Returns
/// whether the packet went out (fragmented); an answered or dropped one is the sender's
/// `tx_errors`, as the kernel counts a failed `ip_local_out`.
fn local_output_too_big<D, M, H: HostIo>(
    shared: &Mutex<Shared<D>>,
    io: &Io<M, H>,
    packet: &[u8],
    dst: IpAddr,
    mtu: u32,
) -> bool {
    match pmtu::too_big(packet) {
        TooBig::Fragment => {
            let mut ok = true;
            let r = pmtu::fragment_ipv4(packet, mtu as usize, |f| {
                if let Err(e) = io.host.send(f, dst) {
                    debug!("handing a fragment to the host stack failed: {e}");
                    ok = false;
                }
            });
            r.is_ok() && ok
        }
        TooBig::Answer { to } => {
            let now = CLOCK.elapsed().as_nanos() as u64;
            if !lock(shared).answers.admit(now) {
                return false;
            }
            let answer = io
                .host
                .source_for(to)
                .and_then(|src| pmtu::too_big_answer(packet, mtu, src));
            if let Some(a) = answer {
                if let Err(e) = io.host.send_answer(&a, to) {
                    debug!("sending a too-big answer to {to} failed: {e}");
                }
            }
            false
        }
        TooBig::Drop => false,
    }
}

/// The monotonic origin of [`local_output_too_big`]'s rate limit.
static CLOCK: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

/// Distributes up to `MC_BURST` queued multicast frames, one at a time: who gets a copy is
/// decided under the lock, the copies are written after it (`copies` is scratch space).
/// Returns whether frames remain.
pub(super) fn drain_multicast<D: SlaveIo, M: MasterIo, H>(
    shared: &Mutex<Shared<D>>,
    io: &Io<M, H>,
    me: Me,
    copies: &mut Vec<McCopy>,
) -> bool {
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
            let targets: Vec<(SlaveId, Arc<D>)> = copies
                .iter()
                .filter_map(|c| match *c {
                    McCopy::Deliver(to) => sh.devs.get(&to).map(|d| (to, d.clone())),
                    McCopy::Drop(to, reason) => {
                        watch(&sh, Direction::Rx, Some(to), reason, eth);
                        None
                    }
                })
                .collect();
            (frame, targets, out.then(|| sh.port.master().mac))
        };
        for (to, dev) in &targets {
            deliver(shared, me, *to, &**dev, &frame);
        }
        if let Some(mac) = out_mac {
            // A frame handed to the backlog counted as sent (R-STAT-1): a later refusal is the
            // port's.
            transmit(shared, io, &mut frame, mac, None);
        }
    }
    !lock(shared).backlog.is_empty()
}
