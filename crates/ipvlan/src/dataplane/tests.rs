//! The data plane on in-memory devices (`testing`), without root: the per-frame functions of
//! `worker` called directly, and whole workers started by `DataPlane`. Fixture as the core's
//! (spec §11.1 F-L2): master `m0` with MAC 02:00:00:00:00:01, slaves s1, s2, s3
//! (192.0.2.11, .12, .13), all up, in mode l2 bridge.
//!
//! Length: one test per behaviour of the worker, each self-contained; splitting them by direction
//! would scatter the shared fixture, hence over 500 lines.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipvlan_core::decide::McCopy;
use ipvlan_core::frames::{
    ethernet, ipv4_frame, ipv4_multicast, ipv4_packet, v4, EXT_MAC, MASTER_MAC,
};
use ipvlan_core::offload::GSO_TCPV4;
use ipvlan_core::wire::ethernet::ethertype;
use ipvlan_core::{
    DropReason, Flag, IfName, LinkTypeArgs, MacAddr, Master, McOrigin, Mode, NewSlave, Port,
    SlaveCounters, SlaveId,
};
use ipvlan_linux::{Epoll, EventFd, PktType, Ready};

use super::testing::{MemHost, MemMaster, MemSlave};
use super::worker::{
    drain_multicast, from_master, from_sink, from_slave, Io, Me, Token, FRAME_MAX, MC_BURST,
};
use super::{DataPlane, Shared, SlaveIo};

const M: MacAddr = MASTER_MAC;
/// A MAC no device has: what a slave may forge as its source.
const FORGED: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
/// An address of the master's network that no slave owns.
const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EAGAIN: i32 = libc::EAGAIN;

/// Worker 1 of 4: its queue differs from the slaves' queue 0, which shows which one a write
/// went through.
const ME: Me = Me {
    index: 1,
    workers: 4,
};

fn slave_addr(n: usize) -> Ipv4Addr {
    v4(192, 0, 2, 10 + n as u8)
}

/// A port in mode l2 bridge with `n` slaves s1..sn, up, with their addresses.
fn port_with(n: usize) -> (Port, Vec<SlaveId>) {
    port_in(Mode::L2, n)
}

/// A port in `mode` (flag bridge) with `n` slaves s1..sn, up, with their addresses.
fn port_in(mode: Mode, n: usize) -> (Port, Vec<SlaveId>) {
    let mut port = Port::new(Master {
        name: IfName::new("m0").unwrap(),
        mac: M,
        mtu: 1500,
    });
    let args = LinkTypeArgs {
        mode: Some(mode),
        flag: Some(Flag::Bridge),
    };
    let ids = (1..=n)
        .map(|i| {
            let name = IfName::new(&format!("s{i}")).unwrap();
            let id = port.add_slave(NewSlave::new(name, args)).unwrap().id;
            port.set_slave_up(id, true).unwrap();
            port.add_address(id, slave_addr(i).into()).unwrap();
            id
        })
        .collect();
    (port, ids)
}

/// One worker's view: the shared state with `n` in-memory slaves of 4 queues, its master
/// socket and the host stack.
struct Fx {
    shared: Mutex<Shared<MemSlave>>,
    ids: Vec<SlaveId>,
    devs: Vec<Arc<MemSlave>>,
    master: MemMaster,
    host: MemHost,
    io: Io<MemMaster, MemHost>,
    epoll: Epoll,
    buf: Vec<u8>,
}

impl Fx {
    fn new(n: usize) -> Fx {
        Fx::in_mode(Mode::L2, n)
    }

    fn in_mode(mode: Mode, n: usize) -> Fx {
        let (port, ids) = port_in(mode, n);
        let mut shared = Shared::new(port);
        let devs: Vec<_> = ids.iter().map(|_| MemSlave::new(4)).collect();
        for (id, d) in ids.iter().zip(&devs) {
            shared.devs.insert(*id, d.clone());
        }
        let (master, host) = (MemMaster::new(), MemHost::default());
        Fx {
            shared: Mutex::new(shared),
            ids,
            devs,
            io: Io {
                master: master.clone(),
                host: Arc::new(host.clone()),
            },
            master,
            host,
            epoll: Epoll::new().unwrap(),
            buf: vec![0; FRAME_MAX],
        }
    }

    /// Slave `i` (0-based) transmits `whole` on its queue 0, and this worker serves it.
    fn slave_sends(&mut self, i: usize, whole: &[u8]) {
        self.devs[i].inject(0, whole);
        let from = (self.ids[i], 0);
        from_slave(
            &self.shared,
            &self.epoll,
            &self.io,
            ME,
            from,
            false,
            &mut self.buf,
        );
    }

    /// `whole` arrives from the wire, and this worker serves it.
    fn wire_sends(&mut self, whole: &[u8], pkttype: PktType) {
        self.master.inject(whole, pkttype);
        from_master(&self.shared, &self.io, ME, &mut self.buf);
    }

    fn drain(&self) -> bool {
        drain_multicast(&self.shared, &self.io, ME, &mut Vec::<McCopy>::new())
    }

