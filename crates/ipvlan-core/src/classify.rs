//! Frame classification (spec §3): what a raw Ethernet frame is, and the destination and source
//! *keys* the address table is searched with.
//!
//! Reads the byte slice in place; nothing is allocated. The keys follow the kernel exactly
//! (R-CLS-1..4) even where a fuller parse knows more (e.g. ICMPv6 behind extension headers); the
//! fuller parse is reported alongside for counters, logs and later policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::wire::ethernet::{self, ethertype, EthernetFrame, MacAddr, VlanTag};
use crate::wire::ipv4::{Ipv4Error, Ipv4Packet};
use crate::wire::ipv6::{self, Icmpv6Info, Ipv6Error, Ipv6Packet};
use crate::wire::ArpPacket;

/// A frame too short to be Ethernet at all (R-TX-0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runt {
    pub len: usize,
}

/// Why a frame with a known EtherType could not be classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Tagged, but the tag itself is cut off.
    VlanTruncated,
    /// ARP payload shorter than 28 bytes (R-CLS-1).
    ArpTruncated,
    Ipv4(Ipv4Error),
    Ipv6(Ipv6Error),
    /// ICMPv6 from `::` too short for its header, or an NS too short for its target (R-CLS-3).
    NdTruncated,
}

/// What is inside the frame, after at most one VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    Arp {
        operation: u16,
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        /// Upper-layer protocol after the extension headers; `None` if they are malformed.
        upper: Option<u8>,
        /// ICMPv6 type/code/ND target when the upper layer is an unfragmented ICMPv6 message.
        icmp: Option<Icmpv6Info>,
    },
    /// 802.3x PAUSE (never queued for multicast distribution, R-MC-1).
    Pause,
    /// Any other EtherType (R-CLS-4).
    Other,
    Malformed(Malformed),
}

/// The addresses a frame is looked up by (R-CLS-1..3). `None` never matches a slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keys {
    pub dst: Option<IpAddr>,
    pub src: Option<IpAddr>,
}

impl Keys {
    pub const NONE: Keys = Keys {
        dst: None,
        src: None,
    };
}

/// A classified Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    pub vlan: Option<VlanTag>,
    /// The EtherType of the payload (inside the tag, if tagged).
    pub ethertype: u16,
    pub l3: L3,
    /// Total frame length in bytes.
    pub len: usize,
    keys: Keys,
}

impl Classified {
    /// Keys as the kernel sees a frame arriving on the master: the receive path has already moved
    /// a VLAN tag out of the frame, so the inner packet is what counts.
    pub fn keys_rx(&self) -> Keys {
        self.keys
    }

    /// Keys as the kernel sees a frame a slave transmits: only the outer EtherType counts, so a
    /// frame still carrying its tag is unclassified (R-CLS-4).
    pub fn keys_tx(&self) -> Keys {
        if self.vlan.is_some() {
            Keys::NONE
        } else {
            self.keys
        }
    }

    /// An IPv6 duplicate-address-detection probe: NS from `::` (R-CLS-3, R-SPC-DAD-1).
    pub fn is_dad_probe(&self) -> bool {
        matches!(
            self.l3,
            L3::Ipv6 { src, icmp: Some(Icmpv6Info { kind: ipv6::ICMPV6_NEIGHBOUR_SOLICIT, .. }), .. }
                if src.is_unspecified()
        )
    }

    /// An IPv4 or IPv6 packet that passed the header checks.
    pub fn is_ip(&self) -> bool {
        matches!(self.l3, L3::Ipv4 { .. } | L3::Ipv6 { .. })
    }
}

