use super::*;
use crate::frames::*;

#[test]
fn r_tx_0_runt_is_refused() {
    assert_eq!(classify(&[0u8; 13]), Err(Runt { len: 13 }));
    assert_eq!(classify(&[]), Err(Runt { len: 0 }));
}

#[test]
fn r_cls_1_arp_keys_are_target_and_sender() {
    let f = arp_request(MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12));
    let c = classify(&f).unwrap();
    assert_eq!(c.dst_mac, MacAddr::BROADCAST);
    assert_eq!(
        c.l3,
        L3::Arp {
            operation: 1,
            sender: v4(192, 0, 2, 11),
            target: v4(192, 0, 2, 12)
        }
    );
    assert_eq!(c.keys_tx().dst, Some(ip("192.0.2.12")));
    assert_eq!(c.keys_tx().src, Some(ip("192.0.2.11")));
}

#[test]
fn r_cls_1_arp_opcode_and_types_are_not_examined() {
    let mut payload = arp_payload(
        0x7777,
        MASTER_MAC,
        v4(192, 0, 2, 1),
        EXT_MAC,
        v4(192, 0, 2, 2),
    );
    payload[0] = 0xaa; // hardware type garbage
    let f = ethernet(EXT_MAC, MASTER_MAC, ethertype::ARP, &payload);
    assert_eq!(classify(&f).unwrap().keys_rx().dst, Some(ip("192.0.2.2")));
}

#[test]
fn r_cls_1_short_arp_is_unclassified() {
    let mut f = arp_request(MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12));
    f.truncate(14 + 27);
    let c = classify(&f).unwrap();
    assert_eq!(c.l3, L3::Malformed(Malformed::ArpTruncated));
    assert_eq!(c.keys_rx(), Keys::NONE);
}

#[test]
fn r_cls_2_ipv4_keys() {
    let f = ipv4_frame(MASTER_MAC, MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12));
    let c = classify(&f).unwrap();
    assert!(c.is_ip());
    assert_eq!(
        c.keys_tx(),
        Keys {
            dst: Some(ip("192.0.2.12")),
            src: Some(ip("192.0.2.11"))
        }
    );
}

#[test]
fn r_cls_2_bad_ipv4_is_unclassified() {
    let good = ipv4_frame(MASTER_MAC, MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12));
    for (offset, value, why) in [
        (14, 0x55u8, Ipv4Error::Version),
        (14, 0x44, Ipv4Error::HeaderLength),
        (17, 0xff, Ipv4Error::TotalLength),
    ] {
        let mut f = good.clone();
        f[offset] = value;
        let c = classify(&f).unwrap();
        assert_eq!(c.l3, L3::Malformed(Malformed::Ipv4(why)));
        assert_eq!(c.keys_tx(), Keys::NONE);
    }
    let c = classify(&good[..14 + 19]).unwrap();
    assert_eq!(c.l3, L3::Malformed(Malformed::Ipv4(Ipv4Error::Truncated)));
}

#[test]
fn r_cls_3_ipv6_keys() {
    let f = ipv6_frame(
        MASTER_MAC,
        MASTER_MAC,
        v6("2001:db8:1::11"),
        v6("2001:db8:1::12"),
    );
    let c = classify(&f).unwrap();
    assert_eq!(c.keys_tx().dst, Some(ip("2001:db8:1::12")));
    assert_eq!(c.keys_tx().src, Some(ip("2001:db8:1::11")));
    assert!(matches!(
        c.l3,
        L3::Ipv6 {
            upper: Some(17),
            icmp: None,
            ..
        }
    ));
}

#[test]
fn r_cls_3_dad_probe_keys_are_the_target() {
    let f = dad_probe(MASTER_MAC, v6("2001:db8:1::11"));
    let c = classify(&f).unwrap();
    assert!(c.is_dad_probe());
    assert!(c.dst_mac.is_multicast());
    assert_eq!(c.keys_rx().dst, Some(ip("2001:db8:1::11")));
    assert_eq!(c.keys_rx().src, Some(ip("2001:db8:1::11")));
}

#[test]
fn r_cls_3_other_icmpv6_from_unspecified_has_no_key() {
    // An RS from :: (type 133).
    let p = ipv6_packet(
        Ipv6Addr::UNSPECIFIED,
        v6("ff02::2"),
        58,
        &[133, 0, 0, 0, 0, 0, 0, 0],
    );
    let f = ethernet(
        ipv6_multicast_mac(v6("ff02::2")),
        MASTER_MAC,
        ethertype::IPV6,
        &p,
    );
    let c = classify(&f).unwrap();
    assert_eq!(c.keys_rx(), Keys::NONE);
    assert!(matches!(
        c.l3,
        L3::Ipv6 {
            icmp: Some(Icmpv6Info { kind: 133, .. }),
            ..
        }
    ));
}