    fn counters(&self, i: usize) -> SlaveCounters {
        let sh = self.shared.lock().unwrap();
        sh.port.slave(self.ids[i]).unwrap().counters
    }

    fn port_drops(&self, reason: DropReason) -> u64 {
        self.shared
            .lock()
            .unwrap()
            .port
            .counters
            .dropped
            .get(reason)
    }
}

/// A 10-byte virtio-net header (little-endian fields, `ipvlan_linux::vnet`).
fn vnet_hdr(flags: u8, gso_type: u8, gso_size: u16, csum_start: u16, csum_offset: u16) -> Vec<u8> {
    let mut h = vec![flags, gso_type];
    for v in [0u16, gso_size, csum_start, csum_offset] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// `frame` behind an all-zero vnet header: a plain, complete frame.
fn plain(frame: &[u8]) -> Vec<u8> {
    let mut w = vec![0; 10];
    w.extend_from_slice(frame);
    w
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The TCP pseudo-header sum of an IPv4 packet with 20-byte header.
fn pseudo_v4(packet: &[u8]) -> u32 {
    sum16(&packet[12..20], 0) + 6 + (packet.len() - 20) as u32
}

/// Asserts an IPv4 packet's header checksum and its TCP checksum are right.
fn assert_valid_tcp_v4(packet: &[u8]) {
    assert_eq!(
        fold(sum16(&packet[..20], 0)),
        0xffff,
        "IPv4 header checksum"
    );
    assert_eq!(
        fold(sum16(&packet[20..], pseudo_v4(packet))),
        0xffff,
        "TCP checksum"
    );
}

/// An IPv4/TCP packet from s1 to the host with `len` payload bytes (a pattern); the IPv4
/// header checksum is right, the TCP one is left to be completed: its field holds the
/// pseudo-header sum, as a stack offloading it leaves it.
fn tcp_to_host(len: usize) -> Vec<u8> {
    let mut p = ipv4_packet(slave_addr(1), HOST_ADDR, 6, 20 + len);
    let c = !fold(sum16(&p[..20], 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18; // ACK|PSH
    for (i, b) in t[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let pseudo = fold(pseudo_v4(&p));
    p[36..38].copy_from_slice(&pseudo.to_be_bytes());
    p
}

/// Frames addressed to the shared MAC for an address no slave owns go to the host (R-TX-L2-3).
fn to_host_frame(vnet: &[u8], packet: &[u8]) -> Vec<u8> {
    let mut w = vnet.to_vec();
    w.extend_from_slice(&ethernet(M, M, ethertype::IPV4, packet));
    w
}

// ------------------------------------------------------------------ tokens and queues

#[test]
fn epoll_tokens_round_trip() {
    let tokens = [
        Token::Stop,
        Token::Master,
        Token::Sink,
        Token::Slave {
            id: SlaveId::from_raw(1),
            queue: 0,
        },
        Token::Slave {
            id: SlaveId::from_raw(0xfffd),
            queue: 3,
        },
        Token::Slave {
            id: SlaveId::from_raw(0xffff),
            queue: 0xffff,
        },
    ];
    for t in tokens {
        assert_eq!(Token::decode(t.encode()), Some(t), "{t:?}");
    }
    let mut words: Vec<u64> = tokens.iter().map(|t| t.encode()).collect();
    words.dedup();
    assert_eq!(words.len(), tokens.len(), "distinct tokens, distinct words");
    assert_eq!(Token::decode(3), None);
    assert_eq!(Token::decode(2 << 32), None);
}

/// Queue `q` of slave `id` is read by worker `Me::owner(id, q)`, and a worker writes to a slave
/// through `Me::queue(id)`, the queue it reads: for every number of workers the two are inverse.
#[test]
fn each_worker_writes_through_the_queue_it_reads() {
    for workers in 1..=4 {
        for raw in [1u16, 2, 3, 4, 5, 7, 0x100, 0xfffd] {
            let id = SlaveId::from_raw(raw);
            for index in 0..workers {
                let q = Me { index, workers }.queue(id);
                assert!(q < workers);
                assert_eq!(
                    Me::owner(id, q, workers),
                    index,
                    "{workers} workers, id {raw}"
                );
            }
            for q in 0..workers {
                let index = Me::owner(id, q, workers);
                assert_eq!(
                    Me { index, workers }.queue(id),
                    q,
                    "{workers} workers, id {raw}"
                );
            }
        }
    }
}

// ------------------------------------------------------------------ unicast

#[test]
fn slave_to_slave_unicast_reaches_the_receiver_through_this_workers_queue() {
    let mut fx = Fx::new(2);
    let whole = plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(2)));
    fx.slave_sends(0, &whole);

    let q = ME.queue(fx.ids[1]);
    assert_eq!(Me::owner(fx.ids[1], q, ME.workers), ME.index);
    assert_eq!(fx.devs[1].written(), vec![(q, whole.clone())]);
    assert!(fx.devs[0].written().is_empty(), "not back to the sender");
    assert!(fx.master.sent().is_empty() && fx.host.sent().is_empty());
    assert_eq!(fx.counters(0).tx_packets, 1);
    assert_eq!(fx.counters(1).rx_packets, 1);
    assert_eq!(fx.counters(1).rx_bytes, (whole.len() - 10) as u64);
}

#[test]
fn slave_to_wire_unicast_leaves_with_the_masters_mac_even_if_forged() {
    let mut fx = Fx::new(2);
    let whole = plain(&ipv4_frame(
        EXT_MAC,
        FORGED,
        slave_addr(1),
        v4(198, 51, 100, 7),
    ));
    fx.slave_sends(0, &whole);

    let mut expected = whole.clone();
    expected[16..22].copy_from_slice(&M.0); // vnet header (10) + destination MAC (6)
    assert_eq!(fx.master.sent(), vec![expected]);
    assert!(fx.devs.iter().all(|d| d.written().is_empty()));
    let sh = fx.shared.lock().unwrap();
    assert_eq!(sh.port.counters.tx_packets, 1);
}

#[test]
fn wire_to_slave_unicast_is_delivered_and_outgoing_frames_are_ignored() {
    let mut fx = Fx::new(2);
    let whole = plain(&ipv4_frame(M, EXT_MAC, v4(198, 51, 100, 7), slave_addr(2)));
    fx.wire_sends(&whole, PktType::Host);
    // The master's own transmissions, seen on its socket, are not for the slaves.
    fx.wire_sends(&whole, PktType::Outgoing);

    assert_eq!(fx.devs[1].written(), vec![(ME.queue(fx.ids[1]), whole)]);
    assert!(fx.devs[0].written().is_empty());
    assert_eq!(fx.counters(1).rx_packets, 1);
    assert_eq!(fx.shared.lock().unwrap().port.counters.rx_claimed, 1);
}

// ------------------------------------------------------------------ to the host stack

#[test]
fn to_host_completes_a_partial_checksum() {
    let mut fx = Fx::new(2);
    let packet = tcp_to_host(100);
    // NEEDS_CSUM; checksumming starts at the TCP header (14 + 20), the field is 16 into it.
    let whole = to_host_frame(&vnet_hdr(1, 0, 0, 34, 16), &packet);
    fx.slave_sends(0, &whole);

    let sent = fx.host.sent();
    assert_eq!(sent.len(), 1);
    let (got, dst) = &sent[0];
    assert_eq!(*dst, IpAddr::V4(HOST_ADDR));
    assert_eq!(got.len(), packet.len());
    assert_eq!(got[..36], packet[..36], "only the checksum changes");
    assert_eq!(got[38..], packet[38..], "only the checksum changes");
    assert_valid_tcp_v4(got);
    assert_eq!(fx.shared.lock().unwrap().port.counters.to_host_stack, 1);
}

#[test]
fn to_host_segments_a_gso_tcp_super_frame_into_mtu_sized_packets() {
    let mut fx = Fx::new(2);
    let packet = tcp_to_host(3000);
    let whole = to_host_frame(&vnet_hdr(1, GSO_TCPV4, 1448, 34, 16), &packet);
    fx.slave_sends(0, &whole);

    let sent = fx.host.sent();
    assert_eq!(sent.len(), 3, "3000 bytes in segments of 1448");
    let mut payload = Vec::new();
    for (i, (seg, dst)) in sent.iter().enumerate() {
        assert_eq!(*dst, IpAddr::V4(HOST_ADDR));
        assert!(seg.len() <= 1500, "segment {i} is {} bytes", seg.len());
        assert_eq!(usize::from(u16::from_be_bytes([seg[2], seg[3]])), seg.len());
        assert_valid_tcp_v4(seg);
        let seq = u32::from_be_bytes([seg[24], seg[25], seg[26], seg[27]]);
        assert_eq!(seq, 1000 + (i * 1448) as u32);
        payload.extend_from_slice(&seg[40..]);
    }
    assert_eq!(payload, packet[40..]);
    assert_eq!(fx.counters(0).tx_dropped.get(DropReason::MalformedIp), 0);
}

#[test]
fn a_non_ip_frame_for_the_host_is_counted_host_not_ip() {
    let mut fx = Fx::new(2);
    let arp = arp_for_the_host();
    fx.slave_sends(0, &plain(&arp));

    assert_eq!(fx.shared.lock().unwrap().port.counters.to_host_stack, 1);
    assert!(fx.host.sent().is_empty());
    assert_eq!(fx.counters(0).tx_dropped.get(DropReason::HostNotIp), 1);
    assert_eq!(
        fx.port_drops(DropReason::HostNotIp),
        0,
        "the sender's, not the port's"
    );
}

/// An ARP request addressed to the shared MAC for an address no slave owns: the core hands it
/// to the host (R-TX-L2-3), which takes only IP.
fn arp_for_the_host() -> Vec<u8> {
    let body = ipvlan_core::frames::arp_payload(1, M, slave_addr(1), MacAddr::ZERO, HOST_ADDR);
    ethernet(M, M, ethertype::ARP, &body)
}

#[test]
fn a_packet_the_host_refuses_is_the_senders_tx_error_when_routed_else_queue_full() {
    let packet = tcp_to_host(100);
    let whole = to_host_frame(&vnet_hdr(0, 0, 0, 0, 0), &packet);
    // l2: a local miss handed to the host (R-TX-L2-3); its failure is the sender's drop.
    let mut l2 = Fx::new(2);
    l2.host.refuse(libc::ENETUNREACH);
    l2.slave_sends(0, &whole);
    assert_eq!(l2.counters(0).tx_dropped.get(DropReason::QueueFull), 1);
    assert_eq!(l2.counters(0).tx_errors, 0);
    // l3: routed through the master namespace (R-TX-L3-3); its failure is the sender's
    // (R-STAT-3).
    let mut l3 = Fx::in_mode(Mode::L3, 2);
    l3.host.refuse(libc::ENETUNREACH);
    l3.slave_sends(0, &whole);
    assert_eq!(l3.counters(0).tx_errors, 1);
    assert_eq!(l3.counters(0).tx_dropped.total(), 0);
    assert_eq!(l3.port_drops(DropReason::QueueFull), 0);
}

/// l3 egress longer than the master's MTU (a slave whose MTU is above it): the raw socket
/// refuses it (`EMSGSIZE`), and the data plane does what the master namespace's local output
/// would (`ipvlan_core::pmtu`): IPv4 without DF leaves in fragments that fit; with DF it is
/// answered with "fragmentation needed" (next-hop MTU 1500) from the address the namespace
/// routes back to the sender with, and counted as the sender's tx_errors.
#[test]
fn l3_egress_above_the_master_mtu_is_fragmented_or_answered() {
    let mut fx = Fx::in_mode(Mode::L3, 2);
    fx.host.set_mtu(1500);
    let mut nodf = ipvlan_core::frames::ipv4_packet(slave_addr(1), HOST_ADDR, 17, 3980);
    nodf[6] = 0;
    fx.slave_sends(0, &to_host_frame(&vnet_hdr(0, 0, 0, 0, 0), &nodf));
    let sent = fx.host.sent();
    assert_eq!(
        sent.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(),
        [1500, 1500, 1040]
    );
    assert!(sent.iter().all(|(_, dst)| *dst == IpAddr::V4(HOST_ADDR)));
    assert_eq!(fx.counters(0).tx_errors, 0);

    let df = ipvlan_core::frames::ipv4_packet(slave_addr(1), HOST_ADDR, 17, 3980);
    fx.slave_sends(0, &to_host_frame(&vnet_hdr(0, 0, 0, 0, 0), &df));
    let sent = fx.host.sent();
    assert_eq!(sent.len(), 4, "one answer, nothing else");
    let (answer, to) = &sent[3];
    assert_eq!(*to, IpAddr::V4(slave_addr(1)));
    assert!(answer.len() <= 576);
    assert_eq!(
        &answer[12..16],
        &[192, 0, 2, 1],
        "from the route back's source"
    );
    assert_eq!((answer[20], answer[21]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([answer[26], answer[27]]), 1500);
    assert_eq!(fx.counters(0).tx_errors, 1);
}

/// A TCP super-frame (l3) whose segments are longer than the master's MTU and carry no DF:
/// each refused segment — not the super-frame — is fragmented, so the host gets every byte
/// once, in packets that fit.
#[test]
fn l3_super_frame_segments_above_the_master_mtu_are_each_fragmented() {
    let mut fx = Fx::in_mode(Mode::L3, 2);
    fx.host.set_mtu(1500);
    let mut packet = tcp_to_host(3000);
    packet[6] = 0; // no DF
    let whole = to_host_frame(&vnet_hdr(1, GSO_TCPV4, 2000, 34, 16), &packet);
    fx.slave_sends(0, &whole);
    let sent = fx.host.sent();
    assert!(sent.iter().all(|(p, _)| p.len() <= 1500), "{sent:?}");
    let data: usize = sent.iter().map(|(p, _)| p.len() - 20).sum();
    assert_eq!(
        data,
        2 * 20 + 3000,
        "two segments' TCP headers and the payload, once"
    );
    assert_eq!(fx.counters(0).tx_errors, 0);
}

/// A frame the master refuses is the sender's drop, with the reason the kernel gave: too long
/// for the master (a slave whose MTU is above the master's) is `mtu_exceeded`; a full buffer
/// `queue_full`; a master that is down `receiver_down`. Nothing lands on the port's counters,
/// which no command shows.
#[test]
fn a_frame_the_master_refuses_is_the_senders_drop_with_the_kernels_reason() {
    for (errno, reason) in [
        (libc::EMSGSIZE, DropReason::MtuExceeded),
        (libc::ENOBUFS, DropReason::QueueFull),
        (libc::ENETDOWN, DropReason::ReceiverDown),
    ] {
        let mut fx = Fx::new(2);
        fx.master.refuse(errno);
        let whole = plain(&ipv4_frame(EXT_MAC, M, slave_addr(1), v4(198, 51, 100, 7)));
        fx.slave_sends(0, &whole);
        assert!(fx.master.sent().is_empty());
        assert_eq!(fx.counters(0).tx_dropped.get(reason), 1, "errno {errno}");
        assert_eq!(fx.counters(0).tx_dropped.total(), 1, "errno {errno}");
        // R-STAT-1: a transmit that did not succeed is a drop, not a packet sent.
        assert_eq!(
            (fx.counters(0).tx_packets, fx.counters(0).tx_bytes),
            (0, 0),
            "errno {errno}"
        );
        assert_eq!(fx.port_drops(reason), 0, "errno {errno}");
    }
}

// ------------------------------------------------------------------ refused deliveries

#[test]
fn a_write_refused_with_would_block_is_counted_queue_full_on_the_receiver() {
    let mut fx = Fx::new(2);
    fx.devs[1].refuse_writes(Some(EAGAIN));
    fx.slave_sends(0, &plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(2))));

    assert!(fx.devs[1].written().is_empty());
    assert_eq!(fx.counters(1).rx_dropped.get(DropReason::QueueFull), 1);
    assert_eq!(fx.counters(1).rx_dropped.total(), 1);
    assert_eq!(
        fx.counters(0).tx_dropped.total(),
        0,
        "the sender's transmit succeeded"
    );
}

#[test]
fn a_vanished_receiver_is_counted_receiver_down() {
    let mut fx = Fx::new(3);
    let to = |n| plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(n)));
    // s2's device is gone from the data plane while the core still knows the slave.
    let s2 = fx.ids[1];
    fx.shared.lock().unwrap().devs.remove(&s2);
    fx.slave_sends(0, &to(2));
    // s3's device fails writes (its namespace is being deleted).
    fx.devs[2].refuse_writes(Some(libc::EIO));
    fx.slave_sends(0, &to(3));

    for i in [1, 2] {
        let rx = fx.counters(i).rx_dropped;
        assert_eq!(rx.get(DropReason::ReceiverDown), 1, "s{}", i + 1);
        assert_eq!(rx.total(), 1, "s{}", i + 1);
    }
}

