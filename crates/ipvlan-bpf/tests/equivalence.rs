//! The BPF programs decide like `ipvlan-core`: random ports (every mode × flag, 1–5 slaves with
//! random addresses, MTUs, up/down, guard/router) are mirrored into the maps, and random and
//! mutated frames are run through `from_slave` and `from_master` with `BPF_PROG_TEST_RUN`. The
//! recorded decision (verdict, target, drop reason and site, fan-out copies) must equal
//! `decide_tx` / `decide_rx` / `multicast_fanout`, and the counters must move as
//! `Port::handle_tx` / `handle_rx` / `handle_multicast` move them.
//!
//! DHCPv4 requests and replies (kinds 12 and 13, with one of three transaction ids) exercise
//! the xid steering of `ipvlan_core::dhcp` against the `dhcp_xids` map.
//!
//! Not covered here: frames under 14 bytes and untagged IP frames shorter than their fixed IP
//! header (`BPF_PROG_TEST_RUN` refuses them), VLAN tags in skb metadata (the test run cannot set them), the multicast
//! bound (set to unbounded here), and where a redirect lands (the end-to-end test).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipvlan_bpf::{
    ensure_bpffs, Hook, PortConfig, PortProgram, RouteMethod, SlaveEntry, Trace, TraceCopy,
    TraceSite, Verdict,
};
use ipvlan_core::frames::{dhcp_frame, ethernet, ipv4_packet, ipv6_packet, nd_message};
use ipvlan_core::identity::assert_master_identity;
use ipvlan_core::{
    decide_rx, decide_tx, multicast_fanout, DropReason, DropSite, Flag, IfName, IpFamily,
    LinkTypeArgs, MacAddr, Master, McCopy, McOrigin, Mode, MulticastBacklog, NewSlave, Port,
    RxAction, RxMeta, SlaveCounters, SlaveId, TxAction, TxMeta,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;

const MASTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MASTER_IFINDEX: u32 = 1; // loopback: never a real redirect target in a test run
const HOST_BASE: u32 = 40_000; // host-end ifindex of slave id n: HOST_BASE + n (no device)

/// The address pool frames and slaves draw from (documentation ranges only).
fn pool() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = (1..=8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i)))
        .collect();
    v.extend((1..=8).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))));
    v
}

#[derive(Debug, Clone)]
struct SlaveSpec {
    mtu: u32,
    up: bool,
    guard: bool,
    router: bool,
    /// The ipvtap source-MAC guard.
    mac_guard: bool,
    addrs: Vec<usize>, // indexes into pool()
}

#[derive(Debug, Clone)]
struct PortSpec {
    mode: Mode,
    flag: Flag,
    master_mtu: u32,
    slaves: Vec<SlaveSpec>,
    /// `hostreach`: the last slave is the port's host slave.
    host: bool,
}

fn slave_spec() -> impl Strategy<Value = SlaveSpec> {
    (
        prop_oneof![Just(1500u32), 68u32..3000],
        prop::bool::weighted(0.8),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::collection::vec(0usize..16, 0..4),
    )
        .prop_map(|(mtu, up, guard, router, mac_guard, addrs)| SlaveSpec {
            mtu,
            up,
            guard,
            router,
            mac_guard,
            addrs,
        })
}

fn port_spec() -> impl Strategy<Value = PortSpec> {
    (
        prop::sample::select(Mode::ALL.to_vec()),
        prop::sample::select(Flag::ALL.to_vec()),
        prop_oneof![Just(1500u32), 576u32..3000],
        prop::collection::vec(slave_spec(), 1..=5),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(mode, flag, master_mtu, slaves, host)| PortSpec {
            mode,
            flag,
            master_mtu,
            slaves,
            host,
        })
}

