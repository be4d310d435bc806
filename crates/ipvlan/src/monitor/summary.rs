//! A one-line description of a (possibly truncated) Ethernet frame, in the manner of
//! `tcpdump -nn`'s: `IP 192.0.2.1 > 192.0.2.2: ICMP echo request`, `ARP who-has 192.0.2.2 tell
//! 192.0.2.1`, `IP6 2001:db8::1.5353 > ff02::fb.5353: UDP`. Parsed with etherparse's lax
//! slicer, which takes a frame cut short (the monitor copies only its first bytes).

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{ArpOperation, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};

/// `aa:bb:cc:dd:ee:ff`.
fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The addresses of an ARP packet's protocol field, if IPv4.
fn arp_ip(b: &[u8]) -> String {
    match <[u8; 4]>::try_from(b) {
        Ok(a) => Ipv4Addr::from(a).to_string(),
        Err(_) => super::hex(b),
    }
}

/// `tcpdump`'s names for the ICMP (`v6` false) and ICMPv6 types it shows most.
fn icmp_name(v6: bool, t: u8) -> String {
    let name = match (v6, t) {
        (false, 0) => "echo reply",
        (false, 3) => "unreachable",
        (false, 8) => "echo request",
        (false, 11) => "time exceeded",
        (true, 1) => "destination unreachable",
        (true, 2) => "packet too big",
        (true, 128) => "echo request",
        (true, 129) => "echo reply",
        (true, 133) => "router solicitation",
        (true, 134) => "router advertisement",
        (true, 135) => "neighbor solicitation",
        (true, 136) => "neighbor advertisement",
        (true, 137) => "redirect",
        (true, 143) => "multicast listener report v2",
        _ => return format!("type {t}"),
    };
    name.to_owned()
}

/// `frame`'s summary; `len` is its whole length (the copy may be shorter).
pub fn summarize(frame: &[u8], len: u32) -> String {
    let Ok(p) = LaxSlicedPacket::from_ethernet(frame) else {
        return format!("runt frame, length {len}");
    };
    let (src, dst, ethertype) = match &p.link {
        Some(LinkSlice::Ethernet2(e)) => (e.source(), e.destination(), e.ether_type()),
        _ => return format!("frame, length {len}"),
    };
    let vlan = p
        .link_exts
        .iter()
        .find_map(|x| match x {
            etherparse::LaxLinkExtSlice::Vlan(v) => Some(format!("vlan {}, ", v.vlan_identifier())),
            _ => None,
        })
        .unwrap_or_default();
    let ports = |v6: bool| -> (String, String, String) {
        match &p.transport {
            Some(TransportSlice::Udp(u)) => (
                format!(".{}", u.source_port()),
                format!(".{}", u.destination_port()),
                "UDP".into(),
            ),
            Some(TransportSlice::Tcp(t)) => (
                format!(".{}", t.source_port()),
                format!(".{}", t.destination_port()),
                "TCP".into(),
            ),
            Some(TransportSlice::Icmpv4(i)) => (
                String::new(),
                String::new(),
                format!("ICMP {}", icmp_name(false, i.type_u8())),
            ),
            Some(TransportSlice::Icmpv6(i)) => (
                String::new(),
                String::new(),
                format!("ICMP6 {}", icmp_name(true, i.type_u8())),
            ),
            Some(TransportSlice::Igmp(_)) => (String::new(), String::new(), "IGMP".into()),
            None => (
                String::new(),
                String::new(),
                if v6 { "IPv6" } else { "IP" }.to_owned(),
            ),
        }
    };
    let body = match &p.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let (sp, dp, what) = ports(false);
            let what = if p.transport.is_none() {
                format!("proto {}", h.protocol().0)
            } else {
                what
            };
            format!(
                "IP {}{sp} > {}{dp}: {what}",
                h.source_addr(),
                h.destination_addr()
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let (sp, dp, what) = ports(true);
            let what = if p.transport.is_none() {
                format!("next-header {}", h.next_header().0)
            } else {
                what
            };
            let (s, d): (Ipv6Addr, Ipv6Addr) = (h.source_addr(), h.destination_addr());
            format!("IP6 {s}{sp} > {d}{dp}: {what}")
        }
        Some(LaxNetSlice::Arp(a)) => match a.operation() {
            ArpOperation::REQUEST => format!(
                "ARP who-has {} tell {}",
                arp_ip(a.target_protocol_addr()),
                arp_ip(a.sender_protocol_addr())
            ),
            ArpOperation::REPLY => format!(
                "ARP reply {} is-at {}",
                arp_ip(a.sender_protocol_addr()),
                <[u8; 6]>::try_from(a.sender_hw_addr()).map_or_else(|_| "?".into(), mac)
            ),
            op => format!("ARP operation {}", op.0),
        },
        None => format!(
            "{} > {}, ethertype {:#06x}",
            mac(src),
            mac(dst),
            match p.link_exts.last() {
                Some(etherparse::LaxLinkExtSlice::Vlan(v)) => v.ether_type().0,
                _ => ethertype.0,
            }
        ),
    };
    format!("{vlan}{body}, length {len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn icmp_echo_udp_arp_and_truncated_frames() {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .icmpv4_echo_request(1, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 56]).expect("build");
        assert_eq!(
            summarize(&f, f.len() as u32),
            "IP 192.0.2.1 > 192.0.2.2: ICMP echo request, length 98"
        );
        // Cut to 40 bytes: still the addresses.
        assert!(
            summarize(&f[..40], 98).starts_with("IP 192.0.2.1 > 192.0.2.2"),
            "{}",
            summarize(&f[..40], 98)
        );

        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
            .ipv6(
                "2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets(),
                "ff02::fb".parse::<Ipv6Addr>().expect("v6").octets(),
                1,
            )
            .udp(5353, 5353);
        let mut f = Vec::new();
        b.write(&mut f, &[1, 2, 3]).expect("build");
        assert_eq!(
            summarize(&f, f.len() as u32),
            "IP6 2001:db8::1.5353 > ff02::fb.5353: UDP, length 65"
        );

        let mut arp = vec![0xffu8; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 192, 0, 2, 9]);
        assert_eq!(
            summarize(&arp, 42),
            "ARP who-has 192.0.2.9 tell 192.0.2.1, length 42"
        );
        assert_eq!(summarize(&[1, 2, 3], 3), "runt frame, length 3");
    }
}
