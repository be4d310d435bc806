use super::*;
use crate::frames::{ip, MASTER_MAC};

fn master() -> Master {
    Master {
        name: IfName::new("m0").unwrap(),
        mac: MASTER_MAC,
        mtu: 1500,
    }
}

fn args(words: &str) -> LinkTypeArgs {
    LinkTypeArgs::parse(&words.split_whitespace().collect::<Vec<_>>()).unwrap()
}

fn add(port: &mut Port, name: &str, words: &str) -> SlaveId {
    port.add_slave(NewSlave::new(IfName::new(name).unwrap(), args(words)))
        .unwrap()
        .id
}

#[test]
fn r_obj_6_t_01_new_slave_without_args_is_l3_bridge() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "");
    assert_eq!((p.mode(), p.flag()), (Mode::L3, Flag::Bridge));
}

#[test]
fn t_02_create_with_mode_and_flag() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l2 private");
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Private));
}

#[test]
fn r_mode_1_t_06_second_slave_mode_changes_the_port() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    p.set_slave_up(s1, true).unwrap();
    assert!(!p.slave(s1).unwrap().noarp());
    let added = p
        .add_slave(NewSlave::new(IfName::new("s2").unwrap(), args("mode l3")))
        .unwrap();
    assert_eq!(p.mode(), Mode::L3);
    // The existing slave flips to NOARP and the change names it.
    assert!(p.slave(s1).unwrap().noarp());
    assert_eq!(added.change.noarp_changed, vec![s1]);
    assert_eq!(added.change.old_mode, Mode::L2);
    assert!(added.change.changed());
}

#[test]
fn r_crt_5_t_07_no_args_resets_l2_private_to_l3_private() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l2 private");
    add(&mut p, "s2", "");
    // No attributes: mode reset to l3 (kernel), flags untouched (R-CLI-1).
    assert_eq!((p.mode(), p.flag()), (Mode::L3, Flag::Private));
}

#[test]
fn r_crt_5_keep_port_mode_policy() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l2 private");
    let mut req = NewSlave::new(IfName::new("s2").unwrap(), args(""));
    req.missing_mode = MissingMode::KeepPort;
    let added = p.add_slave(req).unwrap();
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Private));
    assert!(!added.change.changed());
    // A flag alone with KeepPort: mode kept, flag replaced.
    let mut req = NewSlave::new(IfName::new("s3").unwrap(), args("vepa"));
    req.missing_mode = MissingMode::KeepPort;
    p.add_slave(req).unwrap();
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Vepa));
}

#[test]
fn r_crt_5_first_slave_with_keep_policy_still_defaults_to_l3() {
    let mut p = Port::new(master());
    let mut req = NewSlave::new(IfName::new("s1").unwrap(), args(""));
    req.missing_mode = MissingMode::KeepPort;
    p.add_slave(req).unwrap();
    assert_eq!(p.mode(), Mode::L3);
}

#[test]
fn r_mode_5_t_08_change_link_replaces_flag() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l3 private");
    add(&mut p, "s2", "mode l3 private");
    let change = p.change_link(args("mode l2"));
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Bridge));
    assert_eq!(change.old_flag, Flag::Private);
    // Without attributes: no-op.
    let none = p.change_link(LinkTypeArgs::default());
    assert!(!none.changed());
}

#[test]
fn r_mode_6_flag_change_alone_keeps_mode() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l2");
    p.change_link(args("vepa"));
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Vepa));
}

#[test]
fn r_mode_4_t_28_noarp_set_at_first_up_and_kept_when_down() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l3");
    assert!(!p.slave(s1).unwrap().noarp(), "not before the first up");
    p.set_slave_up(s1, true).unwrap();
    assert!(p.slave(s1).unwrap().noarp());
    p.set_slave_up(s1, false).unwrap();
    assert!(p.slave(s1).unwrap().noarp(), "kept when set down");
    let change = p.change_link(args("mode l2"));
    assert!(!p.slave(s1).unwrap().noarp());
    assert_eq!(change.noarp_changed, vec![s1]);
}

#[test]
fn r_mode_2_same_mode_touches_nothing() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l3");
    p.set_slave_up(s1, true).unwrap();
    let change = p.change_link(args("mode l3s"));
    // l3 → l3s keeps NOARP set: no flag flips.
    assert!(change.noarp_changed.is_empty());
    assert_eq!(change.new_mode, Mode::L3s);
}