/// A frame description; `build` turns it into bytes.
#[derive(Debug, Clone)]
struct FrameSpec {
    kind: u8,
    dst_mac: u8,
    src_mac: u8,
    src: usize,
    dst: usize,
    unspecified_src: bool,
    vlan: Option<u16>,
    pad: usize,
    cut: Option<usize>,
    flip: Option<(usize, u8)>,
    gso: bool,
    hook_master: bool,
    sender: usize,
    ext_headers: u8,
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    (
        (
            0u8..14,
            0u8..5,
            0u8..3,
            0usize..16,
            0usize..16,
            prop::bool::weighted(0.15),
        ),
        (
            prop::option::weighted(0.15, prop_oneof![Just(0u16), 1u16..4095, Just(0x2005)]),
            prop_oneof![Just(0usize), 0usize..3200],
            prop::option::weighted(0.15, 14usize..120),
            prop::option::weighted(0.15, (0usize..100, any::<u8>())),
        ),
        (prop::bool::weighted(0.1), any::<bool>(), 0usize..5, 0u8..3),
    )
        .prop_map(
            |(
                (kind, dst_mac, src_mac, src, dst, unspecified_src),
                (vlan, pad, cut, flip),
                (gso, hook_master, sender, ext_headers),
            )| FrameSpec {
                kind,
                dst_mac,
                src_mac,
                src,
                dst,
                unspecified_src,
                vlan,
                pad,
                cut,
                flip,
                gso,
                hook_master,
                sender,
                ext_headers,
            },
        )
}

fn v4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(v) => v,
        IpAddr::V6(v) => {
            let o = v.octets();
            Ipv4Addr::new(o[12], o[13], o[14], o[15])
        }
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(v) => v,
        IpAddr::V4(v) => v.to_ipv6_mapped(),
    }
}

fn build(f: &FrameSpec) -> Vec<u8> {
    let pool = pool();
    let (src, dst) = (pool[f.src], pool[f.dst]);
    let dst_mac = match f.dst_mac {
        0 => MacAddr(MASTER_MAC),
        1 => MacAddr::BROADCAST,
        2 => MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        3 => MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        _ => MacAddr([0x02, 0, 0, 0, 0, 0x99]),
    };
    let src_mac = match f.src_mac {
        0 | 1 => MacAddr(MASTER_MAC),
        _ => MacAddr([0x02, 0, 0, 0, 0, 0x77]),
    };
    let s4 = if f.unspecified_src {
        Ipv4Addr::UNSPECIFIED
    } else {
        v4(src)
    };
    let s6 = if f.unspecified_src {
        Ipv6Addr::UNSPECIFIED
    } else {
        v6(src)
    };
    let icmp6 = |kind: u8| {
        let m = nd_message(kind, v6(dst));
        let mut payload = Vec::new();
        let mut next = 58u8;
        // extension headers in front (destination options, 8 bytes each)
        for _ in 0..f.ext_headers {
            let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
            h.extend_from_slice(&payload);
            payload = h;
            next = 60;
        }
        payload.extend_from_slice(&m);
        ipv6_packet(s6, v6(dst), next, &payload)
    };
    let (ethertype, payload) = match f.kind {
        0 => (
            0x0806,
            ipvlan_core::frames::arp_payload(1, src_mac, s4, MacAddr::ZERO, v4(dst)),
        ),
        1 | 2 => (0x0800, ipv4_packet(s4, v4(dst), 17, 12)),
        3 => (0x86dd, ipv6_packet(s6, v6(dst), 17, &[0; 8])),
        4 => (0x86dd, icmp6(135)),
        5 => (0x86dd, icmp6(136)),
        6 => (0x86dd, icmp6(134)),
        7 => (0x86dd, icmp6(137)),
        8 => (0x8808, vec![0, 1, 0, 0]),
        9 => (0x1234, vec![0xab; 30]),
        10 => (0x86dd, icmp6(128)),
        12 | 13 => (0x0800, Vec::new()),
        _ => (0x0800, vec![0x45, 0, 0, 99]),
    };
    let mut frame = ethernet(dst_mac, src_mac, ethertype, &payload);
    if f.kind == 12 || f.kind == 13 {
        // DHCP: a request (12) or reply (13) with one of three xids (`ext_headers`), to the
        // limited broadcast address when the MAC is broadcast.
        let dst = if f.dst_mac == 1 {
            Ipv4Addr::BROADCAST
        } else {
            v4(dst)
        };
        let xid = 0x0100_0000 + u32::from(f.ext_headers);
        frame = dhcp_frame(
            dst_mac,
            src_mac,
            s4,
            dst,
            f.kind == 12,
            xid,
            &[53, 1, 1, 255],
        );
    }
    if let Some(tci) = f.vlan {
        frame = ipvlan_core::frames::tagged(&frame, tci);
    }
    frame.resize(frame.len() + f.pad, 0);
    if let Some(c) = f.cut {
        frame.truncate(c.max(14));
    }
    if let Some((at, v)) = f.flip {
        if at < frame.len() {
            frame[at] = v;
        }
    }
    frame.truncate(3500);
    frame
}

