//! Properties that must hold for every frame and every port state (issue #3, spec §4–§6).

// Test fixtures: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipvlan_core::frames::*;
use ipvlan_core::wire::MacAddr;
use ipvlan_core::{
    classify, decide_rx, decide_tx, multicast_fanout, Flag, IfName, LinkTypeArgs, Master, McCopy,
    McOrigin, Mode, NewSlave, Port, PortError, RxAction, RxMeta, SlaveId, TxAction, TxMeta,
};
use proptest::prelude::*;

const SLAVES: u8 = 4;

fn mode() -> impl Strategy<Value = Mode> {
    prop::sample::select(Mode::ALL.to_vec())
}

fn flag() -> impl Strategy<Value = Flag> {
    prop::sample::select(Flag::ALL.to_vec())
}

/// A port with SLAVES slaves, some down, owning 192.0.2.1N and 2001:db8::1N.
fn port(mode: Mode, flag: Flag, up: [bool; SLAVES as usize]) -> (Port, Vec<SlaveId>) {
    let mut p = Port::new(Master {
        name: IfName::new("m0").unwrap(),
        mac: MASTER_MAC,
        mtu: 1500,
    });
    let mut ids = Vec::new();
    for n in 0..SLAVES {
        let args = LinkTypeArgs {
            mode: Some(mode),
            flag: Some(flag),
        };
        let id = p
            .add_slave(NewSlave::new(IfName::new(&format!("s{n}")).unwrap(), args))
            .unwrap()
            .id;
        p.set_slave_up(id, up[n as usize]).unwrap();
        p.add_address(id, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + n)))
            .unwrap();
        p.add_address(id, IpAddr::V6(slave_v6(n))).unwrap();
        ids.push(id);
    }
    (p, ids)
}

fn slave_v6(n: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + u16::from(n))
}

/// Addresses that hit slaves, the master and the outside.
fn addr_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        (0u8..SLAVES + 2).prop_map(|n| Ipv4Addr::new(192, 0, 2, 10 + n)),
        Just(Ipv4Addr::new(192, 0, 2, 1)),
        Just(Ipv4Addr::new(192, 0, 2, 255)),
        Just(Ipv4Addr::new(239, 1, 1, 1)),
        any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn addr_v6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        (0u8..SLAVES + 2).prop_map(slave_v6),
        Just("ff02::1".parse().unwrap()),
        any::<u128>().prop_map(Ipv6Addr::from),
    ]
}

fn mac() -> impl Strategy<Value = MacAddr> {
    prop_oneof![
        Just(MASTER_MAC),
        Just(EXT_MAC),
        Just(MacAddr::BROADCAST),
        Just(MacAddr([0x01, 0, 0x5e, 1, 1, 1])),
        Just(MacAddr([0x33, 0x33, 0, 0, 0, 1])),
        any::<[u8; 6]>().prop_map(MacAddr),
    ]
}

/// Well-formed frames of every kind IPVLAN distinguishes, plus random bytes.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (mac(), mac(), addr_v4(), addr_v4()).prop_map(|(d, s, a, b)| ipv4_frame(d, s, a, b)),
        (mac(), mac(), addr_v6(), addr_v6()).prop_map(|(d, s, a, b)| ipv6_frame(d, s, a, b)),
        (mac(), addr_v4(), addr_v4()).prop_map(|(s, a, b)| arp_request(s, a, b)),
        (mac(), mac(), addr_v4(), addr_v4()).prop_map(|(d, s, a, b)| arp_reply(d, s, a, b)),
        (mac(), addr_v6()).prop_map(|(s, t)| dad_probe(s, t)),
        (mac(), addr_v6(), addr_v6()).prop_map(|(s, a, t)| neighbour_solicit(s, a, t)),
        (mac(), addr_v4(), addr_v4()).prop_map(|(s, a, g)| ipv4_multicast(s, a, g)),
        (mac(), mac(), addr_v4(), addr_v4(), any::<u16>())
            .prop_map(|(d, s, a, b, tci)| tagged(&ipv4_frame(d, s, a, b), tci)),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

fn ups() -> impl Strategy<Value = [bool; SLAVES as usize]> {
    any::<[bool; SLAVES as usize]>()
}

