use super::*;
use crate::frames::{dhcp_frame, ipv4_frame, v4, EXT_MAC, MASTER_MAC};
use crate::wire::MacAddr;

fn id(n: u16) -> SlaveId {
    SlaveId::from_raw(n)
}

fn discover(xid: u32, options: &[u8]) -> Vec<u8> {
    dhcp_frame(
        MacAddr::BROADCAST,
        MASTER_MAC,
        v4(0, 0, 0, 0),
        v4(255, 255, 255, 255),
        true,
        xid,
        options,
    )
}

#[test]
fn parses_requests_and_replies() {
    let f = discover(0xdead_beef, &[53, 1, 1, 61, 3, 1, 2, 3, 255]);
    let m = parse(&f).expect("a request");
    assert_eq!(m.direction, Direction::Request);
    assert_eq!(m.xid, 0xdead_beef);
    assert_eq!(m.message_type(), Some(DISCOVER));
    assert_eq!(m.client_id(), Some(&[1u8, 2, 3][..]));
    let r = dhcp_frame(
        MASTER_MAC,
        EXT_MAC,
        v4(192, 0, 2, 1),
        v4(192, 0, 2, 100),
        false,
        7,
        &[255],
    );
    let m = parse(&r).expect("a reply");
    assert_eq!((m.direction, m.xid), (Direction::Reply, 7));
    assert_eq!(m.client_id(), None);
}

#[test]
fn refuses_what_is_not_dhcp() {
    // Plain UDP, wrong op for the ports, cut short, a later fragment, tagged.
    assert_eq!(
        parse(&ipv4_frame(
            MASTER_MAC,
            EXT_MAC,
            v4(192, 0, 2, 1),
            v4(192, 0, 2, 2)
        )),
        None
    );
    let mut f = discover(1, &[255]);
    f[14 + 28] = 2; // op 2 on 68 -> 67
    assert_eq!(parse(&f), None);
    let f = discover(1, &[255]);
    let mut short = f.clone();
    short.truncate(14 + 20 + 8 + 200);
    assert_eq!(parse(&short), None);
    let mut frag = f.clone();
    frag[14 + 7] = 1;
    assert_eq!(parse(&frag), None);
    let tagged = crate::frames::tagged(&f, 5);
    assert_eq!(parse(&tagged), None);
    for n in 0..f.len() {
        let _ = parse(&f[..n]); // never panics
    }
}

#[test]
fn options_cut_off_or_padded() {
    let m = |o: &[u8]| {
        parse(&discover(1, o)).map(|m| (m.message_type(), m.client_id().map(<[u8]>::to_vec)))
    };
    assert_eq!(m(&[0, 0, 53, 1, 3, 255]), Some((Some(REQUEST), None)));
    assert_eq!(m(&[53, 1, 1, 61, 9, 1]), Some((Some(DISCOVER), None)));
    assert_eq!(m(&[255, 61, 1, 1]), Some((None, None)));
    assert_eq!(m(&[]), Some((None, None)));
}

#[test]
fn xid_table_steers_expires_and_counts_takeovers() {
    let mut t = XidTable::default();
    assert_eq!(t.record(5, id(1), 0), Recorded::Fresh);
    assert_eq!(t.lookup(5, XID_TTL_NS - 1), Some(id(1)));
    assert_eq!(t.lookup(5, XID_TTL_NS), None);
    assert_eq!(t.lookup(6, 0), None);
    // The same slave again refreshes it.
    assert_eq!(t.record(5, id(1), 10), Recorded::Fresh);
    assert_eq!(t.lookup(5, XID_TTL_NS + 5), Some(id(1)));
    // Another slave with a live entry's xid takes it over, counted.
    assert_eq!(t.record(5, id(2), 20), Recorded::Taken { from: id(1) });
    assert_eq!(t.lookup(5, 21), Some(id(2)));
    // An expired one is simply replaced.
    assert_eq!(t.record(5, id(3), 20 + XID_TTL_NS), Recorded::Fresh);
    t.forget_slave(id(3));
    assert_eq!(t.lookup(5, 20 + XID_TTL_NS), None);
}

#[test]
fn xid_table_is_bounded_and_drops_the_oldest() {
    let mut t = XidTable::default();
    for x in 0..XID_MAX as u32 {
        t.record(x, id(1), u64::from(x) + 1);
    }
    assert_eq!(t.len(), XID_MAX);
    t.record(99_999, id(2), 5_000);
    assert_eq!(t.len(), XID_MAX);
    assert_eq!(t.lookup(0, 5_000), None, "the oldest went");
    assert_eq!(t.lookup(1, 5_000), Some(id(1)));
    assert_eq!(t.lookup(99_999, 5_000), Some(id(2)));
    // All expired: they all go at the next insert.
    t.record(123_456, id(3), 10 * XID_TTL_NS);
    assert_eq!(t.len(), 1);
}

