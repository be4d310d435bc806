//! The flow steering program, run by the kernel (`BPF_PROG_TEST_RUN`) on hand-made frames and
//! compared with the hash it is meant to compute. Needs root (loading BPF programs).

use ipvlan_linux::FlowSteering;

/// Loads the program; fails the test, saying why, without root (the tests are `#[ignore]`d:
/// only `cargo test -- --include-ignored` asks them to run).
fn load() -> FlowSteering {
    assert!(
        nix::unistd::geteuid().is_root(),
        "loading a BPF program needs root, and this test is not running as root"
    );
    FlowSteering::load().expect("loading the steering program")
}

const SRC4: [u8; 4] = [192, 0, 2, 10];
const DST4: [u8; 4] = [198, 51, 100, 20];

fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let total = (20 + l4.len()) as u16;
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend([0x12, 0x34]);
    f.extend(frag.to_be_bytes());
    f.extend([64, proto, 0, 0]);
    f.extend(SRC4);
    f.extend(DST4);
    f.extend(l4);
    f
}

fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
    f.extend([0x60, 0, 0, 0]);
    f.extend((l4.len() as u16).to_be_bytes());
    f.extend([next, 64]);
    f.extend([
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
    ]);
    f.extend([
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14,
    ]);
    f.extend(l4);
    f
}

/// TCP header (20 bytes) with these ports, then a payload.
fn tcp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

fn word(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// What the program should return: the XOR of the address words (and the port word), through
/// a multiplicative hash.
fn expected(words: &[u64]) -> u32 {
    let h = words.iter().fold(0, |a, w| a ^ w) as u32;
    (h.wrapping_mul(0x9e37_79b1) >> 16) & 0xffff
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn tcp_and_udp_over_ipv4_hash_addresses_and_ports() {
    let p = load();
    for (proto, sport, dport) in [(6u8, 40000u16, 5201u16), (17, 5353, 53), (132, 1, 2)] {
        let frame = ipv4(proto, 0x4000, &tcp(sport, dport, b"data"));
        let ports = (u64::from(sport) << 16) | u64::from(dport);
        assert_eq!(
            p.run(&frame).unwrap(),
            expected(&[word(&SRC4), word(&DST4), ports]),
            "protocol {proto}"
        );
    }
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn one_flow_keeps_its_value_whatever_it_carries() {
    let p = load();
    let a = p.run(&ipv4(6, 0x4000, &tcp(40000, 5201, b"x"))).unwrap();
    let b = p
        .run(&ipv4(6, 0x4000, &tcp(40000, 5201, &[7u8; 1400])))
        .unwrap();
    assert_eq!(a, b);
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn flows_differing_only_in_their_source_port_spread_over_queues() {
    let p = load();
    for queues in [2u32, 3, 4] {
        let mut used = std::collections::BTreeSet::new();
        for sport in 40000..40016u16 {
            let v = p.run(&ipv4(6, 0x4000, &tcp(sport, 5201, b""))).unwrap();
            used.insert(v % queues);
        }
        assert_eq!(used.len(), queues as usize, "16 flows over {queues} queues");
    }
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn ipv4_fragments_and_other_protocols_hash_addresses_only() {
    let p = load();
    let addrs = expected(&[word(&SRC4), word(&DST4)]);
    // A first fragment (more-fragments set) and a later one: ports absent or not trusted.
    assert_eq!(p.run(&ipv4(6, 0x2000, &tcp(1, 2, b""))).unwrap(), addrs);
    assert_eq!(p.run(&ipv4(17, 0x0010, &tcp(1, 2, b""))).unwrap(), addrs);
    // ICMP.
    assert_eq!(
        p.run(&ipv4(1, 0, &[8, 0, 0, 0, 0, 1, 0, 1])).unwrap(),
        addrs
    );
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn tcp_over_ipv6_hashes_addresses_and_ports() {
    let p = load();
    let frame = ipv6(6, &tcp(40000, 5201, b"data"));
    let mut words: Vec<u64> = frame[22..54].chunks(4).map(word).collect();
    words.push((40000 << 16) | 5201);
    assert_eq!(p.run(&frame).unwrap(), expected(&words));
    // ICMPv6 (neighbour discovery): addresses only.
    let nd = ipv6(58, &[135, 0, 0, 0, 0, 0, 0, 0]);
    let words: Vec<u64> = nd[22..54].chunks(4).map(word).collect();
    assert_eq!(p.run(&nd).unwrap(), expected(&words));
}

#[test]
#[ignore = "needs root (loads a BPF program)"]
fn non_ip_and_truncated_frames_go_to_the_first_queue() {
    let p = load();
    let mut arp = vec![0xff; 6];
    arp.extend([0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend([0u8; 28]);
    assert_eq!(p.run(&arp).unwrap(), 0);
    // A TCP segment cut short inside its ports: the load fails and the program gives 0.
    let cut = &ipv4(6, 0x4000, &tcp(1, 2, b""))[..14 + 20 + 2];
    assert_eq!(p.run(cut).unwrap(), 0);
}
