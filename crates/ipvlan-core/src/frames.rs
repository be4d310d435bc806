//! Builders for well-formed frames: what the tests, the fuzz targets and the demo feed the core.
//! Enabled for unit tests and with the `frames` feature; not used on the data path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet::ethertype;
use crate::wire::MacAddr;

/// The fixture MAC of the master (`m0` in spec §11.1).
pub const MASTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The fixture MAC of the external host (`e0`).
pub const EXT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

pub fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Inserts one 802.1Q tag after the MAC addresses.
pub fn tagged(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&ethertype::VLAN_CTAG.to_be_bytes());
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

pub fn arp_payload(op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0x00, 0x01, 0x08, 0x00, 0x06, 0x04];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha.0);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha.0);
    p.extend_from_slice(&tpa.octets());
    p
}

/// A broadcast ARP request from `src_mac`/`spa` for `tpa`.
pub fn arp_request(src_mac: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    ethernet(
        MacAddr::BROADCAST,
        src_mac,
        ethertype::ARP,
        &arp_payload(1, src_mac, spa, MacAddr::ZERO, tpa),
    )
}

/// A unicast ARP reply.
pub fn arp_reply(dst_mac: MacAddr, src_mac: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    ethernet(
        dst_mac,
        src_mac,
        ethertype::ARP,
        &arp_payload(2, src_mac, spa, dst_mac, tpa),
    )
}

/// An IPv4 packet with a UDP-sized body of `body_len` zero bytes (checksums are not checked).
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, body_len: usize) -> Vec<u8> {
    let total = 20 + body_len;
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let mut p = vec![0x45, 0x00];
    p.extend_from_slice(&total16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.resize(total, 0);
    p
}

pub fn ipv4_frame(dst_mac: MacAddr, src_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ethernet(
        dst_mac,
        src_mac,
        ethertype::IPV4,
        &ipv4_packet(src, dst, 17, 8),
    )
}

/// An IPv6 packet with next header `next` and payload `payload`.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let len16 = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len16.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

pub fn ipv6_frame(dst_mac: MacAddr, src_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    ethernet(
        dst_mac,
        src_mac,
        ethertype::IPV6,
        &ipv6_packet(src, dst, 17, &[0; 8]),
    )
}

/// An ICMPv6 NS or NA body (type, zero code/checksum/flags, target).
pub fn nd_message(kind: u8, target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m
}

/// The solicited-node multicast group of `addr` (ff02::1:ffXX:XXXX).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The IPv6 multicast MAC of a group (33:33 + low 32 bits).
pub fn ipv6_multicast_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// A DAD probe: NS from `::` to the solicited-node group of `target`.
pub fn dad_probe(src_mac: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    ethernet(
        ipv6_multicast_mac(group),
        src_mac,
        ethertype::IPV6,
        &ipv6_packet(Ipv6Addr::UNSPECIFIED, group, 58, &nd_message(135, target)),
    )
}

/// A neighbour solicitation from `src` for `target`, multicast to its solicited-node group.
pub fn neighbour_solicit(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    ethernet(
        ipv6_multicast_mac(group),
        src_mac,
        ethertype::IPV6,
        &ipv6_packet(src, group, 58, &nd_message(135, target)),
    )
}

/// A UDP datagram to an IPv4 group or broadcast address with the matching multicast MAC.
pub fn ipv4_multicast(src_mac: MacAddr, src: Ipv4Addr, group: Ipv4Addr) -> Vec<u8> {
    let dst_mac = if group == Ipv4Addr::BROADCAST || group.octets()[3] == 255 {
        MacAddr::BROADCAST
    } else {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    };
    ethernet(
        dst_mac,
        src_mac,
        ethertype::IPV4,
        &ipv4_packet(src, group, 17, 8),
    )
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// Parses an IPv6 literal from a test table.
pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// A DHCPv4 message over UDP in an untagged frame: a BOOTREQUEST (op 1, UDP 68 → 67) when
/// `request`, else a BOOTREPLY (op 2, 67 → 68), with transaction id `xid`, the magic cookie,
/// then `options` as given (end it with 255 yourself). Checksums are zero.
pub fn dhcp_frame(
    dst_mac: MacAddr,
    src_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    request: bool,
    xid: u32,
    options: &[u8],
) -> Vec<u8> {
    let (sport, dport, op) = if request {
        (68u16, 67u16, 1u8)
    } else {
        (67, 68, 2)
    };
    let mut bootp = vec![0u8; 236];
    bootp[0] = op;
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&xid.to_be_bytes());
    bootp[28..34].copy_from_slice(&MASTER_MAC.0);
    bootp.extend_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(options);
    let udp_len = u16::try_from(8 + bootp.len()).unwrap_or(u16::MAX);
    let mut ip = ipv4_packet(src, dst, 17, usize::from(udp_len));
    let body = &mut ip[20..];
    body[0..2].copy_from_slice(&sport.to_be_bytes());
    body[2..4].copy_from_slice(&dport.to_be_bytes());
    body[4..6].copy_from_slice(&udp_len.to_be_bytes());
    body[8..].copy_from_slice(&bootp);
    ethernet(dst_mac, src_mac, ethertype::IPV4, &ip)
}
