//! A slave has the master's MAC (R-MAC-1), and nothing it sends may assert another link-layer
//! identity: not the Ethernet source, and not the addresses inside ARP and NDP that
//! neighbours put in their caches. The kernel driver leaves them as the slave wrote them
//! (R-TX-NOVALIDATE); we rewrite them, so that a hostile slave cannot point another host's or
//! slave's neighbour entry at a MAC of its choice. Honest slaves already use the master's MAC:
//! for them nothing changes.
//!
//! [`assert_master_identity`] rewrites, in place:
//! - the Ethernet source address;
//! - ARP (RFC 826, Ethernet/IPv4): the sender hardware address;
//! - NDP (RFC 4861): the source and target link-layer address options of router and neighbour
//!   solicitations and advertisements and of redirects (types 133–137), with the ICMPv6
//!   checksum updated incrementally (RFC 1624), or left alone when the checksum is still to be
//!   completed by the receiver (virtio-net `NEEDS_CSUM`: it then covers the new bytes).
//!
//! VLAN tags and IPv6 extension headers (hop-by-hop, routing, destination options) are
//! walked, so neither hides an ARP or ND message. A fragmented ND message is left as it is: RFC 6980
//! makes every node drop it.

use crate::wire::MacAddr;

const ETH_HEADER: usize = 14;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV6_HEADER: usize = 40;
const NEXT_ICMPV6: u8 = 58;
/// Option types: source / target link-layer address (RFC 4861 §4.6.1).
const OPT_SOURCE_LLA: u8 = 1;
const OPT_TARGET_LLA: u8 = 2;

/// What [`assert_master_identity`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewritten {
    /// The Ethernet source was another MAC.
    pub ethernet: bool,
    /// Link-layer addresses inside ARP or NDP that were another MAC.
    pub payload: u32,
}

impl Rewritten {
    /// Whether the frame asserted any identity other than the master's.
    pub fn any(self) -> bool {
        self.ethernet || self.payload > 0
    }
}

/// Makes every link-layer address `frame` (an Ethernet frame a slave sent) asserts about its
/// sender equal to `mac`, in place; see the module documentation. `checksum_partial`: the
/// frame's transport checksum is left for the receiver to complete (so it must not be
/// updated). Frames too short for what their headers announce are left as they are after the
/// Ethernet source: the decision that follows drops them as malformed.
pub fn assert_master_identity(frame: &mut [u8], mac: MacAddr, checksum_partial: bool) -> Rewritten {
    let mut done = Rewritten::default();
    if frame.len() < ETH_HEADER {
        return done;
    }
    if frame[6..12] != mac.0 {
        frame[6..12].copy_from_slice(&mac.0);
        done.ethernet = true;
    }
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut at = ETH_HEADER;
    // Behind VLAN tags (802.1Q, 802.1ad), the same messages poison the same caches.
    while matches!(ethertype, 0x8100 | 0x88a8) && frame.len() >= at + 4 {
        ethertype = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
        at += 4;
    }
    let body = &mut frame[at..];
    done.payload = match ethertype {
        ETHERTYPE_ARP => arp(body, mac),
        ETHERTYPE_IPV6 => ipv6(body, mac, checksum_partial),
        _ => 0,
    };
    done
}

/// ARP with 6-byte hardware addresses: the sender hardware address (bytes 8..14). Whatever
/// the hardware and protocol types say (Linux takes hardware type 6, IEEE 802, on Ethernet as
/// well as 1), a 6-byte sender address is what a neighbour would cache.
fn arp(p: &mut [u8], mac: MacAddr) -> u32 {
    if p.len() < 14 || p[4] != 6 {
        return 0;
    }
    if p[8..14] == mac.0 {
        return 0;
    }
    p[8..14].copy_from_slice(&mac.0);
    1
}

/// The ICMPv6 message of an IPv6 packet, past any hop-by-hop, routing or destination options
/// headers: its offset in `p`, or `None` (not ICMPv6, a fragment, or truncated).
fn icmpv6_offset(p: &[u8]) -> Option<usize> {
    if p.len() < IPV6_HEADER || p[0] >> 4 != 6 {
        return None;
    }
    let mut next = p[6];
    let mut at = IPV6_HEADER;
    // As many headers as the packet holds (each is at least 8 bytes, so this ends): the
    // receiving stack walks them all.
    loop {
        match next {
            NEXT_ICMPV6 => return (at <= p.len()).then_some(at),
            // Hop-by-hop, routing, destination options: (length + 1) × 8 bytes.
            0 | 43 | 60 => {
                let h = p.get(at..at + 2)?;
                next = h[0];
                at += (usize::from(h[1]) + 1) * 8;
            }
            _ => return None,
        }
    }
}

