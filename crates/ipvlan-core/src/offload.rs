//! Finishing what a NIC offload would have done, for the rare frames that must enter a stack
//! that cannot take them as they are: slaves send 64 KiB TCP super-frames with the checksum left
//! to the hardware (TSO), which is right for other slaves and the wire, but a packet handed to
//! the master namespace's stack through a raw socket must be complete and fit the MTU.

/// virtio-net GSO type of a TCP/IPv4 super-frame.
pub const GSO_TCPV4: u8 = 1;
/// virtio-net GSO type of a TCP/IPv6 super-frame.
pub const GSO_TCPV6: u8 = 4;
/// Flag bit: the super-frame carries ECN (CWR handled per segment).
pub const GSO_ECN: u8 = 0x80;

const TCP: u8 = 6;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Why a super-frame could not be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Not a TCP packet over IPv4 or IPv6 without extension headers, or truncated.
    Unsupported,
    /// A segment size of zero.
    BadSegmentSize,
    /// The checksum position lies outside the packet.
    BadChecksumOffset,
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Completes a partial transport checksum in `packet` (an IP packet): the field at
/// `start + offset` holds the pseudo-header sum, the rest is summed from `start` to the end.
pub fn complete_checksum(
    packet: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), OffloadError> {
    let field = start + offset;
    if start > packet.len() || field + 2 > packet.len() {
        return Err(OffloadError::BadChecksumOffset);
    }
    let mut sum = !fold(sum16(&packet[start..], 0));
    if sum == 0 && offset == 6 {
        sum = 0xffff; // UDP: zero means "no checksum"
    }
    packet[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// Header geometry of a TCP packet over IPv4 or IPv6.
struct Layout {
    v6: bool,
    ip_len: usize,
    tcp_len: usize,
}

fn layout(packet: &[u8]) -> Result<Layout, OffloadError> {
    let v6 = match packet.first().map(|b| b >> 4) {
        Some(4) => false,
        Some(6) => true,
        _ => return Err(OffloadError::Unsupported),
    };
    let (ip_len, proto) = if v6 {
        (40, *packet.get(6).ok_or(OffloadError::Unsupported)?)
    } else {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        (ihl, *packet.get(9).ok_or(OffloadError::Unsupported)?)
    };
    if proto != TCP || ip_len < 20 || packet.len() < ip_len + 20 {
        return Err(OffloadError::Unsupported);
    }
    let tcp_len = usize::from(packet[ip_len + 12] >> 4) * 4;
    if tcp_len < 20 || packet.len() < ip_len + tcp_len {
        return Err(OffloadError::Unsupported);
    }
    Ok(Layout {
        v6,
        ip_len,
        tcp_len,
    })
}

/// Fills the IP length fields, the IPv4 header checksum and the TCP checksum of one segment.
fn finish_segment(seg: &mut [u8], l: &Layout) {
    let tcp_total = seg.len() - l.ip_len;
    let mut pseudo;
    if l.v6 {
        let plen = u16::try_from(tcp_total).unwrap_or(u16::MAX);
        seg[4..6].copy_from_slice(&plen.to_be_bytes());
        pseudo = sum16(&seg[8..40], 0);
    } else {
        let total = u16::try_from(seg.len()).unwrap_or(u16::MAX);
        seg[2..4].copy_from_slice(&total.to_be_bytes());
        seg[10..12].copy_from_slice(&[0, 0]);
        let c = !fold(sum16(&seg[..l.ip_len], 0));
        seg[10..12].copy_from_slice(&c.to_be_bytes());
        pseudo = sum16(&seg[12..20], 0);
    }
    pseudo += u32::from(TCP) + tcp_total as u32;
    let csum_at = l.ip_len + 16;
    seg[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
    let c = !fold(sum16(&seg[l.ip_len..], pseudo));
    seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Splits a TCP super-frame (an IP packet, no Ethernet header) into segments of at most `mss`
/// payload bytes, each a complete packet with correct lengths, IDs, sequence numbers, flags and
/// checksums, as the kernel's software GSO would. `out` is called once per segment; one buffer
/// is reused for all of them.
pub fn segment_tcp(
    packet: &[u8],
    mss: usize,
    mut out: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    if mss == 0 {
        return Err(OffloadError::BadSegmentSize);
    }
    let l = layout(packet)?;
    let hdr = l.ip_len + l.tcp_len;
    let payload = &packet[hdr..];
    let seq = u32::from_be_bytes([
        packet[l.ip_len + 4],
        packet[l.ip_len + 5],
        packet[l.ip_len + 6],
        packet[l.ip_len + 7],
    ]);
    let flags = packet[l.ip_len + 13];
    let id = u16::from_be_bytes([packet[4], packet[5]]);
    let count = payload.len().div_ceil(mss).max(1);
    let mut seg = Vec::with_capacity(hdr + mss);
    for i in 0..count {
        let from = i * mss;
        let to = (from + mss).min(payload.len());
        seg.clear();
        seg.extend_from_slice(&packet[..hdr]);
        seg.extend_from_slice(&payload[from..to]);
        let s = seq.wrapping_add(from as u32);
        seg[l.ip_len + 4..l.ip_len + 8].copy_from_slice(&s.to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(FIN | PSH);
        }
        if i > 0 {
            f &= !CWR;
        }
        seg[l.ip_len + 13] = f;
        if !l.v6 {
            let this_id = id.wrapping_add(i as u16);
            seg[4..6].copy_from_slice(&this_id.to_be_bytes());
        }
        finish_segment(&mut seg, &l);
        out(&seg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{ipv4_packet, ipv6_packet, v4, v6};

    /// A TCP packet with `len` payload bytes (pattern), ACK|PSH|FIN, seq 1000.
    fn tcp4(len: usize) -> Vec<u8> {
        let mut p = ipv4_packet(v4(192, 0, 2, 11), v4(192, 0, 2, 1), 6, 20 + len);
        p[4..6].copy_from_slice(&7u16.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x10 | PSH | FIN;
        for (i, b) in t[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn verify_ipv4(seg: &[u8]) {
        assert_eq!(fold(sum16(&seg[..20], 0)), 0xffff, "IPv4 header checksum");
        let pseudo = sum16(&seg[12..20], 0) + 6 + (seg.len() - 20) as u32;
        assert_eq!(fold(sum16(&seg[20..], pseudo)), 0xffff, "TCP checksum");
    }

    #[test]
    fn segments_tcp_over_ipv4() {
        let p = tcp4(3000);
        let mut segs = Vec::new();
        segment_tcp(&p, 1448, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            verify_ipv4(s);
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(u16::from_be_bytes([s[4], s[5]]), 7 + i as u16);
            let seq = u32::from_be_bytes([s[24], s[25], s[26], s[27]]);
            assert_eq!(seq, 1000 + (i * 1448) as u32);
            let last = i == 2;
            assert_eq!(s[33] & (PSH | FIN) != 0, last, "PSH/FIN only on the last");
            payload.extend_from_slice(&s[40..]);
        }
        assert_eq!(payload, p[40..].to_vec());
    }

    #[test]
    fn segments_tcp_over_ipv6() {
        let mut tcp = vec![0u8; 20 + 2500];
        tcp[4..8].copy_from_slice(&5u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x10;
        let p = ipv6_packet(v6("2001:db8::11"), v6("2001:db8::1"), 6, &tcp);
        let mut segs = Vec::new();
        segment_tcp(&p, 1000, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 3);
        for s in &segs {
            let plen = usize::from(u16::from_be_bytes([s[4], s[5]]));
            assert_eq!(plen, s.len() - 40);
            let pseudo = sum16(&s[8..40], 0) + 6 + plen as u32;
            assert_eq!(fold(sum16(&s[40..], pseudo)), 0xffff);
        }
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut p = tcp4(100);
        // What a stack leaves for the hardware: the pseudo-header sum in the field.
        let pseudo = fold(sum16(&p[12..20], 0) + 6 + (p.len() - 20) as u32);
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        complete_checksum(&mut p, 20, 16).unwrap();
        verify_ipv4(&{
            let mut q = p.clone();
            let c = !fold(sum16(&q[..20], 0));
            q[10..12].copy_from_slice(&c.to_be_bytes());
            q
        });
        assert_eq!(
            complete_checksum(&mut p, 200, 16),
            Err(OffloadError::BadChecksumOffset)
        );
    }

    #[test]
    fn refuses_what_it_cannot_segment() {
        assert_eq!(
            segment_tcp(&[0x45; 10], 100, |_| {}),
            Err(OffloadError::Unsupported)
        );
        let udp = ipv4_packet(v4(192, 0, 2, 1), v4(192, 0, 2, 2), 17, 100);
        assert_eq!(
            segment_tcp(&udp, 100, |_| {}),
            Err(OffloadError::Unsupported)
        );
        assert_eq!(
            segment_tcp(&tcp4(10), 0, |_| {}),
            Err(OffloadError::BadSegmentSize)
        );
    }
}
