//! IPv4 header, checked as IPVLAN checks it before trusting the addresses (R-CLS-2).

use std::net::Ipv4Addr;

use super::{array, be16};

pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const PROTOCOL: usize = 9;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Why an IPv4 header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Fewer than 20 bytes.
    Truncated,
    /// Version field is not 4.
    Version,
    /// Header length below 5 words.
    HeaderLength,
    /// Total length larger than the bytes present, or smaller than the header.
    TotalLength,
}

#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// The kernel's checks: ≥ 20 bytes, version 4, IHL ≥ 5, IHL×4 ≤ total length ≤ bytes present.
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>, Ipv4Error> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Ipv4Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Ipv4Error::Version);
        }
        let header_len = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if header_len < MIN_HEADER_LEN {
            return Err(Ipv4Error::HeaderLength);
        }
        let total = usize::from(be16(b, field::TOTAL_LEN));
        if total > b.len() || total < header_len {
            return Err(Ipv4Error::TotalLength);
        }
        Ok(Ipv4Packet { buffer })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::TOTAL_LEN))
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::SRC))
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(array::<4>(self.buffer.as_ref(), field::DST))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICMP echo header only: 192.0.2.11 → 192.0.2.12, total length 20.
    static HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x14, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, //
        192, 0, 2, 11, 192, 0, 2, 12,
    ];

    #[test]
    fn test_deconstruct() {
        let p = Ipv4Packet::new_checked(&HEADER[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 20);
        assert_eq!(p.protocol(), 1);
        assert_eq!(p.src(), Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 0, 2, 12));
    }

    #[test]
    fn r_cls_2_kernel_checks() {
        assert_eq!(
            Ipv4Packet::new_checked(&HEADER[..19]).unwrap_err(),
            Ipv4Error::Truncated
        );
        let mut b = HEADER;
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Ipv4Error::Version
        );
        let mut b = HEADER;
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Ipv4Error::HeaderLength
        );
        let mut b = HEADER;
        b[3] = 21; // claims more than present
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Ipv4Error::TotalLength
        );
        let mut b = HEADER;
        b[3] = 19; // shorter than its own header
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Ipv4Error::TotalLength
        );
        // Ethernet padding after the datagram is fine.
        let mut padded = HEADER.to_vec();
        padded.extend_from_slice(&[0; 26]);
        assert!(Ipv4Packet::new_checked(&padded[..]).is_ok());
    }
}