#[test]
fn a_slave_whose_device_is_gone_is_no_longer_polled() {
    let mut fx = Fx::new(2);
    let (s1, dev) = (fx.ids[0], fx.devs[0].clone());
    let token = Token::Slave { id: s1, queue: 0 };
    fx.epoll.add(dev.poll_fd(0), token.encode()).unwrap();
    dev.inject(0, &plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(2))));
    let mut ready = Vec::new();
    assert_eq!(fx.epoll.wait(&mut ready, 0).unwrap(), 1);

    dev.break_reads(libc::EBADFD);
    from_slave(
        &fx.shared,
        &fx.epoll,
        &fx.io,
        ME,
        (s1, 0),
        false,
        &mut fx.buf,
    );
    assert_eq!(
        fx.epoll.wait(&mut ready, 0).unwrap(),
        0,
        "taken out of the epoll"
    );
    assert!(fx.devs[1].written().is_empty());
}

// ------------------------------------------------------------------ multicast

#[test]
fn drain_multicast_distributes_at_most_mc_burst_frames_per_call() {
    let mut fx = Fx::new(2);
    let bcast = plain(&ipv4_multicast(M, slave_addr(1), Ipv4Addr::BROADCAST));
    for _ in 0..MC_BURST + 2 {
        fx.devs[0].inject(0, &bcast);
    }
    let from = (fx.ids[0], 0);
    from_slave(&fx.shared, &fx.epoll, &fx.io, ME, from, false, &mut fx.buf);
    assert!(
        fx.devs[1].written().is_empty(),
        "queued, not yet distributed"
    );

    assert!(fx.drain(), "frames remain after the first call");
    assert_eq!(fx.devs[1].written().len(), MC_BURST);
    assert_eq!(fx.master.sent().len(), MC_BURST);

    assert!(!fx.drain(), "the second call empties the backlog");
    assert_eq!(fx.devs[1].written().len(), MC_BURST + 2);
    assert_eq!(fx.master.sent().len(), MC_BURST + 2);

    assert!(!fx.drain());
    assert_eq!(fx.devs[1].written().len(), MC_BURST + 2);
}

