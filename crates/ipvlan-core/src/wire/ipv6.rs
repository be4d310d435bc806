//! IPv6 header, extension-header walk and the ICMPv6 neighbour-discovery fields IPVLAN needs.

use std::net::Ipv6Addr;

use etherparse::{IpNumber, Ipv6ExtensionsSlice};

use super::{array, be16};

pub const HEADER_LEN: usize = 40;
/// IANA protocol number of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 header length (`struct icmp6hdr`).
pub const ICMPV6_HEADER_LEN: usize = 8;
pub const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub const ICMPV6_NEIGHBOUR_SOLICIT: u8 = 135;
pub const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
/// NS/NA: ICMPv6 header followed by the 16-byte target address.
pub const ND_MESSAGE_LEN: usize = ICMPV6_HEADER_LEN + 16;

mod field {
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Why an IPv6 header was refused (R-CLS-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    Truncated,
    Version,
}

#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The upper-layer protocol found after the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    pub protocol: u8,
    /// Bytes of the upper-layer message (empty for a non-first fragment).
    pub payload: &'a [u8],
    /// The packet carries a fragment header that fragments it.
    pub fragmented: bool,
    /// At least one extension header preceded the upper layer.
    pub had_extensions: bool,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// The kernel's checks: ≥ 40 bytes and version 6. The payload length is not checked.
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, Ipv6Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Ipv6Error::Truncated);
        }
        if b[field::VERSION] >> 4 != 6 {
            return Err(Ipv6Error::Version);
        }
        Ok(Ipv6Packet { buffer })
    }

    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::PAYLOAD_LEN))
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::SRC))
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::DST))
    }

    /// Bytes after the fixed header, bounded by the payload length when that fits (Ethernet
    /// padding is not payload), otherwise everything present (a truncated packet).
    pub fn payload(&self) -> &[u8] {
        let rest = &self.buffer.as_ref()[HEADER_LEN..];
        &rest[..self.payload_len().min(rest.len())]
    }

    /// Walks the extension headers (hop-by-hop, routing, fragment, destination options, AH).
    /// `None` if they are truncated or malformed.
    pub fn upper_layer(&self) -> Option<UpperLayer<'_>> {
        let first = self.next_header();
        let (exts, protocol, rest) =
            Ipv6ExtensionsSlice::from_slice(IpNumber(first), self.payload()).ok()?;
        let fragmented = exts.is_fragmenting_payload();
        Some(UpperLayer {
            protocol: protocol.0,
            payload: rest,
            fragmented,
            had_extensions: !exts.is_empty(),
        })
    }
}

/// The ICMPv6 fields IPVLAN reports: type, code and, for NS/NA, the target address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Info {
    pub kind: u8,
    pub code: u8,
    /// Target of a neighbour solicitation or advertisement.
    pub nd_target: Option<Ipv6Addr>,
}

impl Icmpv6Info {
    /// `None` when shorter than the 8-byte ICMPv6 header.
    pub fn parse(message: &[u8]) -> Option<Icmpv6Info> {
        if message.len() < ICMPV6_HEADER_LEN {
            return None;
        }
        let kind = message[0];
        let nd_target = matches!(kind, ICMPV6_NEIGHBOUR_SOLICIT | ICMPV6_NEIGHBOUR_ADVERT)
            .then(|| nd_target(message))
            .flatten();
        Some(Icmpv6Info {
            kind,
            code: message[1],
            nd_target,
        })
    }
}

/// The target address of an NS/NA message, if the message is long enough to hold it.
pub fn nd_target(message: &[u8]) -> Option<Ipv6Addr> {
    (message.len() >= ND_MESSAGE_LEN)
        .then(|| Ipv6Addr::from(array::<16>(message, ICMPV6_HEADER_LEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DAD probe: NS from :: to ff02::1:ff00:11 for 2001:db8:1::11.
    fn dad_probe() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 24, 58, 255];
        p.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
        p.extend_from_slice(&"ff02::1:ff00:11".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&"2001:db8:1::11".parse::<Ipv6Addr>().unwrap().octets());
        p
    }

    #[test]
    fn test_deconstruct_dad_probe() {
        let bytes = dad_probe();
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.src(), Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.dst(), "ff02::1:ff00:11".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.next_header(), NEXT_HEADER_ICMPV6);
        assert_eq!(p.hop_limit(), 255);
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, 58);
        assert!(!upper.had_extensions);
        let icmp = Icmpv6Info::parse(upper.payload).unwrap();
        assert_eq!(icmp.kind, ICMPV6_NEIGHBOUR_SOLICIT);
        assert_eq!(icmp.nd_target, "2001:db8:1::11".parse().ok());
    }

    #[test]
    fn extension_headers_are_walked() {
        // MLDv2 report: hop-by-hop (router alert) then ICMPv6 143.
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 1];
        p.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"ff02::16".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]); // HBH: next=58, len 0, router alert, padn
        p.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
        let v6 = Ipv6Packet::new_checked(&p[..]).unwrap();
        let upper = v6.upper_layer().unwrap();
        assert_eq!(upper.protocol, 58);
        assert!(upper.had_extensions);
        assert_eq!(Icmpv6Info::parse(upper.payload).unwrap().kind, 143);
        // Cut inside the extension header: malformed.
        let cut = Ipv6Packet::new_checked(&p[..44]).unwrap();
        assert!(cut.upper_layer().is_none());
    }

    #[test]
    fn r_cls_3_kernel_checks() {
        let bytes = dad_probe();
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..39]).unwrap_err(),
            Ipv6Error::Truncated
        );
        let mut b = bytes.clone();
        b[0] = 0x40;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Ipv6Error::Version
        );
    }

    #[test]
    fn nd_target_needs_24_bytes() {
        assert_eq!(nd_target(&[135; 23]), None);
        let info = Icmpv6Info::parse(&[135, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(info.nd_target, None);
        assert!(Icmpv6Info::parse(&[1, 2, 3]).is_none());
    }
}
