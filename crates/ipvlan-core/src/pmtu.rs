//! What the master namespace's local output does with an l3/l3s egress packet too big for the
//! master's MTU (spec R-TX-L3-3: the kernel hands the slave's packet to `ip_local_out` /
//! `ip6_local_out` of the master's namespace): IPv4 without DF is fragmented (RFC 791 §3.2,
//! `ip_do_fragment`); IPv4 with DF is answered with ICMP "fragmentation needed" (RFC 1191,
//! type 3 code 4) and IPv6 with ICMPv6 "Packet Too Big" (RFC 8201, RFC 4443 §3.2), both
//! addressed to the sender and carrying the next-hop MTU.
//!
//! A data path that cannot hand such a packet to the kernel's output whole (a raw socket
//! refuses anything longer than the device MTU with `EMSGSIZE`) does this itself with these
//! functions. Pure: no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    icmpv4::DestUnreachableHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type, IpNumber,
    Ipv4Header, Ipv6Header,
};

/// What to do with a packet too big for the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// IPv4 without DF: split it into fragments that fit ([`fragment_ipv4`]).
    Fragment,
    /// IPv4 with DF, or IPv6: answer the sender ([`too_big_answer`]) from this source, which
    /// the caller picks as the master namespace's route back to the sender would.
    Answer {
        /// The sender, to whom the answer goes.
        to: IpAddr,
    },
    /// Nothing to answer (not IP, truncated, or an error about an error, RFC 1122 §3.2.2).
    Drop,
}

/// The hop limit of the answers ([`too_big_answer`]): the kernel's default TTL.
pub const ANSWER_HOP_LIMIT: u8 = 64;
/// IPv4: an ICMP error carries as much of the packet as fits in 576 bytes (RFC 1812 §4.3.2.3,
/// the kernel's `icmp_send`).
const ICMPV4_ERROR_MAX: usize = 576;
/// IPv6: as much as fits in the minimum MTU (RFC 4443 §2.4 (c)).
const ICMPV6_ERROR_MAX: usize = 1280;

/// Decides [`TooBig`] for the IP packet `packet` (no Ethernet header).
pub fn too_big(packet: &[u8]) -> TooBig {
    match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok((h, _)) = Ipv4Header::from_slice(packet) else {
                return TooBig::Drop;
            };
            if !h.dont_fragment {
                return TooBig::Fragment;
            }
            if !answerable_v4(&h, packet) {
                return TooBig::Drop;
            }
            TooBig::Answer {
                to: IpAddr::V4(Ipv4Addr::from(h.source)),
            }
        }
        Some(6) => {
            let Ok((h, _)) = Ipv6Header::from_slice(packet) else {
                return TooBig::Drop;
            };
            let src = Ipv6Addr::from(h.source);
            if src.is_unspecified() || src.is_multicast() || is_icmpv6_error(&h, packet) {
                return TooBig::Drop;
            }
            TooBig::Answer {
                to: IpAddr::V6(src),
            }
        }
        _ => TooBig::Drop,
    }
}

/// Whether an ICMP error may answer this IPv4 packet (RFC 1122 §3.2.2): not a non-first
/// fragment, not from an unspecified, broadcast or multicast source nor to a broadcast or
/// multicast destination, not itself an ICMP error.
fn answerable_v4(h: &Ipv4Header, packet: &[u8]) -> bool {
    let src = Ipv4Addr::from(h.source);
    if src.is_unspecified() || src.is_broadcast() || src.is_multicast() {
        return false;
    }
    let dst = Ipv4Addr::from(h.destination);
    if dst.is_broadcast() || dst.is_multicast() {
        return false;
    }
    if h.fragment_offset.value() != 0 {
        return false;
    }
    if h.protocol == IpNumber::ICMP {
        let icmp_type = packet.get(h.header_len()).copied();
        // Echo reply/request, router advertisement/solicitation, timestamp, info, address
        // mask: queries (the kernel's `icmp_pointers[].error`); the rest are errors.
        return matches!(
            icmp_type,
            Some(0 | 8 | 9 | 10 | 13 | 14 | 15 | 16 | 17 | 18)
        );
    }
    true
}

/// An ICMPv6 error message (types below 128, RFC 4443 §2.1) directly after the fixed header.
fn is_icmpv6_error(h: &Ipv6Header, packet: &[u8]) -> bool {
    h.next_header == IpNumber::IPV6_ICMP && packet.get(Ipv6Header::LEN).is_some_and(|t| *t < 128)
}

/// Why a packet could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// Not a well-formed IPv4 packet (bad header, total length beyond the buffer).
    #[error("not a well-formed IPv4 packet")]
    Malformed,
    /// DF is set: it must not be fragmented ([`TooBig::Answer`] it instead).
    #[error("the packet has DF set")]
    DontFragment,
    /// The MTU leaves no room for 8 bytes of data after the header (below 68, RFC 791).
    #[error("MTU {0} is too small to fragment into")]
    MtuTooSmall(usize),
}