#[test]
fn a_slaves_broadcast_reaches_every_other_slave_and_the_wire_but_not_the_sender() {
    let mut fx = Fx::new(3);
    let whole = plain(&ipv4_multicast(FORGED, slave_addr(2), Ipv4Addr::BROADCAST));
    fx.slave_sends(1, &whole);
    assert!(!fx.drain());

    // Everyone gets it with the master's MAC as the source, whatever the sender wrote.
    let mut as_sent = whole.clone();
    as_sent[16..22].copy_from_slice(&M.0);
    for i in [0, 2] {
        assert_eq!(
            fx.devs[i].written(),
            vec![(ME.queue(fx.ids[i]), as_sent.clone())]
        );
        assert_eq!(fx.counters(i).rx_multicast, 1);
    }
    assert!(fx.devs[1].written().is_empty(), "not back to the sender");
    assert_eq!(fx.master.sent(), vec![as_sent]);
}

/// A forged ARP reply (another slave's address at another MAC) reaches nobody as sent: the
/// other slaves and the wire get it with the master's MAC as Ethernet source and as ARP
/// sender, so no neighbour cache can be pointed elsewhere.
#[test]
fn a_forged_arp_reaches_everyone_with_the_masters_mac_inside() {
    let mut fx = Fx::new(3);
    let body = ipvlan_core::frames::arp_payload(
        2,
        FORGED,
        slave_addr(2),
        MacAddr([0xff; 6]),
        slave_addr(2),
    );
    let garp = ethernet(MacAddr([0xff; 6]), FORGED, ethertype::ARP, &body);
    fx.slave_sends(0, &plain(&garp));
    assert!(!fx.drain());
    let mut expected = plain(&garp);
    expected[16..22].copy_from_slice(&M.0); // Ethernet source
    expected[32..38].copy_from_slice(&M.0); // ARP sender hardware address (14 + 8 + vnet 10)
    for i in [1, 2] {
        assert_eq!(
            fx.devs[i].written(),
            vec![(ME.queue(fx.ids[i]), expected.clone())]
        );
    }
    assert_eq!(fx.master.sent(), vec![expected]);
}