/// Classifies a raw Ethernet frame. Never panics, whatever the bytes.
pub fn classify(frame: &[u8]) -> Result<Classified, Runt> {
    let eth = EthernetFrame::new_checked(frame).ok_or(Runt { len: frame.len() })?;
    let (vlan, inner_type, l3_bytes) = match eth.vlan() {
        None => (None, eth.ethertype(), eth.payload()),
        Some(Ok((tag, inner))) => (Some(tag), inner, &eth.payload()[ethernet::VLAN_TAG_LEN..]),
        Some(Err(())) => {
            return Ok(Classified {
                dst_mac: eth.dst(),
                src_mac: eth.src(),
                vlan: None,
                ethertype: eth.ethertype(),
                l3: L3::Malformed(Malformed::VlanTruncated),
                len: frame.len(),
                keys: Keys::NONE,
            })
        }
    };
    let (l3, keys) = classify_l3(inner_type, l3_bytes);
    Ok(Classified {
        dst_mac: eth.dst(),
        src_mac: eth.src(),
        vlan,
        ethertype: inner_type,
        l3,
        len: frame.len(),
        keys,
    })
}

fn classify_l3(ethertype: u16, bytes: &[u8]) -> (L3, Keys) {
    match ethertype {
        ethertype::ARP => match ArpPacket::new_checked(bytes) {
            Some(arp) => (
                L3::Arp {
                    operation: arp.operation(),
                    sender: arp.sender_ip(),
                    target: arp.target_ip(),
                },
                Keys {
                    dst: Some(arp.target_ip().into()),
                    src: Some(arp.sender_ip().into()),
                },
            ),
            None => (L3::Malformed(Malformed::ArpTruncated), Keys::NONE),
        },
        ethertype::IPV4 => match Ipv4Packet::new_checked(bytes) {
            Ok(ip) => (
                L3::Ipv4 {
                    src: ip.src(),
                    dst: ip.dst(),
                    protocol: ip.protocol(),
                },
                Keys {
                    dst: Some(ip.dst().into()),
                    src: Some(ip.src().into()),
                },
            ),
            Err(e) => (L3::Malformed(Malformed::Ipv4(e)), Keys::NONE),
        },
        ethertype::IPV6 => classify_ipv6(bytes),
        ethertype::PAUSE => (L3::Pause, Keys::NONE),
        _ => (L3::Other, Keys::NONE),
    }
}

fn classify_ipv6(bytes: &[u8]) -> (L3, Keys) {
    let ip = match Ipv6Packet::new_checked(bytes) {
        Ok(ip) => ip,
        Err(e) => return (L3::Malformed(Malformed::Ipv6(e)), Keys::NONE),
    };
    let (src, dst) = (ip.src(), ip.dst());
    let upper = ip.upper_layer();
    let icmp = upper
        .filter(|u| u.protocol == ipv6::NEXT_HEADER_ICMPV6 && !u.fragmented)
        .and_then(|u| Icmpv6Info::parse(u.payload));
    let l3 = L3::Ipv6 {
        src,
        dst,
        upper: upper.map(|u| u.protocol),
        icmp,
    };
    // R-CLS-3: ICMPv6 sent from `::` directly after the fixed header is special. The kernel
    // measures against the bytes present, not the payload-length field.
    if src.is_unspecified() && ip.next_header() == ipv6::NEXT_HEADER_ICMPV6 {
        let message = &bytes[ipv6::HEADER_LEN..];
        if message.len() < ipv6::ICMPV6_HEADER_LEN {
            return (L3::Malformed(Malformed::NdTruncated), Keys::NONE);
        }
        if message[0] != ipv6::ICMPV6_NEIGHBOUR_SOLICIT {
            return (l3, Keys::NONE);
        }
        return match ipv6::nd_target(message) {
            Some(target) => (
                l3,
                Keys {
                    dst: Some(target.into()),
                    src: Some(target.into()),
                },
            ),
            None => (L3::Malformed(Malformed::NdTruncated), Keys::NONE),
        };
    }
    (
        l3,
        Keys {
            dst: Some(dst.into()),
            src: Some(src.into()),
        },
    )
}

#[cfg(test)]
mod tests;
