use super::*;

use etherparse::{Icmpv4Slice, Icmpv6Slice, Ipv4HeaderSlice, Ipv6HeaderSlice, PacketBuilder};

/// The DF bit in the IPv4 header's flags byte (offset 6).
const IPV4_DF: u8 = 0x40;

/// An ICMP echo request of `size` data bytes from 198.51.100.11 to 192.0.2.254, DF as given.
fn echo_v4(size: usize, df: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let b = PacketBuilder::ipv4([198, 51, 100, 11], [192, 0, 2, 254], 64).icmpv4_echo_request(7, 1);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    // (etherparse sets DF by default)
    let mut h = Ipv4Header::from_slice(&out).unwrap().0;
    h.dont_fragment = df;
    h.identification = 0x1234;
    h.header_checksum = h.calc_header_checksum();
    out[..20].copy_from_slice(&h.to_bytes());
    out
}

fn echo_v6(size: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let src: Ipv6Addr = "2001:db8:2::11".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8:1::fe".parse().unwrap();
    let b = PacketBuilder::ipv6(src.octets(), dst.octets(), 64).icmpv6_echo_request(7, 1);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    out
}

fn fragments(packet: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let n = fragment_ipv4(packet, mtu, |f| out.push(f.to_vec())).unwrap();
    assert_eq!(n, out.len());
    out
}

#[test]
fn a_4028_byte_packet_on_a_1500_mtu_is_cut_as_the_kernel_cuts_it() {
    // l3-egress-edges.out, slave-mtu v4-nodf: the wire carries 1500, 1500, 1068 per packet.
    let p = echo_v4(4000, false);
    assert_eq!(p.len(), 4028);
    let f = fragments(&p, 1500);
    assert_eq!(
        f.iter().map(Vec::len).collect::<Vec<_>>(),
        [1500, 1500, 1068]
    );
    let mut data = Vec::new();
    for (i, frag) in f.iter().enumerate() {
        let h = Ipv4HeaderSlice::from_slice(frag).unwrap();
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        assert_eq!(usize::from(h.total_len()), frag.len());
        assert_eq!(h.more_fragments(), i < 2, "fragment {i}");
        assert_eq!(usize::from(h.fragments_offset().value()) * 8, data.len());
        assert_eq!(
            h.identification(),
            Ipv4HeaderSlice::from_slice(&p).unwrap().identification()
        );
        data.extend_from_slice(&frag[20..]);
    }
    assert_eq!(data, p[20..]);
}

#[test]
fn fragments_of_a_fragment_continue_its_offsets_and_keep_its_last_mf() {
    let p = echo_v4(4000, false);
    let first = fragments(&p, 1500).remove(0); // offset 0, MF
    let again = fragments(&first, 600);
    let mut covered = 0;
    for (i, f) in again.iter().enumerate() {
        let h = Ipv4HeaderSlice::from_slice(f).unwrap();
        assert!(h.more_fragments(), "fragment {i}: the original had MF");
        assert_eq!(usize::from(h.fragments_offset().value()) * 8, covered);
        assert!(f.len() <= 600);
        covered += f.len() - 20;
    }
    assert_eq!(covered, 1480);
}

#[test]
fn what_fits_is_unchanged_and_df_or_a_tiny_mtu_is_refused() {
    let p = echo_v4(100, false);
    assert_eq!(fragments(&p, 1500), vec![p.clone()]);
    assert_eq!(
        fragment_ipv4(&echo_v4(2000, true), 1500, |_| {}),
        Err(FragmentError::DontFragment)
    );
    assert_eq!(
        fragment_ipv4(&echo_v4(2000, false), 24, |_| {}),
        Err(FragmentError::MtuTooSmall(24))
    );
    let mut short = echo_v4(2000, false);
    short.truncate(1000); // total length says 2028
    assert_eq!(
        fragment_ipv4(&short, 1500, |_| {}),
        Err(FragmentError::Malformed)
    );
    assert_eq!(
        fragment_ipv4(&[0x45, 0], 1500, |_| {}),
        Err(FragmentError::Malformed)
    );
}

#[test]
fn the_decision_follows_df_and_the_family() {
    assert_eq!(too_big(&echo_v4(2000, false)), TooBig::Fragment);
    let sender = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(too_big(&echo_v4(2000, true)), TooBig::Answer { to: sender });
    let sender6: IpAddr = "2001:db8:2::11".parse().unwrap();
    assert_eq!(too_big(&echo_v6(2000)), TooBig::Answer { to: sender6 });
    assert_eq!(too_big(&[]), TooBig::Drop);
    assert_eq!(too_big(&[0x45; 10]), TooBig::Drop);
    assert_eq!(too_big(&[0x60; 10]), TooBig::Drop);
}