struct Fixture {
    prog: PortProgram,
    dir: PathBuf,
    /// The test's own bpffs mount (unmounted on drop).
    root: PathBuf,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        // A bpffs of the test's own, not the system's /sys/fs/bpf.
        let root =
            std::env::temp_dir().join(format!("ipvlan-eq-{}-{tag}-bpffs", std::process::id()));
        ensure_bpffs(&root).expect("bpffs");
        let dir = root.join("port");
        let mut prog = PortProgram::load(&dir).expect("load");
        prog.set_trace(true).expect("trace");
        Fixture { prog, dir, root }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.root)
            .status();
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// The core port and the same port mirrored into the maps.
fn setup(fx: &mut Fixture, spec: &PortSpec, ids: &mut Vec<u16>) -> Port {
    for id in ids.drain(..) {
        fx.prog.remove_slave(id).expect("remove slave");
    }
    let mut port = Port::new(Master {
        name: IfName::new("m0").expect("name"),
        mac: MacAddr(MASTER_MAC),
        mtu: spec.master_mtu,
    });
    port.set_mode_flag(spec.mode, spec.flag);
    let pool = pool();
    for (i, s) in spec.slaves.iter().enumerate() {
        let mut req = NewSlave::new(
            IfName::new(&format!("s{i}")).expect("name"),
            LinkTypeArgs {
                mode: Some(spec.mode),
                flag: Some(spec.flag),
            },
        );
        req.mtu = Some(s.mtu);
        let id = port.add_slave(req).expect("add").id;
        let host = spec.host && i + 1 == spec.slaves.len();
        port.set_host(id, host).expect("host");
        port.set_slave_up(id, s.up).expect("up");
        port.set_source_guard(id, s.guard).expect("guard");
        port.set_router(id, s.router).expect("router");
        port.set_mac_guard(id, s.mac_guard).expect("mac guard");
        for &a in &s.addrs {
            let _ = port.add_address(id, pool[a]);
        }
        fx.prog
            .set_slave(
                id.get(),
                &SlaveEntry {
                    host_ifindex: HOST_BASE + u32::from(id.get()),
                    mtu: s.mtu,
                    up: s.up,
                    source_guard: s.guard,
                    router: s.router,
                    same_ns: false,
                    host,
                    mac_guard: s.mac_guard,
                },
            )
            .expect("set slave");
        for a in port.addresses(id).to_vec() {
            fx.prog.add_address(a, id.get()).expect("address");
        }
        ids.push(id.get());
    }
    fx.prog
        .set_config(&PortConfig {
            master_ifindex: MASTER_IFINDEX,
            master_mac: MASTER_MAC,
            master_mtu: spec.master_mtu,
            mode: spec.mode,
            flag: spec.flag,
            route_v4: RouteMethod::Stack,
            route_v6: RouteMethod::Stack,
        })
        .expect("config");
    fx.prog.set_multicast_bound(0, 0).expect("unbounded");
    port
}

