//! From rtnetlink bytes to what the daemon needs: splitting a datagram into its messages
//! ([`messages`]) and reading links ([`parse_link`]), addresses ([`parse_addr`]) and events
//! ([`event`]) out of netlink-packet-route's messages. Pure: no socket, no kernel.

use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo,
    LinkLayerType, LinkMessage, State,
};
use netlink_packet_route::RouteNetlinkMessage;

use ipvlan_core::MacAddr;

use super::{AddrGenMode, Event, Link, LinkAddr};

/// `NLMSG_HDRLEN`: the size of `struct nlmsghdr` (`<linux/netlink.h>`).
const NLMSG_HDRLEN: usize = 16;

/// The netlink messages in one datagram, in order (each starts at a 4-byte boundary,
/// `NLMSG_ALIGN`); stops at the first undecodable or truncated one.
pub(crate) fn messages(
    bytes: &[u8],
) -> impl Iterator<Item = NetlinkMessage<RouteNetlinkMessage>> + '_ {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let rest = bytes.get(offset..).filter(|r| !r.is_empty())?;
        // `nlmsg_len` first: at least a header, at most what is left.
        let claimed = u32::from_ne_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        if claimed < NLMSG_HDRLEN || claimed > rest.len() {
            return None;
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).ok()?;
        let len = msg.header.length as usize;
        if len == 0 {
            return None;
        }
        offset = offset.saturating_add(len.saturating_add(3) & !3);
        Some(msg)
    })
}

/// The event an `RTM_NEWLINK`, `RTM_DELLINK`, `RTM_NEWADDR` or `RTM_DELADDR` reports; `None`
/// for any other message (and for an address message without an address).
pub(crate) fn event(m: RouteNetlinkMessage) -> Option<Event> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(Event::LinkChanged(parse_link(&l))),
        RouteNetlinkMessage::DelLink(l) => Some(Event::LinkGone {
            index: l.header.index,
            new_netnsid: l.attributes.iter().find_map(|a| match a {
                LinkAttribute::NewNetnsId(id) => Some(*id),
                _ => None,
            }),
        }),
        RouteNetlinkMessage::NewAddress(a) => parse_addr(&a).map(Event::AddrAdded),
        RouteNetlinkMessage::DelAddress(a) => parse_addr(&a).map(Event::AddrRemoved),
        _ => None,
    }
}