#[test]
fn r_mtu_1_t_15_mtu_rules() {
    let mut p = Port::new(master());
    let s0 = add(&mut p, "s0", "mode l2");
    assert_eq!(p.slave(s0).unwrap().mtu(), 1500, "inherits the master's");
    let mut req = NewSlave::new(IfName::new("s1").unwrap(), args("mode l2"));
    req.mtu = Some(9000);
    let s1 = p.add_slave(req).unwrap().id;
    assert_eq!(
        p.slave(s1).unwrap().mtu(),
        9000,
        "R-MTU-2: above the master's is fine"
    );
    p.set_master_mtu(1400);
    assert_eq!(
        p.slave(s1).unwrap().mtu(),
        1400,
        "R-MTU-3: master change overwrites"
    );
    assert_eq!(p.slave(s0).unwrap().mtu(), 1400);
    p.set_slave_mtu(s1, 9000).unwrap();
    assert_eq!(p.slave(s1).unwrap().mtu(), 9000);
    for bad in [65536u32, 67, 0] {
        let err = p.set_slave_mtu(s1, bad).unwrap_err();
        assert_eq!(err, PortError::Config(ConfigError::Mtu(bad)));
        assert!(err.to_string().contains("between 68 and 65535"));
    }
    assert_eq!(
        p.slave(s1).unwrap().mtu(),
        9000,
        "refused changes leave it alone"
    );
}

#[test]
fn r_mtu_2_bad_mtu_at_creation_creates_nothing() {
    let mut p = Port::new(master());
    let mut req = NewSlave::new(IfName::new("s1").unwrap(), args("mode l2"));
    req.mtu = Some(67);
    assert!(p.add_slave(req).is_err());
    assert!(p.is_empty());
    assert_eq!(p.mode(), Mode::L3, "the port was not touched");
    // And the id was not consumed.
    assert_eq!(add(&mut p, "s1", "").get(), 1);
}

#[test]
fn names_are_unique_within_the_port() {
    let mut p = Port::new(master());
    add(&mut p, "s1", "mode l2");
    let err = p
        .add_slave(NewSlave::new(IfName::new("s1").unwrap(), args("mode l3")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a slave named \"s1\" already exists on this port"
    );
    assert_eq!(p.mode(), Mode::L2, "nothing half-done");
}

#[test]
fn r_devid_1_t_20_ids_through_the_port() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "");
    let s2 = add(&mut p, "s2", "");
    p.remove_slave(s1).unwrap();
    let s3 = add(&mut p, "s3", "");
    assert_eq!((s1.get(), s2.get(), s3.get()), (1, 2, 3));
    assert_eq!(
        p.link_local(s2),
        "fe80::200:0:200:1".parse::<std::net::Ipv6Addr>().unwrap()
    );
}

#[test]
fn r_life_3_removing_the_last_slave_empties_the_port() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    let s2 = add(&mut p, "s2", "mode l2");
    p.set_slave_up(s1, true).unwrap();
    p.add_address(s1, ip("192.0.2.11")).unwrap();
    let (gone, empty) = p.remove_slave(s1).unwrap();
    assert_eq!(gone.name().as_str(), "s1");
    assert!(!empty);
    assert_eq!(
        p.lookup(ip("192.0.2.11")),
        None,
        "its addresses went with it"
    );
    assert_eq!(p.slave(s2).unwrap().name().as_str(), "s2", "index rebuilt");
    let (_, empty) = p.remove_slave(s2).unwrap();
    assert!(empty);
    assert_eq!(
        p.remove_slave(s2).unwrap_err(),
        PortError::NoSuchSlaveId(s2.get())
    );
}

#[test]
fn r_addr_3_t_22_duplicate_address_names_owner() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    let s2 = add(&mut p, "s2", "mode l2");
    p.add_address(s1, ip("192.0.2.11")).unwrap();
    let err = p.add_address(s2, ip("192.0.2.11")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "address 192.0.2.11 is already assigned to ipvlan slave \"s1\" on this master"
    );
    assert!(p.addresses(s2).is_empty());
}

#[test]
fn r_addr_3_t_23_ipv6_and_link_local_duplicates() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    let s2 = add(&mut p, "s2", "mode l2");
    p.add_address(s1, ip("2001:db8:1::11")).unwrap();
    assert!(p.add_address(s2, ip("2001:db8:1::11")).is_err());
    p.add_address(s1, ip("fe80::1")).unwrap();
    assert!(matches!(
        p.add_address(s2, ip("fe80::1")),
        Err(PortError::AddressInUse { .. })
    ));
}