#[test]
fn r_cls_3_truncated_dad_probe_is_unclassified() {
    let f = dad_probe(MASTER_MAC, v6("2001:db8:1::11"));
    // 40-byte header + 8-byte ICMPv6 header but no target.
    let c = classify(&f[..14 + 48]).unwrap();
    assert_eq!(c.l3, L3::Malformed(Malformed::NdTruncated));
    let c = classify(&f[..14 + 44]).unwrap();
    assert_eq!(c.l3, L3::Malformed(Malformed::NdTruncated));
}

#[test]
fn r_cls_3_ns_from_a_real_source_is_keyed_by_destination() {
    // A normal NS goes to the solicited-node group: its key is the group, which no slave owns.
    let f = neighbour_solicit(EXT_MAC, v6("2001:db8:1::fe"), v6("2001:db8:1::11"));
    let c = classify(&f).unwrap();
    assert!(!c.is_dad_probe());
    assert_eq!(
        c.keys_rx().dst,
        Some(IpAddr::V6(solicited_node(v6("2001:db8:1::11"))))
    );
    match c.l3 {
        L3::Ipv6 {
            icmp: Some(info), ..
        } => {
            assert_eq!(info.kind, 135);
            assert_eq!(info.nd_target, Some(v6("2001:db8:1::11")));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn r_cls_3_icmpv6_behind_extension_headers_is_not_special() {
    // NS from :: behind a hop-by-hop header: reported as ICMPv6, but keyed by destination as the
    // kernel only looks at the first next-header.
    let mut body = vec![58, 0, 1, 4, 0, 0, 0, 0];
    body.extend_from_slice(&nd_message(135, v6("2001:db8:1::11")));
    let p = ipv6_packet(Ipv6Addr::UNSPECIFIED, v6("ff02::1:ff00:11"), 0, &body);
    let f = ethernet(
        MacAddr([0x33, 0x33, 0xff, 0, 0, 0x11]),
        MASTER_MAC,
        ethertype::IPV6,
        &p,
    );
    let c = classify(&f).unwrap();
    assert!(c.is_dad_probe());
    assert_eq!(c.keys_rx().dst, Some(ip("ff02::1:ff00:11")));
}

#[test]
fn r_cls_3_ipv6_needs_40_bytes_and_version_6() {
    let f = ipv6_frame(MASTER_MAC, MASTER_MAC, v6("2001:db8::1"), v6("2001:db8::2"));
    let c = classify(&f[..14 + 39]).unwrap();
    assert_eq!(c.l3, L3::Malformed(Malformed::Ipv6(Ipv6Error::Truncated)));
    let mut bad = f.clone();
    bad[14] = 0x45;
    assert_eq!(
        classify(&bad).unwrap().l3,
        L3::Malformed(Malformed::Ipv6(Ipv6Error::Version))
    );
}

#[test]
fn r_cls_4_other_ethertypes_are_unclassified() {
    for et in [0x88b5u16, 0x88cc, 0x9000, 0x0842] {
        let f = ethernet(MASTER_MAC, MASTER_MAC, et, &[0u8; 46]);
        let c = classify(&f).unwrap();
        assert_eq!(c.l3, L3::Other);
        assert_eq!(c.keys_rx(), Keys::NONE);
    }
    let pause = ethernet(
        MacAddr([1, 0x80, 0xc2, 0, 0, 1]),
        EXT_MAC,
        ethertype::PAUSE,
        &[0; 46],
    );
    assert_eq!(classify(&pause).unwrap().l3, L3::Pause);
}

#[test]
fn r_cls_4_vlan_tagged_frames() {
    let inner = ipv4_frame(MASTER_MAC, MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12));
    let f = tagged(&inner, 0x2064); // priority 1, vid 100
    let c = classify(&f).unwrap();
    assert_eq!(c.vlan.map(|t| t.vid()), Some(100));
    assert_eq!(c.ethertype, ethertype::IPV4);
    assert!(c.is_ip());
    // Transmit path: the tag is still in the frame, so it is unclassified.
    assert_eq!(c.keys_tx(), Keys::NONE);
    // Receive path: the kernel has already untagged it; the inner packet counts.
    assert_eq!(c.keys_rx().dst, Some(ip("192.0.2.12")));
    let truncated = classify(&f[..16]).unwrap();
    assert_eq!(truncated.l3, L3::Malformed(Malformed::VlanTruncated));
}