#[test]
fn errors_about_errors_are_not_answered() {
    // An IPv4 "destination unreachable" with DF, too big: no answer (RFC 1122 §3.2.2).
    let b = PacketBuilder::ipv4([198, 51, 100, 11], [192, 0, 2, 254], 64).icmpv4(
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
    );
    let mut p = Vec::new();
    b.write(&mut p, &[0u8; 2000]).unwrap();
    p[6] |= IPV4_DF;
    assert_eq!(too_big(&p), TooBig::Drop);
    // ICMPv6 Packet Too Big about a Packet Too Big: none either.
    let src: Ipv6Addr = "2001:db8:2::11".parse().unwrap();
    let b = PacketBuilder::ipv6(
        src.octets(),
        [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe],
        64,
    )
    .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1280 });
    let mut p = Vec::new();
    b.write(&mut p, &[0u8; 2000]).unwrap();
    assert_eq!(too_big(&p), TooBig::Drop);
}

#[test]
fn the_ipv4_answer_is_fragmentation_needed_with_the_mtu_to_the_sender() {
    let p = echo_v4(4000, true);
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let a = too_big_answer(&p, 1500, IpAddr::V4(src)).unwrap();
    assert!(a.len() <= 576, "{}", a.len());
    let ip = Ipv4HeaderSlice::from_slice(&a).unwrap();
    assert_eq!(ip.source_addr(), src);
    assert_eq!(ip.destination_addr(), Ipv4Addr::new(198, 51, 100, 11));
    assert_eq!(ip.ttl(), ANSWER_HOP_LIMIT);
    assert_eq!(usize::from(ip.total_len()), a.len());
    assert_eq!(ip.to_header().calc_header_checksum(), ip.header_checksum());
    let icmp = Icmpv4Slice::from_slice(&a[20..]).unwrap();
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1500
        })
    );
    assert_eq!(
        Icmpv4Header::with_checksum(icmp.icmp_type(), icmp.payload()).checksum,
        icmp.checksum()
    );
    // It quotes the offending header and more.
    assert_eq!(&icmp.payload()[..28], &p[..28]);
    // Of the wrong family: none.
    assert!(too_big_answer(&p, 1500, "2001:db8::1".parse().unwrap()).is_none());
}

#[test]
fn the_ipv6_answer_is_packet_too_big_with_the_mtu_to_the_sender() {
    let p = echo_v6(4000);
    let src: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
    let a = too_big_answer(&p, 1500, IpAddr::V6(src)).unwrap();
    assert_eq!(a.len(), 1280, "as much as fits in the minimum MTU");
    let ip = Ipv6HeaderSlice::from_slice(&a).unwrap();
    assert_eq!(ip.source_addr(), src);
    assert_eq!(
        ip.destination_addr(),
        "2001:db8:2::11".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(usize::from(ip.payload_length()) + 40, a.len());
    let icmp = Icmpv6Slice::from_slice(&a[40..]).unwrap();
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1500 });
    let recomputed = Icmpv6Header::with_checksum(
        icmp.icmp_type(),
        ip.source(),
        ip.destination(),
        icmp.payload(),
    )
    .unwrap();
    assert_eq!(recomputed.checksum, icmp.checksum());
    assert_eq!(&icmp.payload()[..48], &p[..48]);
}

#[test]
fn answers_are_bounded_like_the_kernels_icmp_rate_limit() {
    let mut l = AnswerLimiter::default();
    let t0 = 1_000_000_000;
    let burst = (0..200).filter(|_| l.admit(t0)).count();
    assert_eq!(burst as u64, AnswerLimiter::BURST);
    // 10 ms later: 10 more.
    let later = (0..200).filter(|_| l.admit(t0 + 10_000_000)).count();
    assert_eq!(later, 10);
    // A long pause refills only up to the burst.
    let again = (0..200).filter(|_| l.admit(t0 + 60_000_000_000)).count();
    assert_eq!(again as u64, AnswerLimiter::BURST);
}

proptest::proptest! {
    /// Any packet, any MTU from 68: the fragments fit, and put together give the packet back.
    #[test]
    fn fragments_fit_and_reassemble(size in 0usize..9000, mtu in 68usize..9001) {
        let p = echo_v4(size, false);
        let mut frags = Vec::new();
        fragment_ipv4(&p, mtu, |f| frags.push(f.to_vec())).unwrap();
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            proptest::prop_assert!(f.len() <= mtu.max(p.len().min(mtu)));
            let h = Ipv4HeaderSlice::from_slice(f).unwrap();
            proptest::prop_assert_eq!(usize::from(h.fragments_offset().value()) * 8, data.len());
            proptest::prop_assert_eq!(h.more_fragments(), i + 1 < frags.len());
            data.extend_from_slice(&f[20..]);
        }
        proptest::prop_assert_eq!(&data[..], &p[20..]);
    }
}