fn is_unicast_between_slaves(port: &Port, frame: &[u8], action: TxAction) -> bool {
    let dst_mac_unicast = classify(frame)
        .map(|c| c.dst_mac.is_unicast())
        .unwrap_or(false);
    dst_mac_unicast && matches!(action, TxAction::Deliver(_)) && port.len() > 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Classification never panics, whatever the bytes.
    #[test]
    fn classification_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        let _ = classify(&bytes);
    }

    /// Asserting the master's identity never panics on any bytes, leaves no other MAC in the
    /// Ethernet source, is idempotent, and keeps the length (in-place rewrite only).
    #[test]
    fn master_identity_is_total_and_idempotent(
        f in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>(), partial in any::<bool>()
    ) {
        let mut f = f;
        if !f.is_empty() {
            let i = at.index(f.len());
            f[i] = byte;
        }
        let len = f.len();
        let _ = ipvlan_core::identity::assert_master_identity(&mut f, MASTER_MAC, partial);
        prop_assert_eq!(f.len(), len);
        if f.len() >= 14 {
            prop_assert_eq!(&f[6..12], &MASTER_MAC.0[..]);
        }
        let again = ipvlan_core::identity::assert_master_identity(&mut f, MASTER_MAC, partial);
        prop_assert!(!again.any(), "second pass changed {:?}", again);
    }

    /// Classification of mutated valid frames never panics either (reaches deeper paths).
    #[test]
    fn classification_of_mutated_frames_never_panics(
        f in frame(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()
    ) {
        let mut f = f;
        if !f.is_empty() {
            let i = at.index(f.len());
            f[i] = byte;
            f.truncate(cut.index(f.len()) + 1);
        }
        let _ = classify(&f);
    }

    /// R-TX-PRIV-1: private never delivers unicast from one slave to another.
    #[test]
    fn private_never_switches_unicast(m in mode(), up in ups(), f in frame()) {
        let (p, _) = port(m, Flag::Private, up);
        let action = decide_tx(&p, &f, TxMeta::default());
        prop_assert!(!matches!(action, TxAction::Deliver(_)), "{:?}", action);
    }

    /// R-TX-VEPA-1: vepa never delivers unicast locally on transmit.
    #[test]
    fn vepa_never_delivers_locally(m in mode(), up in ups(), f in frame()) {
        let (p, _) = port(m, Flag::Vepa, up);
        let action = decide_tx(&p, &f, TxMeta::default());
        prop_assert!(!matches!(action, TxAction::Deliver(_)), "{:?}", action);
    }

    /// R-MC-5: a multicast frame never returns to its sender; and a unicast frame returns to its
    /// sender only when addressed to the sender's own address (R-SPC-LOOP-2).
    #[test]
    fn no_frame_returns_to_its_sender(
        m in mode(), fl in flag(), up in ups(), f in frame(), sender in 0..SLAVES as usize
    ) {
        let (p, ids) = port(m, fl, up);
        let from = ids[sender];
        let mut out = Vec::new();
        multicast_fanout(&p, McOrigin::Slave(from), &f, false, &mut out);
        prop_assert!(!out.iter().any(|c| matches!(c, McCopy::Deliver(s) | McCopy::Drop(s, _) if *s == from)));
        if let TxAction::Deliver(to) = decide_tx(&p, &f, TxMeta::default()) {
            if to == from {
                let keys = classify(&f).unwrap().keys_tx();
                let own = keys.dst.is_some_and(|k| p.addresses(from).contains(&k));
                prop_assert!(own, "returned to sender without being addressed to it");
            }
        }
    }

    /// R-TX-L3-3, R-RX-L3-2: l3/l3s never distribute broadcast or multicast, either way. The only
    /// multicast/broadcast *frames* that reach an l3 slave are the ones the kernel keys by a
    /// unicast target (an ARP frame or a DAD probe for that slave's own address), and then only
    /// that one slave gets it; IPv4 broadcast/multicast packets never reach a slave.
    #[test]
    fn l3_never_delivers_broadcast(
        l3s in any::<bool>(), fl in flag(), up in ups(), f in frame()
    ) {
        let m = if l3s { Mode::L3s } else { Mode::L3 };
        let (p, _) = port(m, fl, up);
        let Ok(c) = classify(&f) else { return Ok(()); };
        let group_ip = match c.l3 {
            ipvlan_core::L3::Ipv4 { dst, .. } => dst.is_broadcast() || dst.is_multicast() || dst.octets()[3] == 255,
            ipvlan_core::L3::Ipv6 { dst, .. } => dst.is_multicast() && !c.is_dad_probe(),
            _ => false,
        };
        let tx = decide_tx(&p, &f, TxMeta::default());
        let rx = decide_rx(&p, &f, RxMeta::default());
        prop_assert!(!matches!(tx, TxAction::Multicast), "{:?}", tx);
        prop_assert!(!matches!(rx, RxAction::PassAndMulticast), "{:?}", rx);
        if c.dst_mac.is_multicast() {
            prop_assert!(!matches!(tx, TxAction::Transmit { .. } | TxAction::Route { .. }), "{:?}", tx);
        }
        if group_ip {
            prop_assert!(!matches!(rx, RxAction::Deliver(_) | RxAction::DeliverViaHost(_)), "{:?}", rx);
            prop_assert!(!matches!(tx, TxAction::Deliver(_)), "{:?}", tx);
        }
        for to in [
            if let TxAction::Deliver(t) = tx { Some((t, c.keys_tx())) } else { None },
            if let RxAction::Deliver(t) | RxAction::DeliverViaHost(t) = rx { Some((t, c.keys_rx())) } else { None },
        ].into_iter().flatten() {
            let (to, keys) = to;
            prop_assert!(keys.dst.is_some_and(|k| p.addresses(to).contains(&k)));
        }
    }

    /// Frames that leave on the master always carry the master's MAC (R-MAC-4).
    #[test]
    fn egress_source_mac_is_the_master(m in mode(), fl in flag(), up in ups(), f in frame()) {
        let (p, _) = port(m, fl, up);
        if let TxAction::Transmit { src_mac } = decide_tx(&p, &f, TxMeta::default()) {
            prop_assert_eq!(src_mac, MASTER_MAC);
        }
    }

    /// Only up slaves are delivered to (R-ADDR-6, R-MC-2).
    #[test]
    fn only_up_slaves_receive(m in mode(), fl in flag(), up in ups(), f in frame(), sender in 0..SLAVES as usize) {
        let (p, ids) = port(m, fl, up);
        let is_up = |s: SlaveId| p.slave(s).unwrap().is_up();
        if let TxAction::Deliver(to) = decide_tx(&p, &f, TxMeta::default()) { prop_assert!(is_up(to)); }
        if let RxAction::Deliver(to) | RxAction::DeliverViaHost(to) = decide_rx(&p, &f, RxMeta::default()) {
            prop_assert!(is_up(to));
        }
        let mut out = Vec::new();
        multicast_fanout(&p, McOrigin::Slave(ids[sender]), &f, false, &mut out);
        for c in out { if let McCopy::Deliver(s) = c { prop_assert!(is_up(s)); } }
    }

    /// l2 bridge delivers unicast between slaves only to the owner of the destination address.
    #[test]
    fn unicast_goes_to_the_owner(m in mode(), up in ups(), f in frame()) {
        let (p, _) = port(m, Flag::Bridge, up);
        let action = decide_tx(&p, &f, TxMeta::default());
        if is_unicast_between_slaves(&p, &f, action) {
            if let TxAction::Deliver(to) = action {
                let k = classify(&f).unwrap().keys_tx().dst.unwrap();
                prop_assert!(p.addresses(to).contains(&k));
            }
        }
    }

    /// R-ADDR-3: whatever sequence of claims, releases and removals, an address has at most one
    /// owner, a refused claim names the owner, and lookups agree with ownership.
    #[test]
    fn an_address_has_at_most_one_owner(
        ops in prop::collection::vec((0u8..3, 0u8..6, 0u8..4, any::<bool>()), 1..80)
    ) {
        let (mut p, ids) = port(Mode::L2, Flag::Bridge, [true; SLAVES as usize]);
        let mut alive: Vec<SlaveId> = ids.clone();
        let pool: Vec<IpAddr> = (0..4u8).map(|n| IpAddr::V4(Ipv4Addr::new(203, 0, 113, n + 1))).collect();
        for (op, slave, addr, up) in ops {
            let Some(&s) = alive.get(usize::from(slave) % alive.len().max(1)) else { break };
            let a = pool[usize::from(addr)];
            match op {
                0 => match p.add_address(s, a) {
                    Ok(_) => {}
                    Err(PortError::AddressInUse { owner, .. }) => {
                        let o = p.table().owner(a).unwrap();
                        prop_assert_ne!(o, s);
                        prop_assert_eq!(p.slave(o).unwrap().name().as_str(), owner.as_str());
                    }
                    Err(e) => prop_assert!(false, "{}", e),
                },
                1 => { let _ = p.remove_address(s, a); }
                _ => {
                    if up { p.set_slave_up(s, !p.slave(s).unwrap().is_up()).unwrap(); }
                    else if alive.len() > 1 { p.remove_slave(s).unwrap(); alive.retain(|x| *x != s); }
                }
            }
            for a in &pool {
                let owners: Vec<_> = alive.iter().filter(|s| p.addresses(**s).contains(a)).collect();
                prop_assert!(owners.len() <= 1, "{} owned by {:?}", a, owners);
                let looked = p.lookup(*a);
                match owners.first() {
                    Some(&&o) => prop_assert_eq!(looked, p.slave(o).unwrap().is_up().then_some(o)),
                    None => prop_assert_eq!(looked, None),
                }
            }
        }
    }
}