/// Splits the IPv4 packet `packet` (without DF) into fragments of at most `mtu` bytes each,
/// handing each to `emit` in order, as the kernel's `ip_do_fragment` does: the data is cut at
/// multiples of 8 bytes; every fragment but the last has MF; the offsets continue those of a
/// packet that was a fragment already. Options go into the first fragment only (options with
/// the copy flag are rare and dropped from later fragments: a documented simplification).
/// Returns the number of fragments; a packet that fits is emitted unchanged (1).
pub fn fragment_ipv4(
    packet: &[u8],
    mtu: usize,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, FragmentError> {
    let (h, _) = Ipv4Header::from_slice(packet).map_err(|_| FragmentError::Malformed)?;
    let total = usize::from(h.total_len);
    let hl = h.header_len();
    if total > packet.len() || total < hl {
        return Err(FragmentError::Malformed);
    }
    if total <= mtu {
        emit(&packet[..total]);
        return Ok(1);
    }
    if h.dont_fragment {
        return Err(FragmentError::DontFragment);
    }
    let data = &packet[hl..total];
    let base = usize::from(h.fragment_offset.value()) * 8;
    let last_mf = h.more_fragments;
    let mut count = 0;
    let mut done = 0;
    let mut frame = Vec::with_capacity(mtu);
    while done < data.len() {
        let mut fh = h.clone();
        if count > 0 {
            fh.options = Default::default();
        }
        let room = mtu.saturating_sub(fh.header_len()) & !7;
        if room == 0 {
            return Err(FragmentError::MtuTooSmall(mtu));
        }
        let n = room.min(data.len() - done);
        let last = done + n == data.len();
        fh.more_fragments = if last { last_mf } else { true };
        let offset = u16::try_from((base + done) / 8).map_err(|_| FragmentError::Malformed)?;
        fh.fragment_offset = offset.try_into().map_err(|_| FragmentError::Malformed)?;
        fh.set_payload_len(n)
            .map_err(|_| FragmentError::Malformed)?;
        fh.header_checksum = fh.calc_header_checksum();
        frame.clear();
        frame.extend_from_slice(&fh.to_bytes());
        frame.extend_from_slice(&data[done..done + n]);
        emit(&frame);
        done += n;
        count += 1;
    }
    Ok(count)
}

/// The answer to a packet too big for `mtu` (its [`too_big`] is [`TooBig::Answer`]): an IPv4
/// ICMP "fragmentation needed and DF set" with the next-hop MTU, or an ICMPv6 "Packet Too Big"
/// with the MTU, from `src` to the packet's source, hop limit [`ANSWER_HOP_LIMIT`], quoting as
/// much of the packet as the RFCs allow. `None` if `src` is of the other family or the packet
/// is not IP.
pub fn too_big_answer(packet: &[u8], mtu: u32, src: IpAddr) -> Option<Vec<u8>> {
    match (packet.first().map(|b| b >> 4), src) {
        (Some(4), IpAddr::V4(src)) => {
            let (orig, _) = Ipv4Header::from_slice(packet).ok()?;
            let quote_max = ICMPV4_ERROR_MAX - Ipv4Header::MIN_LEN - 8;
            let quote = &packet[..packet.len().min(usize::from(orig.total_len)).min(quote_max)];
            let next_hop_mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
            let icmp = Icmpv4Header::with_checksum(
                Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu,
                }),
                quote,
            );
            let mut ip = Ipv4Header::new(
                0,
                ANSWER_HOP_LIMIT,
                IpNumber::ICMP,
                src.octets(),
                orig.source,
            )
            .ok()?;
            ip.set_payload_len(icmp.header_len() + quote.len()).ok()?;
            ip.header_checksum = ip.calc_header_checksum();
            let mut out = Vec::with_capacity(ip.header_len() + icmp.header_len() + quote.len());
            out.extend_from_slice(&ip.to_bytes());
            out.extend_from_slice(&icmp.to_bytes());
            out.extend_from_slice(quote);
            Some(out)
        }
        (Some(6), IpAddr::V6(src)) => {
            let (orig, _) = Ipv6Header::from_slice(packet).ok()?;
            let quote_max = ICMPV6_ERROR_MAX - Ipv6Header::LEN - 8;
            let quote = &packet[..packet.len().min(quote_max)];
            let icmp = Icmpv6Header::with_checksum(
                Icmpv6Type::PacketTooBig { mtu },
                src.octets(),
                orig.source,
                quote,
            )
            .ok()?;
            let ip = Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: u16::try_from(icmp.header_len() + quote.len()).ok()?,
                next_header: IpNumber::IPV6_ICMP,
                hop_limit: ANSWER_HOP_LIMIT,
                source: src.octets(),
                destination: orig.source,
            };
            let mut out = Vec::with_capacity(Ipv6Header::LEN + icmp.header_len() + quote.len());
            out.extend_from_slice(&ip.to_bytes());
            out.extend_from_slice(&icmp.to_bytes());
            out.extend_from_slice(quote);
            Some(out)
        }
        _ => None,
    }
}

/// A bound on answers ([`too_big_answer`]) per port, as the kernel bounds the ICMP errors it
/// sends (`net.ipv4.icmp_msgs_per_sec` = 1000, `icmp_msgs_burst` = 50): a token bucket
/// refilled at [`AnswerLimiter::RATE`] per second up to [`AnswerLimiter::BURST`]. A sender
/// flooding too-big packets gets no more answers than that; the packets are counted as its
/// `tx_errors` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerLimiter {
    tokens: u64,
    /// Nanoseconds (any monotonic origin) of the last refill.
    last: u64,
}

impl Default for AnswerLimiter {
    fn default() -> AnswerLimiter {
        AnswerLimiter {
            tokens: AnswerLimiter::BURST,
            last: 0,
        }
    }
}

impl AnswerLimiter {
    /// Answers per second.
    pub const RATE: u64 = 1000;
    /// Answers at once.
    pub const BURST: u64 = 50;

    /// Whether an answer may go now (`now_ns`: a monotonic clock in nanoseconds); takes a token.
    pub fn admit(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last);
        let fresh = elapsed.saturating_mul(Self::RATE) / 1_000_000_000;
        if fresh > 0 {
            self.tokens = (self.tokens + fresh).min(Self::BURST);
            self.last = now_ns;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests;
