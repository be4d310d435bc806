//! Ethernet II header, MAC addresses and the single 802.1Q/802.1ad tag.

use std::fmt;
use std::str::FromStr;

use super::{array, be16};
use crate::error::ConfigError;

/// EtherType values IPVLAN cares about.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN_CTAG: u16 = 0x8100;
    pub const VLAN_STAG: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    /// 802.3x PAUSE: never queued to the multicast engine (R-MC-1).
    pub const PAUSE: u16 = 0x8808;
}

/// Length of the Ethernet II header (`ETH_HLEN`).
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// I/G bit set: multicast or broadcast (`is_multicast_ether_addr`).
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(self) -> bool {
        self == MacAddr::BROADCAST
    }

    pub fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<MacAddr, ConfigError> {
        let bad = || ConfigError::MacAddress(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// One 802.1Q (C-tag) or 802.1ad (S-tag) tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// 0x8100 or 0x88a8.
    pub tpid: u16,
    /// Priority, DEI and VLAN id.
    pub tci: u16,
}

impl VlanTag {
    pub fn vid(self) -> u16 {
        self.tci & 0x0fff
    }

    pub fn priority(self) -> u8 {
        (self.tci >> 13) as u8
    }
}

/// A view of an Ethernet II frame. Checked to hold at least the 14-byte header.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// `None` when the buffer is shorter than an Ethernet header (a runt, R-TX-0).
    pub fn new_checked(buffer: T) -> Option<EthernetFrame<T>> {
        (buffer.as_ref().len() >= HEADER_LEN).then_some(EthernetFrame { buffer })
    }

    pub fn dst(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::DST.start))
    }

    pub fn src(&self) -> MacAddr {
        MacAddr(array(self.buffer.as_ref(), field::SRC.start))
    }

    /// The outer EtherType (a TPID when the frame is tagged).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header (a VLAN tag, if any, is still in it).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// The single VLAN tag and the inner EtherType, if the frame is tagged and long enough.
    /// `Some(Err(()))` when tagged but truncated.
    #[allow(clippy::result_unit_err)]
    pub fn vlan(&self) -> Option<Result<(VlanTag, u16), ()>> {
        let tpid = self.ethertype();
        if tpid != ethertype::VLAN_CTAG && tpid != ethertype::VLAN_STAG {
            return None;
        }
        let p = self.payload();
        if p.len() < VLAN_TAG_LEN {
            return Some(Err(()));
        }
        Some(Ok((
            VlanTag {
                tpid,
                tci: be16(p, 0),
            },
            be16(p, 2),
        )))
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Rewrites the source MAC (egress frames always carry the master's MAC, R-MAC-4).
    pub fn set_src(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&mac.0);
    }

    pub fn set_dst(&mut self, mac: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&mac.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request from 02:00:00:00:00:01 (192.0.2.11 asks for 192.0.2.12).
    static ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 11, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 192, 0, 2, 12,
    ];

    #[test]
    fn test_deconstruct() {
        let frame = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(frame.dst(), MacAddr::BROADCAST);
        assert_eq!(frame.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.ethertype(), ethertype::ARP);
        assert_eq!(frame.payload().len(), 28);
        assert!(frame.vlan().is_none());
    }

    #[test]
    fn test_construct_rewrites_source() {
        let mut bytes = ARP_FRAME;
        let mut frame = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        frame.set_src(MacAddr([2, 0, 0, 0, 0, 0xfe]));
        frame.set_dst(MacAddr([2, 0, 0, 0, 0, 0x01]));
        assert_eq!(&bytes[0..12], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe]);
    }

    #[test]
    fn runt_is_refused() {
        assert!(EthernetFrame::new_checked(&ARP_FRAME[..13]).is_none());
        assert!(EthernetFrame::new_checked(&ARP_FRAME[..14]).is_some());
    }

    #[test]
    fn vlan_tag_is_parsed() {
        let mut bytes = vec![0u8; 12];
        bytes.extend_from_slice(&[0x81, 0x00, 0xa0, 0x0a, 0x08, 0x00]);
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        let (tag, inner) = frame.vlan().unwrap().unwrap();
        assert_eq!(tag.vid(), 10);
        assert_eq!(tag.priority(), 5);
        assert_eq!(inner, ethertype::IPV4);
        let truncated = EthernetFrame::new_checked(&bytes[..16]).unwrap();
        assert_eq!(truncated.vlan(), Some(Err(())));
    }

    #[test]
    fn mac_parse_print_and_bits() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:00:00:00:01");
        assert!(mac.is_unicast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(MacAddr([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "zz:00:00:00:00:01",
            "002:0:0:0:0:1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