#[test]
fn client_id_watch_warns_once_per_slave() {
    let mut w = ClientIdWatch::default();
    let none = discover(1, &[53, 1, 1, 255]);
    let a = discover(2, &[53, 1, 3, 61, 2, 0xaa, 1, 255]);
    let b = discover(3, &[53, 1, 1, 61, 2, 0xbb, 2, 255]);
    let release = discover(4, &[53, 1, 7, 255]);
    assert_eq!(
        w.check(id(1), &parse(&none).expect("dhcp"), 0),
        Some(ClientIdProblem::Missing)
    );
    assert_eq!(
        w.check(id(1), &parse(&none).expect("dhcp"), 1),
        None,
        "rate-limited"
    );
    assert_eq!(
        w.check(id(1), &parse(&none).expect("dhcp"), WARN_EVERY_NS),
        Some(ClientIdProblem::Missing)
    );
    assert_eq!(
        w.check(id(2), &parse(&release).expect("dhcp"), 2),
        None,
        "a release asks for nothing"
    );
    assert_eq!(w.check(id(2), &parse(&a).expect("dhcp"), 3), None);
    assert_eq!(
        w.check(id(3), &parse(&b).expect("dhcp"), 4),
        None,
        "distinct ids are fine"
    );
    assert_eq!(
        w.check(id(3), &parse(&a).expect("dhcp"), 5),
        Some(ClientIdProblem::SameAs { other: id(2) })
    );
    w.forget_slave(id(2));
    assert_eq!(
        w.check(id(4), &parse(&a).expect("dhcp"), 6),
        Some(ClientIdProblem::SameAs { other: id(3) })
    );
    // Long after, the same id is no longer "recent".
    let later = 6 + CLIENT_ID_RECENT_NS;
    assert_eq!(w.check(id(5), &parse(&a).expect("dhcp"), later), None);
}

mod steering {
    use super::*;
    use crate::decide::{decide_rx, RxAction, RxMeta, TxAction, TxMeta};
    use crate::frames::ip;
    use crate::{IfName, LinkTypeArgs, Master, Mode, NewSlave, Port};

    fn port(mode: Mode) -> (Port, SlaveId, SlaveId) {
        let mut p = Port::new(Master {
            name: IfName::new("m0").expect("name"),
            mac: MASTER_MAC,
            mtu: 1500,
        });
        let mut add = |n: &str| {
            let args = LinkTypeArgs {
                mode: Some(mode),
                flag: None,
            };
            let id = p
                .add_slave(NewSlave::new(IfName::new(n).expect("name"), args))
                .expect("add")
                .id;
            p.set_slave_up(id, true).expect("up");
            id
        };
        let (a, b) = (add("s0"), add("s1"));
        (p, a, b)
    }

    fn reply(broadcast: bool, xid: u32) -> Vec<u8> {
        let (mac, dst) = if broadcast {
            (MacAddr::BROADCAST, v4(255, 255, 255, 255))
        } else {
            (MASTER_MAC, v4(192, 0, 2, 100))
        };
        dhcp_frame(
            mac,
            EXT_MAC,
            v4(192, 0, 2, 1),
            dst,
            false,
            xid,
            &[53, 1, 2, 255],
        )
    }

    fn send(p: &mut Port, from: SlaveId, xid: u32, now: u64) -> TxAction {
        let meta = TxMeta {
            now,
            ..TxMeta::default()
        };
        p.handle_tx(from, &discover(xid, &[53, 1, 1, 255]), meta)
    }

    fn rx(p: &mut Port, f: &[u8], now: u64) -> RxAction {
        let meta = RxMeta {
            now,
            ..RxMeta::default()
        };
        let want = decide_rx(p, f, meta);
        assert_eq!(p.handle_rx(f, meta), want);
        want
    }

    #[test]
    fn replies_go_to_the_slave_that_asked() {
        let (mut p, a, b) = port(Mode::L2);
        assert_eq!(send(&mut p, a, 1, 0), TxAction::Multicast);
        assert_eq!(send(&mut p, b, 2, 0), TxAction::Multicast);
        assert_eq!(rx(&mut p, &reply(false, 1), 5), RxAction::Steer(a));
        assert_eq!(rx(&mut p, &reply(false, 2), 5), RxAction::Steer(b));
        // Broadcast replies are not steered: every slave gets them, as from the kernel.
        assert_eq!(rx(&mut p, &reply(true, 2), 5), RxAction::PassAndMulticast);
        // Unknown or expired xid: as without steering.
        assert_eq!(rx(&mut p, &reply(false, 3), 5), RxAction::Pass);
        assert_eq!(rx(&mut p, &reply(true, 3), 5), RxAction::PassAndMulticast);
        assert_eq!(rx(&mut p, &reply(false, 1), XID_TTL_NS), RxAction::Pass);
        let (ca, cb) = (
            p.slave(a).expect("a").counters,
            p.slave(b).expect("b").counters,
        );
        assert_eq!((ca.rx_dhcp_steered, ca.rx_packets), (1, 1));
        assert_eq!((cb.rx_dhcp_steered, cb.rx_packets), (1, 1));
        assert_eq!(p.counters.dhcp_xid_taken, 0);
    }