#[test]
fn a_broadcast_from_the_wire_reaches_every_slave_and_does_not_go_back_out() {
    let mut fx = Fx::new(3);
    let whole = plain(&ipv4_multicast(
        EXT_MAC,
        v4(192, 0, 2, 200),
        Ipv4Addr::BROADCAST,
    ));
    fx.wire_sends(&whole, PktType::Broadcast);
    assert!(!fx.drain());

    for d in &fx.devs {
        assert_eq!(d.written().len(), 1);
    }
    assert!(fx.master.sent().is_empty());
}

// ------------------------------------------------------------------ DHCP on a shared MAC

/// A DHCP request from slave address 0.0.0.0, broadcast, with transaction id `xid`.
fn dhcp_discover(xid: u32, options: &[u8]) -> Vec<u8> {
    plain(&ipvlan_core::frames::dhcp_frame(
        MacAddr::BROADCAST,
        M,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        true,
        xid,
        options,
    ))
}

/// A server's reply with `xid`: unicast to an address no slave owns, or broadcast.
fn dhcp_reply(xid: u32, broadcast: bool) -> Vec<u8> {
    let (mac, dst) = if broadcast {
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    } else {
        (M, v4(192, 0, 2, 150))
    };
    plain(&ipvlan_core::frames::dhcp_frame(
        mac,
        EXT_MAC,
        v4(192, 0, 2, 254),
        dst,
        false,
        xid,
        &[53, 1, 2, 255],
    ))
}