/// What the daemon needs of an `RTM_NEWLINK`: header flags and `IFLA_*` attributes. Missing
/// attributes leave their field empty (`name` empty, `mtu` 0).
pub(crate) fn parse_link(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        link_type: u16::from(l.header.link_layer_type),
        up: l.header.flags.contains(LinkFlags::Up),
        noarp: l.header.flags.contains(LinkFlags::Noarp),
        loopback: l.header.flags.contains(LinkFlags::Loopback)
            || l.header.link_layer_type == LinkLayerType::Loopback,
        carrier: None,
        oper_up: false,
        alias: None,
        kind: None,
        controller: None,
        link: None,
        link_netnsid: None,
        addrgen: None,
        ipv6_token: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Address(b) => {
                if let Ok(m) = <[u8; 6]>::try_from(b.as_slice()) {
                    link.mac = Some(MacAddr(m));
                }
            }
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Carrier(c) => link.carrier = Some(*c != 0),
            LinkAttribute::OperState(s) => link.oper_up = matches!(s, State::Up | State::Unknown),
            LinkAttribute::IfAlias(s) => link.alias = Some(s.clone()),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::Link(i) => link.link = Some(*i),
            LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(*id),
            LinkAttribute::AfSpecUnspec(specs) => {
                for spec in specs {
                    let AfSpecUnspec::Inet6(inet6) = spec else {
                        continue;
                    };
                    for i in inet6 {
                        match i {
                            AfSpecInet6::AddrGenMode(m) => {
                                link.addrgen = Some(match m {
                                    In6AddrGenMode::Eui64 => AddrGenMode::Eui64,
                                    In6AddrGenMode::None => AddrGenMode::None,
                                    In6AddrGenMode::StablePrivacy => AddrGenMode::StablePrivacy,
                                    In6AddrGenMode::Random => AddrGenMode::Random,
                                    In6AddrGenMode::Other(v) => AddrGenMode::Other(*v),
                                    _ => AddrGenMode::Other(u8::MAX),
                                });
                            }
                            AfSpecInet6::Token(t) => link.ipv6_token = Some(*t),
                            _ => {}
                        }
                    }
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// The address an `RTM_NEWADDR`/`RTM_DELADDR` is about: `IFA_LOCAL` if present (what the
/// interface owns; `IFA_ADDRESS` is the peer on point-to-point links), else `IFA_ADDRESS`;
/// `None` without either. Tentative (DAD not finished) from `IFA_FLAGS` or the header flags.
pub(crate) fn parse_addr(a: &AddressMessage) -> Option<LinkAddr> {
    let local = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    let flags = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Flags(f) => Some(*f),
        _ => None,
    });
    let tentative = flags.is_some_and(|f| f.contains(AddressFlags::Tentative))
        || a.header.flags.contains(AddressHeaderFlags::Tentative);
    let dad_failed = flags.is_some_and(|f| f.contains(AddressFlags::Dadfailed))
        || a.header.flags.contains(AddressHeaderFlags::Dadfailed);
    let permanent = flags.is_some_and(|f| f.contains(AddressFlags::Permanent))
        || a.header.flags.contains(AddressHeaderFlags::Permanent);
    let proto = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Protocol(p) => Some(*p),
        _ => None,
    });
    let proto_kernel = proto.map(|p| {
        matches!(
            p,
            AddressProtocol::RouterAnnouncement | AddressProtocol::LinkLocal
        )
    });
    Some(LinkAddr {
        index: a.header.index,
        addr: local.or(address)?,
        prefix_len: a.header.prefix_len,
        tentative,
        dad_failed,
        permanent,
        proto_kernel,
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use netlink_packet_core::{NetlinkHeader, NetlinkPayload};
    use netlink_packet_route::address::AddressHeaderFlags;
    use netlink_packet_route::link::InfoKind;
    use netlink_packet_route::AddressFamily;

    use super::super::address_message;
    use super::*;

    /// Serialises `msg` the way the kernel frames it (header, payload, `NLMSG_ALIGN` padding).
    fn bytes(msg: RouteNetlinkMessage, seq: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        // Pad to the next message's 4-byte boundary, as a datagram of several does.
        buf.resize((buf.len() + 3) & !3, 0);
        buf
    }

    fn inner(msg: NetlinkMessage<RouteNetlinkMessage>) -> RouteNetlinkMessage {
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("not a route message: {other:?}"),
        }
    }

    fn slave_link() -> LinkMessage {
        let mut l = LinkMessage::default();
        l.header.index = 7;
        l.header.link_layer_type = LinkLayerType::Ether;
        l.header.flags = LinkFlags::Up | LinkFlags::Noarp;
        l.attributes = vec![
            LinkAttribute::IfName("s1".into()),
            LinkAttribute::Address(vec![0x02, 0, 0, 0, 0, 0x01]),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Carrier(1),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::IfAlias("ipvlan:abc".into()),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(8),
            LinkAttribute::LinkNetNsId(2),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Tun)]),
            LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
                AfSpecInet6::Token("::200:0:100:1".parse().expect("literal")),
                AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
            ])]),
        ];
        l
    }

    #[test]
    fn a_serialised_link_reads_back_whole() {
        let buf = bytes(RouteNetlinkMessage::NewLink(slave_link()), 1);
        let msgs: Vec<_> = messages(&buf).collect();
        assert_eq!(msgs.len(), 1);
        let RouteNetlinkMessage::NewLink(l) = inner(msgs.into_iter().next().expect("one")) else {
            panic!("not NewLink");
        };
        assert_eq!(
            parse_link(&l),
            Link {
                index: 7,
                name: "s1".into(),
                mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0x01])),
                mtu: 1400,
                link_type: libc::ARPHRD_ETHER,
                up: true,
                noarp: true,
                loopback: false,
                carrier: Some(true),
                oper_up: true,
                alias: Some("ipvlan:abc".into()),
                kind: Some("tun".into()),
                controller: Some(3),
                link: Some(8),
                link_netnsid: Some(2),
                addrgen: Some(AddrGenMode::None),
                ipv6_token: Some("::200:0:100:1".parse().expect("literal")),
            }
        );
    }

    #[test]
    fn a_link_without_attributes_is_read_with_empty_fields() {
        let mut l = LinkMessage::default();
        l.header.index = 1;
        l.header.link_layer_type = LinkLayerType::Loopback;
        l.attributes.push(LinkAttribute::Address(vec![0; 4])); // not a MAC
        let link = parse_link(&l);
        assert!(link.loopback);
        assert_eq!((link.name.as_str(), link.mac, link.mtu), ("", None, 0));
    }

    #[test]
    fn a_serialised_address_reads_back_and_local_wins_over_address() {
        let addr: IpAddr = "2001:db8::5".parse().expect("literal");
        let mut a = address_message(9, addr, 64);
        a.header.flags |= AddressHeaderFlags::Tentative;
        let buf = bytes(RouteNetlinkMessage::NewAddress(a), 2);
        let m = inner(messages(&buf).next().expect("one message"));
        let RouteNetlinkMessage::NewAddress(a) = m else {
            panic!("not NewAddress");
        };
        assert_eq!(
            parse_addr(&a),
            Some(LinkAddr {
                index: 9,
                addr,
                prefix_len: 64,
                tentative: true,
                dad_failed: false,
                permanent: false,
                proto_kernel: None,
            })
        );

        // Point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer's.
        let mut p2p = AddressMessage::default();
        p2p.header.family = AddressFamily::Inet;
        p2p.header.prefix_len = 32;
        p2p.attributes = vec![
            AddressAttribute::Address("198.51.100.2".parse().expect("literal")),
            AddressAttribute::Local("198.51.100.1".parse().expect("literal")),
            AddressAttribute::Flags(AddressFlags::Tentative),
        ];
        let got = parse_addr(&p2p).expect("an address");
        assert_eq!(got.addr, "198.51.100.1".parse::<IpAddr>().expect("literal"));
        assert!(got.tentative);
        // Without either attribute there is nothing to report.
        assert_eq!(parse_addr(&AddressMessage::default()), None);
    }

    #[test]
    fn events_from_serialised_messages() {
        let v4: IpAddr = "192.0.2.10".parse().expect("literal");
        let mut gone = LinkMessage::default();
        gone.header.index = 7;
        gone.attributes.push(LinkAttribute::NewNetnsId(4));
        let cases = [
            RouteNetlinkMessage::NewAddress(address_message(3, v4, 24)),
            RouteNetlinkMessage::DelAddress(address_message(3, v4, 24)),
            RouteNetlinkMessage::DelLink(gone),
            RouteNetlinkMessage::DelLink(LinkMessage::default()),
            RouteNetlinkMessage::NewLink(slave_link()),
        ];
        let expected_addr = LinkAddr {
            index: 3,
            addr: v4,
            prefix_len: 24,
            tentative: false,
            dad_failed: false,
            permanent: false,
            proto_kernel: None,
        };
        let got: Vec<_> = cases
            .into_iter()
            .map(|m| {
                let buf = bytes(m, 0);
                let msg = messages(&buf).next().expect("a message");
                event(inner(msg))
            })
            .collect();
        assert_eq!(got[0], Some(Event::AddrAdded(expected_addr)));
        assert_eq!(got[1], Some(Event::AddrRemoved(expected_addr)));
        assert_eq!(
            got[2],
            Some(Event::LinkGone {
                index: 7,
                new_netnsid: Some(4),
            })
        );
        assert_eq!(
            got[3],
            Some(Event::LinkGone {
                index: 0,
                new_netnsid: None,
            })
        );
        assert_eq!(got[4], Some(Event::LinkChanged(parse_link(&slave_link()))));
        // Not an event the daemon follows.
        let route = RouteNetlinkMessage::NewRoute(Default::default());
        assert_eq!(event(route), None);
    }

    #[test]
    fn a_datagram_of_two_messages_gives_both_in_order() {
        let mut buf = bytes(RouteNetlinkMessage::NewLink(slave_link()), 11);
        let addr = address_message(7, "203.0.113.9".parse().expect("literal"), 24);
        buf.extend(bytes(RouteNetlinkMessage::NewAddress(addr), 12));
        let seqs: Vec<u32> = messages(&buf).map(|m| m.header.sequence_number).collect();
        assert_eq!(seqs, [11, 12]);
        let events: Vec<_> = messages(&buf).filter_map(|m| event(inner(m))).collect();
        assert!(matches!(events[0], Event::LinkChanged(ref l) if l.name == "s1"));
        assert!(matches!(events[1], Event::AddrAdded(a) if a.index == 7));
    }

    #[test]
    fn truncated_or_garbled_bytes_end_the_walk_without_panicking() {
        let mut buf = bytes(RouteNetlinkMessage::NewLink(slave_link()), 1);
        let addr = address_message(7, "2001:db8::1".parse().expect("literal"), 64);
        buf.extend(bytes(RouteNetlinkMessage::NewAddress(addr), 2));
        let whole = messages(&buf).count();
        assert_eq!(whole, 2);
        for cut in 0..buf.len() {
            let events: Vec<_> = messages(&buf[..cut]).map(|m| event(inner(m))).collect();
            assert!(events.len() <= whole, "cut at {cut}");
            assert!(events.iter().all(Option::is_some), "cut at {cut}");
        }
        // A header claiming more than there is, or zero length, ends the walk too.
        let mut lying = buf.clone();
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(messages(&lying).count(), 0);
        let mut zero = buf.clone();
        zero[0..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(messages(&zero).count(), 0);
        assert_eq!(messages(&[0xff; 3]).count(), 0);
    }
}
