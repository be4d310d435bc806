//! Zero-copy views of the headers IPVLAN looks at, in the style of smoltcp's `wire`:
//! `new_checked` validates lengths once, after which no accessor panics.

pub mod arp;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;

pub use arp::ArpPacket;
pub use ethernet::{ethertype, EthernetFrame, MacAddr, VlanTag};
pub use ipv4::Ipv4Packet;
pub use ipv6::Ipv6Packet;

/// Reads a big-endian u16 at `at`; callers have checked the length.
pub(crate) fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Copies `N` bytes at `at`; callers have checked the length.
pub(crate) fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}