/// NDP: the link-layer address options of types 133–137.
fn ipv6(p: &mut [u8], mac: MacAddr, checksum_partial: bool) -> u32 {
    let Some(icmp) = icmpv6_offset(p).and_then(|at| p.get_mut(at..)) else {
        return 0;
    };
    // Where the options start, by message type (RFC 4861 §4.1–4.5).
    let options = match icmp.first() {
        Some(133) => 8,
        Some(134) => 16,
        Some(135 | 136) => 24,
        Some(137) => 40,
        _ => return 0,
    };
    if icmp.len() < options {
        return 0;
    }
    let mut changed = 0;
    let mut o = options;
    while o + 2 <= icmp.len() {
        let (kind, units) = (icmp[o], usize::from(icmp[o + 1]));
        if units == 0 || o + units * 8 > icmp.len() {
            break; // a zero length is invalid (RFC 4861 §4.6): the receiver drops the message
        }
        if (kind == OPT_SOURCE_LLA || kind == OPT_TARGET_LLA) && icmp[o + 2..o + 8] != mac.0 {
            if !checksum_partial {
                update_checksum(icmp, o + 2, &mac.0);
            }
            icmp[o + 2..o + 8].copy_from_slice(&mac.0);
            changed += 1;
        }
        o += units * 8;
    }
    changed
}