fn copies(out: &[McCopy]) -> Vec<TraceCopy> {
    out.iter()
        .map(|c| match *c {
            McCopy::Deliver(s) => TraceCopy::Deliver(s.get()),
            McCopy::Drop(s, r) => TraceCopy::Drop(s.get(), r),
        })
        .collect()
}

fn trace(verdict: Verdict) -> Trace {
    Trace {
        verdict,
        target: 0,
        drop: None,
        family: 0,
        copies: Vec::new(),
    }
}

/// What the core decides for a frame slave `from` sent, and the accounting it does.
fn expect_tx(port: &mut Port, from: SlaveId, frame: &[u8], gso: bool) -> Trace {
    let meta = TxMeta {
        gso,
        from: Some(from),
        now: monotonic_ns(),
    };
    let action = decide_tx(port, frame, meta);
    let t = match action {
        TxAction::Deliver(to) => Trace {
            target: to.get(),
            ..trace(Verdict::Deliver)
        },
        TxAction::Transmit { .. } => trace(Verdict::Transmit),
        TxAction::ToHost => trace(Verdict::ToHost),
        TxAction::Route { family, .. } => Trace {
            family: if family == IpFamily::V4 { 4 } else { 6 },
            ..trace(Verdict::Route)
        },
        TxAction::Multicast => {
            let mut out = Vec::new();
            multicast_fanout(port, McOrigin::Slave(from), frame, gso, &mut out);
            Trace {
                copies: copies(&out),
                ..trace(Verdict::Multicast)
            }
        }
        TxAction::Drop { reason, site } => {
            let (site, target) = match site {
                DropSite::Sender => (TraceSite::Sender, 0),
                DropSite::Receiver(s) => (TraceSite::Receiver, s.get()),
                DropSite::Master => (TraceSite::Master, 0),
            };
            Trace {
                target,
                drop: Some((reason, site)),
                ..trace(Verdict::Drop)
            }
        }
    };
    // Port::handle_tx and the multicast engine, for the counters.
    let again = port.handle_tx(from, frame, meta);
    assert_eq!(again, action);
    // The master refuses a frame longer than its MTU allows (the userspace path's send fails
    // with EMSGSIZE, the kernel's is_skb_forwardable drops it): the sender's drop.
    if matches!(action, TxAction::Transmit { .. })
        && !gso
        && frame.len() > port.master().mtu as usize + ipvlan_core::port::MTU_SLACK
    {
        port.record_transmit_drop(from, ipvlan_core::DropReason::MtuExceeded, frame.len());
    }
    if action == TxAction::Multicast {
        let mut backlog = MulticastBacklog::with_limit(1000);
        port.queue_multicast(&mut backlog, McOrigin::Slave(from), frame.to_vec());
        let mut out = Vec::new();
        while let Some((origin, f)) = backlog.pop() {
            port.handle_multicast(origin, &f, gso, &mut out);
        }
    }
    t
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, which the programs' `dhcp_xids`
/// entries are stamped with.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn expect_rx(port: &mut Port, frame: &[u8]) -> Trace {
    let meta = RxMeta {
        now: monotonic_ns(),
        ..RxMeta::default()
    };
    let action = decide_rx(port, frame, meta);
    let t = match action {
        RxAction::Deliver(to) => Trace {
            target: to.get(),
            ..trace(Verdict::Deliver)
        },
        RxAction::DeliverViaHost(_) | RxAction::Pass => trace(Verdict::Pass),
        RxAction::PassAndMulticast => {
            let mut out = Vec::new();
            multicast_fanout(port, McOrigin::Wire, frame, false, &mut out);
            Trace {
                copies: copies(&out),
                ..trace(Verdict::PassAndMulticast)
            }
        }
        RxAction::Drop { reason } => Trace {
            drop: Some((reason, TraceSite::Master)),
            ..trace(Verdict::Drop)
        },
        RxAction::Steer(to) => Trace {
            target: to.get(),
            ..trace(Verdict::Steer)
        },
    };
    let again = port.handle_rx(frame, meta);
    assert_eq!(again, action);
    if action == RxAction::PassAndMulticast {
        let mut backlog = MulticastBacklog::with_limit(1000);
        port.queue_multicast(&mut backlog, McOrigin::Wire, frame.to_vec());
        let mut out = Vec::new();
        while let Some((origin, f)) = backlog.pop() {
            port.handle_multicast(origin, &f, false, &mut out);
        }
    }
    t
}