#[test]
fn dhcp_unicast_replies_reach_only_the_slave_that_sent_the_xid() {
    let mut fx = Fx::new(3);
    fx.slave_sends(1, &dhcp_discover(0x1234, &[53, 1, 1, 61, 2, 1, 2, 255]));
    assert!(!fx.drain()); // the DISCOVER's copies (s1, s3) and the wire copy
    let before: Vec<usize> = fx.devs.iter().map(|d| d.written().len()).collect();
    // Unicast to the offered address: s2's alone, though no slave owns the address.
    fx.wire_sends(&dhcp_reply(0x1234, false), PktType::Host);
    // Broadcast: not steered, every slave gets it (as from the kernel).
    fx.wire_sends(&dhcp_reply(0x1234, true), PktType::Broadcast);
    assert!(!fx.drain());
    let after: Vec<usize> = fx.devs.iter().map(|d| d.written().len()).collect();
    assert_eq!(
        after
            .iter()
            .zip(&before)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>(),
        vec![1, 2, 1]
    );
    assert_eq!(fx.counters(1).rx_dhcp_steered, 1);
    // An unknown xid: unicast goes nowhere, broadcast to everyone, as without steering.
    fx.wire_sends(&dhcp_reply(0x9999, false), PktType::Host);
    fx.wire_sends(&dhcp_reply(0x9999, true), PktType::Broadcast);
    assert!(!fx.drain());
    let last: Vec<usize> = fx.devs.iter().map(|d| d.written().len()).collect();
    assert_eq!(
        last.iter()
            .zip(&after)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>(),
        vec![1, 1, 1]
    );
}

#[test]
fn a_slave_sharing_a_client_id_is_warned_about_once() {
    let mut fx = Fx::new(2);
    let same = [53, 1, 1, 61, 7, 1, 2, 0, 0, 0, 0, 1, 255];
    fx.slave_sends(0, &dhcp_discover(1, &same));
    fx.slave_sends(1, &dhcp_discover(2, &same));
    fx.slave_sends(1, &dhcp_discover(3, &same));
    fx.drain();
    let mut sh = fx.shared.lock().unwrap();
    let msg = ipvlan_core::frames::dhcp_frame(M, M, v4(0, 0, 0, 0), v4(0, 0, 0, 0), true, 4, &same);
    let m = ipvlan_core::dhcp::parse(&msg).unwrap();
    // Both were seen (and s2 warned about once, in the log): s1 asking again is warned about
    // now, s2 not again.
    let now = super::worker::now_ns();
    assert_eq!(
        sh.client_ids.check(fx.ids[0], &m, now),
        Some(ipvlan_core::dhcp::ClientIdProblem::SameAs { other: fx.ids[1] })
    );
    assert_eq!(sh.client_ids.check(fx.ids[1], &m, now), None);
}