    #[test]
    fn an_owned_address_wins_and_a_down_or_removed_slave_is_not_steered_to() {
        let (mut p, a, b) = port(Mode::L2);
        send(&mut p, a, 1, 0);
        p.add_address(b, ip("192.0.2.100")).expect("address");
        assert_eq!(rx(&mut p, &reply(false, 1), 1), RxAction::Deliver(b));
        p.set_slave_up(a, false).expect("down");
        assert_eq!(rx(&mut p, &reply(true, 1), 1), RxAction::PassAndMulticast);
        p.set_slave_up(a, true).expect("up");
        assert_eq!(rx(&mut p, &reply(false, 1), 1), RxAction::Deliver(b));
        p.remove_address(b, ip("192.0.2.100")).expect("address");
        assert_eq!(rx(&mut p, &reply(false, 1), 1), RxAction::Steer(a));
        p.remove_slave(a).expect("remove");
        assert!(p.dhcp_xids().is_empty());
    }

    #[test]
    fn the_newest_sender_of_an_xid_wins_counted() {
        let (mut p, a, b) = port(Mode::L2);
        send(&mut p, a, 9, 0);
        send(&mut p, b, 9, 1);
        assert_eq!(p.counters.dhcp_xid_taken, 1);
        assert_eq!(rx(&mut p, &reply(false, 9), 2), RxAction::Steer(b));
    }

    #[test]
    fn l3_remembers_nothing() {
        let (mut p, a, _) = port(Mode::L3);
        // The broadcast DISCOVER cannot leave an l3 slave (R-TX-L3-3).
        assert!(matches!(send(&mut p, a, 1, 0), TxAction::Drop { .. }));
        assert!(p.dhcp_xids().is_empty());
        assert_eq!(rx(&mut p, &reply(false, 1), 1), RxAction::Pass);
    }
}

#[test]
fn options_copied_in_part_say_nothing_about_what_is_missing() {
    let mut w = ClientIdWatch::default();
    // The copy ended before a client id could be seen: unknown, not missing.
    assert_eq!(
        w.check_options(id(1), &[53, 1, 1, 12, 3, b'a'], true, 0),
        None
    );
    assert_eq!(
        w.check_options(id(1), &[53, 1, 1, 12, 9, b'a'], false, 0),
        None
    );
    assert_eq!(
        w.check_options(id(1), &[53, 1, 1, 12, 1, b'a'], false, 0),
        Some(ClientIdProblem::Missing)
    );
    assert_eq!(
        find_option(&[0, 61, 2, 7, 8, 255], 61),
        Found::Value(&[7, 8])
    );
    assert_eq!(find_option(&[61, 2, 7], 61), Found::CutOff);
    assert_eq!(find_option(&[12, 0], 61), Found::Absent);
}

proptest::proptest! {
    /// A valid DHCP frame with any bytes overwritten and cut anywhere (IHL, total length,
    /// ports, op, option lengths overrunning the end): `parse` never panics, and what it
    /// finds lies inside the frame; options are searched without panicking and a found value
    /// lies inside the options.
    #[test]
    fn malformed_frames_never_panic(
        options in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        edits in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..8),
        cut in 0usize..400,
    ) {
        let mut f = discover(0x0102_0304, &options);
        for (at, b) in edits {
            if let Some(x) = f.get_mut(at) {
                *x = b;
            }
        }
        f.truncate(cut.max(f.len().saturating_sub(cut)));
        if let Some(m) = parse(&f) {
            let (start, end) = (f.as_ptr() as usize, f.as_ptr() as usize + f.len());
            let o = m.options.as_ptr() as usize;
            proptest::prop_assert!(o >= start && o + m.options.len() <= end);
            for code in [53, 61, 1, 255, 0] {
                if let Found::Value(v) = find_option(m.options, code) {
                    let p = v.as_ptr() as usize;
                    proptest::prop_assert!(p >= o && p + v.len() <= o + m.options.len());
                }
            }
            let mut w = ClientIdWatch::default();
            let _ = w.check(id(1), &m, 0);
            let _ = w.check_options(id(2), m.options, true, 1);
        }
        for code in [53, 61] {
            let _ = find_option(&options, code);
        }
    }
}