/// RFC 1624 incremental update of the ICMPv6 checksum (bytes 2..4 of `icmp`) for the bytes at
/// `at` (an even offset) becoming `new`.
fn update_checksum(icmp: &mut [u8], at: usize, new: &[u8]) {
    let mut sum = u32::from(!u16::from_be_bytes([icmp[2], icmp[3]]));
    for (i, w) in new.chunks(2).enumerate() {
        let old = u16::from_be_bytes([icmp[at + 2 * i], icmp[at + 2 * i + 1]]);
        let new = u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]);
        sum += u32::from(!old) + u32::from(new);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{arp_reply, ethernet, v4, v6, EXT_MAC, MASTER_MAC};
    use std::net::Ipv6Addr;

    const EVIL: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0x99]);

    /// The ICMPv6 checksum over the pseudo-header and `icmp` (RFC 4443 §2.3).
    fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut add = |b: &[u8]| {
            for w in b.chunks(2) {
                sum += u32::from(u16::from_be_bytes([w[0], w.get(1).copied().unwrap_or(0)]));
            }
        };
        add(&src.octets());
        add(&dst.octets());
        add(&(icmp.len() as u32).to_be_bytes());
        add(&[0, 0, 0, 58]);
        add(icmp);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An NA for `target` from `src` with a target link-layer address option `lla`, its
    /// checksum complete, optionally behind a destination options header.
    fn na(src: Ipv6Addr, target: Ipv6Addr, lla: MacAddr, dest_opts: bool) -> Vec<u8> {
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp.extend_from_slice(&[OPT_TARGET_LLA, 1]);
        icmp.extend_from_slice(&lla.0);
        let c = icmpv6_checksum(src, dst, &icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0];
        let ext: Vec<u8> = if dest_opts {
            vec![58, 0, 1, 4, 0, 0, 0, 0] // next ICMPv6, 8 bytes, a PadN option
        } else {
            Vec::new()
        };
        ip.extend_from_slice(&((ext.len() + icmp.len()) as u16).to_be_bytes());
        ip.push(if dest_opts { 60 } else { 58 });
        ip.push(255);
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&ext);
        ip.extend_from_slice(&icmp);
        ethernet(MacAddr([0x33, 0x33, 0, 0, 0, 1]), lla, ETHERTYPE_IPV6, &ip)
    }

    fn icmp_of(frame: &[u8]) -> &[u8] {
        let at = icmpv6_offset(&frame[ETH_HEADER..]).unwrap();
        &frame[ETH_HEADER + at..]
    }

    #[test]
    fn forged_arp_sender_becomes_the_master() {
        // A reply claiming 192.0.2.12 (another slave's) is at EVIL.
        let mut f = arp_reply(EXT_MAC, EVIL, v4(192, 0, 2, 12), v4(192, 0, 2, 254));
        let done = assert_master_identity(&mut f, MASTER_MAC, false);
        assert_eq!(
            done,
            Rewritten {
                ethernet: true,
                payload: 1
            }
        );
        assert_eq!(&f[6..12], &MASTER_MAC.0);
        assert_eq!(
            &f[ETH_HEADER + 8..ETH_HEADER + 14],
            &MASTER_MAC.0,
            "sender MAC"
        );
        // The target hardware address (the asker's) is left alone.
        assert_eq!(&f[ETH_HEADER + 18..ETH_HEADER + 24], &EXT_MAC.0);
    }

    #[test]
    fn honest_frames_are_untouched() {
        let f = arp_reply(EXT_MAC, MASTER_MAC, v4(192, 0, 2, 12), v4(192, 0, 2, 254));
        let mut g = f.clone();
        assert!(!assert_master_identity(&mut g, MASTER_MAC, false).any());
        assert_eq!(f, g);
        let f = na(
            v6("2001:db8:1::12"),
            v6("2001:db8:1::12"),
            MASTER_MAC,
            false,
        );
        let mut g = f.clone();
        assert!(!assert_master_identity(&mut g, MASTER_MAC, false).any());
        assert_eq!(f, g);
    }

    #[test]
    fn forged_na_target_lla_becomes_the_master_with_a_valid_checksum() {
        for dest_opts in [false, true] {
            let (src, target) = (v6("fe80::66"), v6("2001:db8:1::fe"));
            let mut f = na(src, target, EVIL, dest_opts);
            let done = assert_master_identity(&mut f, MASTER_MAC, false);
            assert_eq!(done.payload, 1, "dest_opts {dest_opts}");
            let icmp = icmp_of(&f);
            assert_eq!(&icmp[26..32], &MASTER_MAC.0);
            let dst: Ipv6Addr = "ff02::1".parse().unwrap();
            let mut zeroed = icmp.to_vec();
            zeroed[2..4].copy_from_slice(&[0, 0]);
            assert_eq!(
                u16::from_be_bytes([icmp[2], icmp[3]]),
                icmpv6_checksum(src, dst, &zeroed),
                "checksum still valid (dest_opts {dest_opts})"
            );
        }
    }

    #[test]
    fn a_checksum_left_to_the_receiver_is_not_touched() {
        let mut f = na(v6("fe80::66"), v6("2001:db8:1::fe"), EVIL, false);
        let before = [icmp_of(&f)[2], icmp_of(&f)[3]];
        assert_eq!(assert_master_identity(&mut f, MASTER_MAC, true).payload, 1);
        assert_eq!([icmp_of(&f)[2], icmp_of(&f)[3]], before);
    }

    #[test]
    fn any_hardware_type_with_6_byte_addresses_is_rewritten() {
        let mut f = arp_reply(EXT_MAC, EVIL, v4(192, 0, 2, 12), v4(192, 0, 2, 254));
        f[ETH_HEADER + 1] = 6; // IEEE 802, which Linux accepts on Ethernet
        assert_eq!(assert_master_identity(&mut f, MASTER_MAC, false).payload, 1);
        assert_eq!(&f[ETH_HEADER + 8..ETH_HEADER + 14], &MASTER_MAC.0);
    }

    #[test]
    fn many_extension_headers_do_not_hide_an_nd_message() {
        for headers in [8, 12, 40] {
            let mut f = na(v6("fe80::66"), v6("2001:db8:1::fe"), EVIL, true);
            // Stack more destination options headers in front of the first one.
            let at = ETH_HEADER + IPV6_HEADER;
            for _ in 1..headers {
                f.splice(at..at, [60u8, 0, 1, 4, 0, 0, 0, 0]);
            }
            f[ETH_HEADER + 6] = 60;
            let plen = (f.len() - ETH_HEADER - IPV6_HEADER) as u16;
            f[ETH_HEADER + 4..ETH_HEADER + 6].copy_from_slice(&plen.to_be_bytes());
            assert_eq!(
                assert_master_identity(&mut f, MASTER_MAC, false).payload,
                1,
                "{headers} headers"
            );
        }
    }

    #[test]
    fn a_vlan_tag_does_not_hide_a_forged_arp() {
        let plain = arp_reply(EXT_MAC, EVIL, v4(192, 0, 2, 12), v4(192, 0, 2, 254));
        let mut tagged = crate::frames::tagged(&plain, 7);
        let done = assert_master_identity(&mut tagged, MASTER_MAC, false);
        assert_eq!(done.payload, 1);
        assert_eq!(
            &tagged[ETH_HEADER + 4 + 8..ETH_HEADER + 4 + 14],
            &MASTER_MAC.0
        );
    }

    #[test]
    fn truncated_and_odd_frames_never_panic() {
        let f = na(v6("fe80::66"), v6("2001:db8:1::fe"), EVIL, true);
        for n in 0..=f.len() {
            let mut g = f[..n].to_vec();
            let _ = assert_master_identity(&mut g, MASTER_MAC, false);
        }
        let a = arp_reply(EXT_MAC, EVIL, v4(192, 0, 2, 12), v4(192, 0, 2, 254));
        for n in 0..=a.len() {
            let mut g = a[..n].to_vec();
            let _ = assert_master_identity(&mut g, MASTER_MAC, false);
        }
        // An option of length zero ends the walk.
        let mut g = f.clone();
        let at = ETH_HEADER + icmpv6_offset(&g[ETH_HEADER..]).unwrap() + 25;
        g[at] = 0;
        let _ = assert_master_identity(&mut g, MASTER_MAC, false);
    }
}