// ------------------------------------------------------------------ l3s sink

#[test]
fn the_sink_delivers_to_the_owner_of_the_destination_with_the_ttl_restored() {
    let fx = Fx::new(2);
    let sink = MemSlave::new(1);
    fx.shared.lock().unwrap().sink = Some(sink.clone());
    // What `dup` copied after the master's INPUT: TTL one lower, any MACs.
    let mut packet = ipv4_packet(v4(198, 51, 100, 7), slave_addr(2), 17, 8);
    packet[8] = 63;
    let c = !fold(sum16(&packet[..20], 0));
    packet[10..12].copy_from_slice(&c.to_be_bytes());
    let mut whole = plain(&ethernet(EXT_MAC, FORGED, ethertype::IPV4, &packet));
    sink.inject(0, &whole);
    // A packet for an address no slave owns is not delivered.
    sink.inject(0, &plain(&ipv4_frame(M, M, v4(198, 51, 100, 7), HOST_ADDR)));
    from_sink(&fx.shared, ME, &mut vec![0; FRAME_MAX]);

    whole[10..16].copy_from_slice(&M.0);
    whole[16..22].copy_from_slice(&M.0);
    whole[24 + 8] = 64;
    let written = fx.devs[1].written();
    assert_eq!(written.len(), 1);
    let (q, got) = &written[0];
    assert_eq!(*q, ME.queue(fx.ids[1]));
    assert_eq!(got[..24 + 10], whole[..24 + 10], "MACs and TTL");
    assert_eq!(fold(sum16(&got[24..44], 0)), 0xffff, "IPv4 header checksum");
    assert_eq!(got[24 + 12..], whole[24 + 12..]);
    assert_eq!(fx.counters(1).rx_packets, 1);
    assert!(fx.devs[0].written().is_empty());
}

// ------------------------------------------------------------------ registration

/// A data plane with `workers` epolls and no threads: what `add_slave` registers stays to be
/// seen.
fn idle(port: Port, workers: usize) -> DataPlane<MemSlave, MemMaster, MemHost> {
    DataPlane {
        shared: Arc::new(Mutex::new(Shared::new(port))),
        epolls: (0..workers)
            .map(|_| Arc::new(Epoll::new().unwrap()))
            .collect(),
        stop: Arc::new(EventFd::new().unwrap()),
        stopping: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        _io: std::marker::PhantomData,
    }
}

/// The tokens each epoll reports now, without waiting.
fn ready_tokens(dp: &DataPlane<MemSlave, MemMaster, MemHost>) -> Vec<Vec<Token>> {
    let mut ready = Vec::new();
    dp.epolls
        .iter()
        .map(|e| {
            e.wait(&mut ready, 0).unwrap();
            let tokens = ready
                .iter()
                .map(|r: &Ready| Token::decode(r.token).unwrap());
            tokens.collect()
        })
        .collect()
}

#[test]
fn add_slave_registers_each_queue_with_its_reader_and_remove_slave_undoes_it() {
    let (port, ids) = port_with(2);
    let dp = idle(port, 3);
    let (s1, s2) = (ids[0], ids[1]);
    let dev = MemSlave::new(3);
    dp.add_slave(s1, dev.clone()).unwrap();
    for q in 0..3 {
        dev.inject(q, &plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(2))));
    }
    let ready = ready_tokens(&dp);
    for (w, tokens) in ready.iter().enumerate() {
        let q = (0..3).find(|&q| Me::owner(s1, q, 3) == w).unwrap();
        assert_eq!(
            tokens,
            &vec![Token::Slave { id: s1, queue: q }],
            "worker {w}"
        );
    }

    // Queued multicast of s1 goes with it; the wire's and s2's stay.
    {
        let mut sh = dp.shared.lock().unwrap();
        for origin in [McOrigin::Slave(s1), McOrigin::Wire, McOrigin::Slave(s2)] {
            sh.backlog.push(origin, vec![0; 64]).unwrap();
        }
    }
    assert!(Arc::ptr_eq(&dp.remove_slave(s1).unwrap(), &dev));
    assert_eq!(dp.shared.lock().unwrap().backlog.len(), 2);
    assert!(
        ready_tokens(&dp).iter().all(|t| t.is_empty()),
        "no longer polled"
    );
    assert!(dp.remove_slave(s1).is_none());
}