fn port_numbers(c: &ipvlan_core::PortCounters) -> Vec<u64> {
    let mut v = vec![
        c.rx_claimed,
        c.rx_passed,
        c.rx_multicast_queued,
        c.tx_packets,
        c.tx_bytes,
        c.to_host_stack,
        c.dhcp_xid_taken,
    ];
    v.extend(DropReason::ALL.iter().map(|&r| c.dropped.get(r)));
    v
}

/// Runs one port and its frames; Err names the first difference.
fn check_case(
    fx: &mut Fixture,
    ids: &mut Vec<u16>,
    spec: &PortSpec,
    frames: &[FrameSpec],
    core_spec: Option<&PortSpec>,
) -> Result<(), String> {
    // `core_spec`: a different port for the core side only (to show the test can fail).
    let mut port = setup(fx, spec, ids);
    if let Some(cs) = core_spec {
        port.set_mode_flag(cs.mode, cs.flag);
    }
    let port_before = port_numbers(&fx.prog.port_counters().map_err(|e| e.to_string())?);
    for f in frames {
        let raw = build(f);
        if !testable(&raw) {
            continue;
        }
        let gso = if f.gso { 1400 } else { 0 };
        let (hook, ifindex, want, frame) = if f.hook_master {
            let want = expect_rx(&mut port, &raw);
            (Hook::FromMaster, 0, want, raw)
        } else {
            let from = port
                .slaves()
                .nth(f.sender % port.len())
                .map(|s| s.id())
                .ok_or("no slave")?;
            let mut seen = raw.clone();
            // The identity rewrite, but for a guarded slave's foreign source MAC (dropped as
            // such before it, as the worker and the programs do).
            let guarded = port.slave(from).is_some_and(|s| s.mac_guard());
            if !(guarded && seen.get(6..12).is_some_and(|m| m != MASTER_MAC)) {
                assert_master_identity(&mut seen, MacAddr(MASTER_MAC), false);
            }
            let want = expect_tx(&mut port, from, &seen, f.gso);
            (
                Hook::FromSlave,
                HOST_BASE + u32::from(from.get()),
                want,
                raw,
            )
        };
        let got = fx
            .prog
            .test_run(hook, &frame, ifindex, gso)
            .map_err(|e| format!("test run: {e} (len {} hook {hook:?})", frame.len()))?;
        let Some(t) = got.trace else {
            return Err(format!("no trace for {f:?}"));
        };
        SEEN.with(|s| {
            s.borrow_mut()
                .insert(format!("{:?} {:?}", want.verdict, want.drop));
        });
        if t != want {
            return Err(format!(
                "{hook:?} {:?}/{:?} frame {f:?}\n bytes {frame:02x?}\n bpf  {t:?}\n core {want:?}",
                spec.mode, spec.flag
            ));
        }
    }
    // Counters: the core's from zero, the maps' as deltas.
    let after = port_numbers(&fx.prog.port_counters().map_err(|e| e.to_string())?);
    let delta: Vec<u64> = after.iter().zip(&port_before).map(|(a, b)| a - b).collect();
    if delta != port_numbers(&port.counters) {
        return Err(format!(
            "port counters: bpf {delta:?} core {:?}",
            port_numbers(&port.counters)
        ));
    }
    for s in port.slaves() {
        let got: SlaveCounters = fx
            .prog
            .slave_counters(s.id().get())
            .map_err(|e| e.to_string())?;
        if got != s.counters {
            return Err(format!(
                "slave {} counters: bpf {got:?} core {:?}",
                s.id(),
                s.counters
            ));
        }
    }
    Ok(())
}