proptest! {
    /// DHCP steering (`ipvlan_core::dhcp`): whatever slaves sent which requests, a reply from
    /// the wire is steered (`Steer`) only in l2, only when unicast (a broadcast reply reaches
    /// every slave, as from the kernel), only to an up slave, only to the last slave that sent
    /// its xid within the TTL, and only to an address no slave serves; anything else is
    /// decided as if steering did not exist.
    #[test]
    fn dhcp_replies_go_only_to_the_last_live_sender_of_their_xid(
        m in mode(),
        up in ups(),
        requests in prop::collection::vec((0..SLAVES as usize, 0u32..4, 0u64..100), 0..8),
        xid in 0u32..6,
        broadcast in any::<bool>(),
        dst in addr_v4(),
        at in 0u64..200,
    ) {
        let (mut p, ids) = port(m, Flag::Bridge, up);
        let secs = 1_000_000_000u64;
        let mut last = std::collections::HashMap::new();
        let mut sorted = requests.clone();
        sorted.sort_by_key(|r| r.2);
        for (s, x, t) in sorted {
            let f = dhcp_frame(MacAddr::BROADCAST, MASTER_MAC, Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST, true, x, &[53, 1, 1, 255]);
            let meta = TxMeta { now: t * secs, ..TxMeta::default() };
            if matches!(p.handle_tx(ids[s], &f, meta), TxAction::Multicast) && m == Mode::L2 {
                last.insert(x, (ids[s], t));
            }
        }
        let (mac, dst) = if broadcast { (MacAddr::BROADCAST, Ipv4Addr::BROADCAST) } else { (MASTER_MAC, dst) };
        let reply = dhcp_frame(mac, EXT_MAC, Ipv4Addr::new(192, 0, 2, 254), dst, false, xid, &[255]);
        let meta = RxMeta { now: at * secs, ..RxMeta::default() };
        let action = decide_rx(&p, &reply, meta);
        let live = last.get(&xid).filter(|(s, t)| {
            at.saturating_sub(*t) * secs < ipvlan_core::dhcp::XID_TTL_NS && p.slave(*s).unwrap().is_up()
        });
        match action {
            RxAction::Steer(to) => {
                prop_assert_eq!(m, Mode::L2);
                prop_assert_eq!(live.map(|l| l.0), Some(to));
                prop_assert!(p.slave(to).unwrap().is_up());
                prop_assert!(!broadcast);
                prop_assert_eq!(p.lookup(dst.into()), None);
            }
            other => {
                // Not steered: the reply is decided as an ordinary frame (an empty port table).
                let (fresh, _) = port(m, Flag::Bridge, up);
                prop_assert_eq!(other, decide_rx(&fresh, &reply, meta));
                prop_assert!(live.is_none() || broadcast || p.lookup(dst.into()).is_some());
            }
        }
    }
}