#[test]
fn the_sink_is_polled_by_worker_0_until_unset() {
    let (port, _) = port_with(1);
    let dp = idle(port, 2);
    let sink = MemSlave::new(1);
    dp.set_sink(Some(sink.clone())).unwrap();
    sink.inject(0, &[0; 64]);
    assert_eq!(ready_tokens(&dp), vec![vec![Token::Sink], vec![]]);
    dp.set_sink(None).unwrap();
    assert_eq!(ready_tokens(&dp), vec![Vec::<Token>::new(), vec![]]);
    assert!(dp.shared.lock().unwrap().sink.is_none());
}

// ------------------------------------------------------------------ whole workers

/// Waits up to 5 s for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn workers_forward_between_in_memory_devices_until_stopped() {
    let (port, ids) = port_with(2);
    let masters = vec![MemMaster::new(), MemMaster::new()];
    let host = MemHost::default();
    let mut dp: DataPlane<MemSlave, MemMaster, MemHost> =
        DataPlane::start_on(port, masters.clone(), host).unwrap();
    assert_eq!(dp.workers(), 2);
    let devs = [MemSlave::new(2), MemSlave::new(2)];
    for (id, d) in ids.iter().zip(&devs) {
        dp.add_slave(*id, d.clone()).unwrap();
    }

    // s1 → s2 on s1's queue 0: read by its owner, written through that worker's queue of s2.
    let unicast = plain(&ipv4_frame(M, M, slave_addr(1), slave_addr(2)));
    devs[0].inject(0, &unicast);
    eventually("s2 to get the frame", || !devs[1].written().is_empty());
    let reader = Me::owner(ids[0], 0, 2);
    let q = Me {
        index: reader,
        workers: 2,
    }
    .queue(ids[1]);
    assert_eq!(devs[1].written(), vec![(q, unicast.clone())]);

    // Wire → s1 through worker 1's socket.
    let from_wire = plain(&ipv4_frame(M, EXT_MAC, v4(198, 51, 100, 7), slave_addr(1)));
    masters[1].inject(&from_wire, PktType::Host);
    eventually("s1 to get the frame", || !devs[0].written().is_empty());
    let q = Me {
        index: 1,
        workers: 2,
    }
    .queue(ids[0]);
    assert_eq!(devs[0].written(), vec![(q, from_wire)]);

    // Without its device, s2's frames are counted as dropped.
    assert!(dp.remove_slave(ids[1]).is_some());
    assert!(dp.remove_slave(ids[1]).is_none());
    devs[0].inject(1, &unicast);
    eventually("the drop to be counted", || {
        let port = dp.port();
        let c = port.slave(ids[1]).unwrap().counters;
        c.rx_dropped.get(DropReason::ReceiverDown) == 1
    });
    assert_eq!(devs[1].written().len(), 1);

    dp.stop();
    dp.stop();
}

#[test]
fn a_data_plane_needs_a_master_socket() {
    let (port, _) = port_with(1);
    let started: std::io::Result<DataPlane<MemSlave, MemMaster, MemHost>> =
        DataPlane::start_on(port, Vec::new(), MemHost::default());
    let err = started.err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Frames the kernel dropped on a master socket (its buffer was full) never reached a worker:
/// they are counted on the port as `rx_overflow`, once.
#[test]
fn master_socket_overflow_is_counted_on_the_port() {
    let fx = Fx::new(2);
    fx.master.overflow(7);
    super::worker::count_socket_drops(&fx.shared, &fx.io);
    super::worker::count_socket_drops(&fx.shared, &fx.io);
    assert_eq!(fx.port_drops(DropReason::RxOverflow), 7);
}

/// l3: a packet handed to the host for routing that comes straight back from a slave in the
/// master's namespace (the host routed it there) is dropped as `routing_loop`, once; the same
/// bytes from a slave elsewhere, or while no slave is local, are routed as usual.
#[test]
fn a_routed_packet_coming_back_from_a_local_slave_is_a_loop_and_dropped() {
    let mut fx = Fx::in_mode(Mode::L3, 2);
    let packet = tcp_to_host(100);
    let whole = to_host_frame(&vnet_hdr(0, 0, 0, 0, 0), &packet);
    // No local slave: nothing is remembered, both pass.
    fx.slave_sends(0, &whole);
    fx.slave_sends(1, &whole);
    assert_eq!(fx.host.sent().len(), 2);
    // Slave 2 lives in the master's namespace: slave 1's packet, routed back through it, stops.
    {
        let mut sh = fx.shared.lock().unwrap();
        let id = fx.ids[1];
        sh.local.insert(id);
    }
    fx.slave_sends(0, &whole);
    assert_eq!(fx.host.sent().len(), 3);
    fx.slave_sends(1, &whole);
    assert_eq!(fx.host.sent().len(), 3, "not handed to the host again");
    assert_eq!(fx.counters(1).tx_dropped.get(DropReason::RoutingLoop), 1);
    // A different packet from the local slave is routed.
    let other = to_host_frame(&vnet_hdr(0, 0, 0, 0, 0), &tcp_to_host(101));
    fx.slave_sends(1, &other);
    assert_eq!(fx.host.sent().len(), 4);
}