/// `BPF_PROG_TEST_RUN` refuses (EINVAL) an IPv4 or IPv6 frame shorter than its fixed IP header
/// (it parses the header for the socket it fakes); the programs handle them like any malformed
/// frame, but they cannot be run here.
fn testable(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        Some([0x08, 0x00]) => frame.len() >= 14 + 20,
        Some([0x86, 0xdd]) => frame.len() >= 14 + 40,
        Some(_) => true,
        None => false,
    }
}

thread_local! {
    /// Every (verdict, drop) the core expected in this thread: the generator's coverage.
    static SEEN: RefCell<std::collections::BTreeSet<String>> = RefCell::default();
}

fn root_or_skip() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test loads BPF programs and needs root");
}

#[test]
#[ignore = "needs root, loads BPF programs"]
fn bpf_decides_like_the_core() {
    root_or_skip();
    let state = RefCell::new((Fixture::new("eq"), Vec::new()));
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (port_spec(), prop::collection::vec(frame_spec(), 1..40));
    let result = runner.run(&strategy, |(spec, frames)| {
        let (fx, ids) = &mut *state.borrow_mut();
        check_case(fx, ids, &spec, &frames, None).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = SEEN.with(|s| s.borrow().clone());
    eprintln!("covered: {seen:#?}");
    for must in [
        "Deliver None",
        "Transmit None",
        "ToHost None",
        "Route None",
        "Multicast None",
        "Pass None",
        "PassAndMulticast None",
        "Drop Some((PrivateUnicast, Sender))",
        "Drop Some((SpoofedSource, Sender))",
        "Drop Some((RouterMessage, Sender))",
        "Drop Some((MtuExceeded, Receiver))",
        "Drop Some((MtuExceeded, Master))",
        "Drop Some((L3Multicast, Sender))",
        "Drop Some((L3NotIp, Sender))",
        "Drop Some((MalformedIp, Sender))",
        "Drop Some((PauseFrame, Sender))",
        "Drop Some((ForeignVlan, Master))",
    ] {
        assert!(seen.contains(must), "the generator never produced {must}");
    }
}

/// Every mode × flag, with a fixed set of frames each (so none is left to chance).
#[test]
#[ignore = "needs root, loads BPF programs"]
fn every_mode_and_flag() {
    root_or_skip();
    let mut fx = Fixture::new("mf");
    let mut ids = Vec::new();
    let mut runner = TestRunner::deterministic();
    for mode in Mode::ALL {
        for flag in Flag::ALL {
            let spec = (
                Just(mode),
                Just(flag),
                prop::collection::vec(slave_spec(), 2..=5),
                prop::bool::weighted(0.5),
            )
                .prop_map(|(mode, flag, slaves, host)| PortSpec {
                    mode,
                    flag,
                    master_mtu: 1500,
                    slaves,
                    host,
                });
            let frames = prop::collection::vec(frame_spec(), 60..=60);
            for _ in 0..20 {
                let s = spec.new_tree(&mut runner).expect("spec").current();
                let f = frames.new_tree(&mut runner).expect("frames").current();
                if let Err(e) = check_case(&mut fx, &mut ids, &s, &f, None) {
                    panic!("{mode:?}/{flag:?}: {e}");
                }
            }
        }
    }
}

/// The comparison can fail: the core told `private` while the maps say `bridge` must differ on
/// slave-to-slave traffic.
#[test]
#[ignore = "needs root, loads BPF programs"]
fn a_wrong_expectation_is_caught() {
    root_or_skip();
    let mut fx = Fixture::new("neg");
    let mut ids = Vec::new();
    let slave = |addr| SlaveSpec {
        mtu: 1500,
        up: true,
        guard: false,
        router: false,
        mac_guard: false,
        addrs: vec![addr],
    };
    let spec = PortSpec {
        mode: Mode::L3,
        flag: Flag::Bridge,
        master_mtu: 1500,
        slaves: vec![slave(0), slave(1)],
        host: false,
    };
    let frame = FrameSpec {
        kind: 1,
        dst_mac: 0,
        src_mac: 0,
        src: 0,
        dst: 1,
        unspecified_src: false,
        vlan: None,
        pad: 0,
        cut: None,
        flip: None,
        gso: false,
        hook_master: false,
        sender: 0,
        ext_headers: 0,
    };
    assert!(check_case(&mut fx, &mut ids, &spec, std::slice::from_ref(&frame), None).is_ok());
    let wrong = PortSpec {
        flag: Flag::Private,
        ..spec.clone()
    };
    let err = check_case(&mut fx, &mut ids, &spec, &[frame], Some(&wrong))
        .expect_err("a private core must disagree with bridge maps");
    assert!(err.contains("PrivateUnicast"), "{err}");
}

/// DHCP replies are steered alike, in l2 and not in l3: a fixed sequence of requests (broadcast
/// and unicast, one xid taken over by another slave) and replies (unicast to an unowned
/// address, broadcast — not steered, fanned out —, unknown xid), so that `Steer` is compared.
#[test]
#[ignore = "needs root, loads BPF programs"]
fn dhcp_replies_are_steered_alike() {
    root_or_skip();
    let mut fx = Fixture::new("dhcp");
    let mut ids = Vec::new();
    let slave = |addr| SlaveSpec {
        mtu: 1500,
        up: true,
        guard: true,
        router: false,
        mac_guard: false,
        addrs: vec![addr],
    };
    // kind, dst_mac (1 broadcast, 0 master, 4 other), dst index, xid (ext_headers), hook, sender
    let frame =
        |kind: u8, dst_mac: u8, dst: usize, xid: u8, master: bool, sender: usize| FrameSpec {
            kind,
            dst_mac,
            src_mac: if master { 2 } else { 0 },
            src: if master { 7 } else { 0 },
            dst,
            unspecified_src: !master,
            vlan: None,
            pad: 0,
            cut: None,
            flip: None,
            gso: false,
            hook_master: master,
            sender,
            ext_headers: xid,
        };
    let frames = [
        frame(12, 1, 0, 0, false, 0), // s0 broadcasts a DISCOVER, xid 0
        frame(12, 4, 7, 1, false, 1), // s1 unicasts a REQUEST, xid 1
        frame(13, 0, 5, 0, true, 0),  // unicast OFFER to an unowned address: s0
        frame(13, 1, 0, 1, true, 0),  // broadcast ACK: not steered, the master and every slave
        frame(13, 0, 5, 2, true, 0),  // unknown xid: passed
        frame(13, 1, 0, 2, true, 0),  // unknown xid, broadcast: everyone
        frame(13, 0, 1, 1, true, 0),  // to an owned address: its owner, not the xid's slave
        frame(12, 1, 0, 0, false, 2), // s2 takes xid 0 over (counted)
        frame(13, 0, 5, 0, true, 0),  // now for s2
    ];
    for mode in Mode::ALL {
        let spec = PortSpec {
            mode,
            flag: Flag::Bridge,
            master_mtu: 1500,
            slaves: vec![slave(1), slave(2), slave(3)],
            host: false,
        };
        if let Err(e) = check_case(&mut fx, &mut ids, &spec, &frames, None) {
            panic!("{mode:?}: {e}");
        }
    }
    let seen = SEEN.with(|s| s.borrow().clone());
    for must in ["Steer None", "PassAndMulticast None"] {
        assert!(seen.contains(must), "never steered: {must} (seen {seen:?})");
    }
}
