//! ARP for IPv4 over Ethernet. IPVLAN reads only the sender and target protocol addresses, at the
//! fixed offsets of a 6-byte hardware address (R-CLS-1); it never checks opcode or types.

use std::net::Ipv4Addr;

use super::{array, be16};

/// `arp_hdr_len` for Ethernet: 8 + 2 × (6 + 4).
pub const PACKET_LEN: usize = 28;

mod field {
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// `None` when shorter than 28 bytes.
    pub fn new_checked(buffer: T) -> Option<ArpPacket<T>> {
        (buffer.as_ref().len() >= PACKET_LEN).then_some(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    pub fn sender_hw(&self) -> [u8; 6] {
        array(self.buffer.as_ref(), field::SHA)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::SPA))
    }

    pub fn target_hw(&self) -> [u8; 6] {
        array(self.buffer.as_ref(), field::THA)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::TPA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0xfe, 192, 0, 2, 254, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 192, 0, 2, 11,
    ];

    #[test]
    fn test_deconstruct() {
        let arp = ArpPacket::new_checked(&REPLY[..]).unwrap();
        assert_eq!(arp.operation(), OP_REPLY);
        assert_eq!(arp.sender_hw(), [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(arp.sender_ip(), Ipv4Addr::new(192, 0, 2, 254));
        assert_eq!(arp.target_hw(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(arp.target_ip(), Ipv4Addr::new(192, 0, 2, 11));
    }

    #[test]
    fn r_cls_1_needs_28_bytes() {
        assert!(ArpPacket::new_checked(&REPLY[..27]).is_none());
    }
}