#[test]
fn r_addr_6_t_24_down_slave_reserves_and_activates_on_up() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    let s2 = add(&mut p, "s2", "mode l2");
    p.set_slave_up(s1, true).unwrap();
    // Address added while down: recorded, not active.
    p.add_address(s2, ip("192.0.2.12")).unwrap();
    assert_eq!(p.lookup(ip("192.0.2.12")), None);
    assert!(p.add_address(s1, ip("192.0.2.12")).is_err());
    p.set_slave_up(s2, true).unwrap();
    assert_eq!(p.lookup(ip("192.0.2.12")), Some(s2));
    p.set_slave_up(s2, false).unwrap();
    assert_eq!(p.lookup(ip("192.0.2.12")), None);
}

#[test]
fn r_addr_4_master_address_is_not_reserved() {
    // The table holds only slave addresses; the master's own IP may be given to a slave.
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    p.set_slave_up(s1, true).unwrap();
    assert!(p.add_address(s1, ip("192.0.2.1")).is_ok());
    assert_eq!(p.lookup(ip("192.0.2.1")), Some(s1));
}

#[test]
fn r_addr_5_same_address_on_another_port_is_allowed() {
    let mut a = Port::new(master());
    let mut b = Port::new(Master {
        name: IfName::new("m1").unwrap(),
        ..master()
    });
    let sa = add(&mut a, "sa", "mode l2");
    let sb = add(&mut b, "sb", "mode l2");
    assert!(a.add_address(sa, ip("192.0.2.50")).is_ok());
    assert!(b.add_address(sb, ip("192.0.2.50")).is_ok());
}

#[test]
fn r_addr_5_same_address_twice_on_one_slave() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    assert_eq!(p.add_address(s1, ip("192.0.2.11")), Ok(Claim::New));
    assert_eq!(p.add_address(s1, ip("192.0.2.11")), Ok(Claim::AlreadyOwned));
}

#[test]
fn non_unicast_addresses_are_refused() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
        assert_eq!(
            p.add_address(s1, ip(bad)),
            Err(PortError::AddressNotUnicast(ip(bad)))
        );
    }
}

#[test]
fn remove_address_reports_foreign_addresses() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    let s2 = add(&mut p, "s2", "mode l2");
    p.add_address(s1, ip("192.0.2.11")).unwrap();
    let err = p.remove_address(s2, ip("192.0.2.11")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "address 192.0.2.11 is not assigned to slave \"s2\""
    );
    p.remove_address(s1, ip("192.0.2.11")).unwrap();
    assert!(p.addresses(s1).is_empty());
}

#[test]
fn r_mac_3_master_mac_change_moves_link_locals() {
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l2");
    p.set_master_mac(MacAddr([2, 0, 0, 0, 0, 2]));
    assert_eq!(p.master().mac, MacAddr([2, 0, 0, 0, 0, 2]));
    assert_eq!(
        p.link_local(s1),
        "fe80::200:0:100:2".parse::<std::net::Ipv6Addr>().unwrap()
    );
}

#[test]
fn restore_keeps_ids_and_mode() {
    let mut p = Port::new(master());
    p.set_mode_flag(Mode::L2, Flag::Vepa);
    p.restore_slave(SlaveId::from_raw(5), IfName::new("s5").unwrap(), 1500)
        .unwrap();
    assert_eq!((p.mode(), p.flag()), (Mode::L2, Flag::Vepa));
    assert!(p
        .restore_slave(SlaveId::from_raw(5), IfName::new("s6").unwrap(), 1500)
        .is_err());
    assert_eq!(add(&mut p, "s1", "mode l2").get(), 1);
}

#[test]
fn r_rx_l3s_1_input_goes_to_the_owner_of_the_destination_and_is_counted() {
    use crate::frames::{ipv4_frame, v4, EXT_MAC};
    let mut p = Port::new(master());
    let s1 = add(&mut p, "s1", "mode l3s");
    p.set_slave_up(s1, true).unwrap();
    p.add_address(s1, ip("198.51.100.11")).unwrap();
    let frame = ipv4_frame(
        MASTER_MAC,
        EXT_MAC,
        v4(203, 0, 113, 5),
        v4(198, 51, 100, 11),
    );
    assert_eq!(p.handle_l3s_input(&frame), Some(s1));
    let c = p.slave(s1).unwrap().counters;
    assert_eq!((c.rx_packets, c.rx_bytes), (1, frame.len() as u64));
    // An address no slave owns (any more), and a runt: not delivered, not counted.
    let other = ipv4_frame(
        MASTER_MAC,
        EXT_MAC,
        v4(203, 0, 113, 5),
        v4(198, 51, 100, 12),
    );
    assert_eq!(p.handle_l3s_input(&other), None);
    assert_eq!(p.handle_l3s_input(&frame[..10]), None);
    assert_eq!(p.slave(s1).unwrap().counters.rx_packets, 1);
}
