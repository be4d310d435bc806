//! The `virtio_net_hdr` that prefixes every frame on the packet socket and the TAPs.

/// Size of `struct virtio_net_hdr` (without `num_buffers`).
pub const HEADER_LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;

/// The header's fields (little-endian on the wire, as TAP and AF_PACKET use it on x86/ARM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    /// Segment payload size of a GSO super-frame.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet frame.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the start of `buf` (zeros if it is too short).
    pub fn parse(buf: &[u8]) -> VnetHdr {
        if buf.len() < HEADER_LEN {
            return VnetHdr::default();
        }
        let le = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
        VnetHdr {
            flags: buf[0],
            gso_type: buf[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }

    /// A GSO super-frame, segmented only where it leaves a stack (exempt from MTU checks).
    pub fn is_gso(self) -> bool {
        self.gso_type & 0x7f != GSO_NONE
    }

    /// The L4 checksum is still to be computed.
    pub fn needs_csum(self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Writes an all-zero header (a plain, complete frame) at the start of `buf`.
pub fn write_plain(buf: &mut [u8]) {
    for b in buf.iter_mut().take(HEADER_LEN) {
        *b = 0;
    }
}
