//! `Veth` against the kernel: each test makes named namespaces of its own (a "master" one
//! where the pair is made, and a "container" one the slave end is moved into), deleted by a
//! guard even when the test fails, so no interface of the host is touched. Checked with
//! iproute2 (`ip -n NS -j …`). Needs root and `ip`, `ping`:
//! `cargo test -p ipvlan-linux --test veth -- --ignored`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipvlan_core::MacAddr;
use ipvlan_linux::veth::{self, VethError};
use ipvlan_linux::vnet::{VnetHdr, HEADER_LEN};
use ipvlan_linux::{NetNs, PacketSocket, Veth, VethIo};
use serde_json::Value;

const SLAVE_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x53, 0x01]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x53, 0xaa]);
const SLAVE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A named namespace made for one test, deleted on drop (also when the test fails; deleting
/// the namespace deletes the veth ends in it).
struct TestNs {
    name: String,
}

impl TestNs {
    fn new(tag: &str) -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ipvlrs-veth-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = TestNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn open(&self) -> NetNs {
        NetNs::named(&self.name).expect("opening the namespace")
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend(args);
        sh(&all)
    }

    /// `ip -d -j link show DEV` in the namespace; `None` if there is no such device.
    fn link(&self, dev: &str) -> Option<Value> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-d", "-j", "link", "show", "dev", dev])
            .output()
            .expect("running ip");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("ip's JSON");
        v.as_array().and_then(|a| a.first()).cloned()
    }

    /// A file of `/proc/sys/net` as the namespace sees it.
    fn sysctl(&self, rel: &str) -> String {
        let path = format!("/proc/sys/net/{rel}");
        sh(&["ip", "netns", "exec", &self.name, "cat", &path])
            .trim()
            .to_owned()
    }

    /// Runs `f` on a thread inside the namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.open().run(f).expect("running in the namespace")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("running a command");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f.as_str().expect("a flag").to_owned())
        .collect()
}

fn mac_of(link: &Value) -> MacAddr {
    let text = link["address"].as_str().expect("an address");
    let mut m = [0u8; 6];
    for (b, part) in m.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("hex");
    }
    MacAddr(m)
}

/// Makes the pair `ipvl0` / `ipvh3-1` in `master`.
fn make(master: &TestNs) -> Veth {
    master
        .run(|| Veth::create("ipvl0", "ipvh3-1", SLAVE_MAC, 1400))
        .expect("create")
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn create_sets_names_macs_mtus_sysctls_and_the_host_end_up() {
    let m = TestNs::new("m");
    let v = make(&m);
    assert_eq!(v.host_name(), "ipvh3-1");
    assert_eq!(veth::host_name(3, 1).expect("name"), "ipvh3-1");

    let slave = m.link("ipvl0").expect("the slave end");
    let host = m.link("ipvh3-1").expect("the host end");
    assert_eq!(slave["linkinfo"]["info_kind"], "veth");
    assert_eq!(mac_of(&slave), SLAVE_MAC);
    assert_eq!(slave["mtu"], 1400);
    assert_eq!(slave["inet6_addr_gen_mode"], "none", "{slave}");
    assert!(!flags(&slave).contains(&"UP".to_owned()), "{slave}");
    assert_eq!(host["ifindex"], v.host_ifindex());
    assert_eq!(slave["ifindex"], v.slave_ifindex());
    assert_eq!(host["mtu"], 65535);
    assert_eq!(host["inet6_addr_gen_mode"], "none", "{host}");
    assert!(flags(&host).contains(&"UP".to_owned()), "{host}");
    let host_mac = mac_of(&host);
    assert_ne!(host_mac, SLAVE_MAC);
    assert_eq!(host_mac.0[0] & 0x03, 0x02, "locally administered unicast");

    // The sysctls were written in the master namespace, by a thread inside it.
    assert_eq!(m.sysctl("ipv6/conf/ipvh3-1/accept_ra"), "0");
    assert_eq!(m.sysctl("ipv6/conf/ipvh3-1/router_solicitations"), "0");
    assert_eq!(m.sysctl("ipv4/conf/ipvh3-1/forwarding"), "1");
    assert_eq!(m.sysctl("ipv6/conf/ipvh3-1/forwarding"), "1");
    assert_eq!(m.sysctl("ipv4/conf/ipvh3-1/rp_filter"), "0");
    if Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists() {
        assert_eq!(m.sysctl("ipv6/conf/ipvh3-1/force_forwarding"), "1");
    }
    // /proc/sys/net follows the looking-up thread's namespace: this thread (the test's
    // namespace) has no such device, a thread inside the master namespace does.
    let dir = "/proc/sys/net/ipv4/conf/ipvh3-1";
    assert!(!Path::new(dir).exists());
    assert!(m.run(|| Path::new(dir).exists()));

    // Same namespace: the peer is here, under its name; the namespace is the master's.
    assert_eq!(v.peer().expect("peer"), (None, v.slave_ifindex()));
    assert!(v.same_ns());
    assert_eq!(v.current_name().expect("name"), "ipvl0");
    assert_eq!(v.netns().expect("netns").id(), m.open().id());

    // Up, the slave end has no IPv6 address of the kernel's making; neither has the host end.
    m.ip(&["link", "set", "ipvl0", "up"]);
    std::thread::sleep(Duration::from_millis(200));
    let addrs = m.ip(&["-6", "addr", "show"]);
    assert!(!addrs.contains("inet6 fe80"), "{addrs}");
    v.destroy().expect("destroy");
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn a_taken_name_is_refused_and_nothing_is_left() {
    let m = TestNs::new("m");
    m.ip(&[
        "link", "add", "ipvl0", "type", "veth", "peer", "name", "other0",
    ]);
    m.ip(&["tuntap", "add", "dev", "ipvh3-2", "mode", "tap"]);
    let links_before = m.ip(&["-br", "link", "show"]);

    let e = m
        .run(|| Veth::create("ipvl0", "ipvh3-1", SLAVE_MAC, 1400))
        .expect_err("slave name taken");
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
    assert!(
        matches!(&e, VethError::Exists { name, .. } if name == "ipvl0"),
        "{e}"
    );
    assert!(e.to_string().contains("ipvl0 already exists"), "{e}");

    let e = m
        .run(|| Veth::create("ipvl1", "ipvh3-2", SLAVE_MAC, 1400))
        .expect_err("host name taken");
    assert!(
        matches!(&e, VethError::Exists { name, .. } if name == "ipvh3-2"),
        "{e}"
    );
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);

    let e = m
        .run(|| Veth::create("ipvl1", "ipvh3-1", SLAVE_MAC, 70000))
        .expect_err("MTU beyond a veth's maximum");
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}");
    let e = m
        .run(|| Veth::create("ipvl1", "ipvh-far-too-long", SLAVE_MAC, 1400))
        .expect_err("name too long");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");

    assert_eq!(m.ip(&["-br", "link", "show"]), links_before);

    let e = m.run(|| Veth::attach("ipvh3-9")).expect_err("no such link");
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let e = m.run(|| Veth::attach("ipvh3-2")).expect_err("a TAP");
    assert!(matches!(e, VethError::NotVeth { .. }), "{e}");
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn the_slave_end_is_followed_into_another_namespace() {
    let m = TestNs::new("m");
    let c = TestNs::new("c");
    let v = make(&m);
    m.ip(&["link", "set", "ipvl0", "netns", &c.name]);
    c.ip(&["link", "set", "ipvl0", "name", "eth7"]);
    c.ip(&["link", "set", "eth7", "up"]);

    // IFLA_LINK_NETNSID names C as the master namespace sees it.
    let (nsid, index) = v.peer().expect("peer");
    let c_id = m.run(|| {
        ipvlan_linux::rtnl::Rtnl::open()
            .expect("rtnetlink")
            .nsid(&c.open())
            .expect("RTM_GETNSID")
    });
    assert_eq!(nsid, c_id);
    assert!(nsid.is_some());
    assert_eq!(c.link("eth7").expect("eth7")["ifindex"], index);
    assert!(!v.same_ns());
    // Read from the master namespace with IFLA_TARGET_NETNSID, changed from inside C.
    assert_eq!(v.current_name().expect("name"), "eth7");
    assert_eq!(v.netns().expect("netns").id(), c.open().id());
    let new_mac = MacAddr([0x02, 0, 0, 0, 0x53, 0x02]);
    v.set_mac(new_mac).expect("set_mac while up, elsewhere");
    assert_eq!(mac_of(&c.link("eth7").expect("eth7")), new_mac);

    // The carrier follows the host end.
    let lower_up = || flags(&c.link("eth7").expect("eth7")).contains(&"LOWER_UP".to_owned());
    assert!(lower_up());
    v.set_carrier(false).expect("carrier off");
    assert!(!lower_up());
    assert!(flags(&c.link("eth7").expect("eth7")).contains(&"NO-CARRIER".to_owned()));
    v.set_carrier(true).expect("carrier on");
    assert!(lower_up());

    // Found again by the host end's name (a daemon restart).
    let again = m.run(|| Veth::attach("ipvh3-1")).expect("attach");
    assert_eq!(again.host_ifindex(), v.host_ifindex());
    assert_eq!(again.peer().expect("peer"), (nsid, index));
    assert_eq!(again.current_name().expect("name"), "eth7");

    // Deleting the host end deletes both; twice is fine.
    again.destroy().expect("destroy");
    assert!(c.link("eth7").is_none());
    assert!(m.link("ipvh3-1").is_none());
    v.destroy().expect("already gone");
    let e = v.current_name().expect_err("gone");
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn the_namespace_of_a_slave_end_nobody_holds_is_a_clear_error() {
    let m = TestNs::new("m");
    let c = TestNs::new("c");
    let v = make(&m);
    m.ip(&["link", "set", "ipvl0", "netns", &c.name]);
    // Keep C alive through a descriptor of ours only: no process in it, no bind mount.
    let held = c.open();
    sh(&["ip", "netns", "del", &c.name]);
    assert!(v.peer().expect("peer").0.is_some());
    let e = v.slave_netns().expect_err("nobody we can see holds it");
    assert!(matches!(e, VethError::PeerNotFound { .. }), "{e}");
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    // With its last reference the namespace goes, and the pair with it.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.link("ipvh3-1").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(m.link("ipvh3-1").is_none());
    let e = v.slave_netns().expect_err("gone");
    assert!(matches!(e, VethError::NotFound { .. }), "{e}");
    v.destroy().expect("already gone");
}

/// Waits up to 5 s for a frame on `io`.
fn next_frame(io: &VethIo, buf: &mut [u8], deadline: Instant) -> Option<usize> {
    loop {
        match io.recv(buf) {
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// One's complement sum of `data` as 16-bit words.
fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The answer of a host at `HOST_IP` (MAC `PEER_MAC`) to `frame` (no vnet header): an ARP
/// reply or an ICMP echo reply, with a plain vnet header in front.
fn answer(frame: &[u8]) -> Option<Vec<u8>> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut out = vec![0u8; HEADER_LEN];
    if ethertype == 0x0806
        && frame.len() >= 42
        && frame[21] == 1
        && frame[38..42] == HOST_IP.octets()
    {
        let mut r = frame[..42].to_vec();
        r[0..6].copy_from_slice(&frame[6..12]);
        r[6..12].copy_from_slice(&PEER_MAC.0);
        r[21] = 2;
        r[22..28].copy_from_slice(&PEER_MAC.0);
        r[28..32].copy_from_slice(&HOST_IP.octets());
        r[32..42].copy_from_slice(&frame[22..32]);
        out.extend(r);
        return Some(out);
    }
    if ethertype == 0x0800
        && frame.len() >= 42
        && frame[23] == 1
        && frame[30..34] == HOST_IP.octets()
    {
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let icmp = 14 + ihl;
        if frame[icmp] != 8 {
            return None;
        }
        let mut r = frame.to_vec();
        r[0..6].copy_from_slice(&frame[6..12]);
        r[6..12].copy_from_slice(&PEER_MAC.0);
        r[26..30].copy_from_slice(&frame[30..34]);
        r[30..34].copy_from_slice(&frame[26..30]);
        r[icmp] = 0;
        r[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
        let c = csum(&r[icmp..]);
        r[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
        out.extend(r);
        return Some(out);
    }
    None
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn a_real_ping_is_read_on_the_host_end_and_answered_through_it() {
    let m = TestNs::new("m");
    let c = TestNs::new("c");
    let v = make(&m);
    m.ip(&["link", "set", "ipvl0", "netns", &c.name]);
    c.ip(&["addr", "add", "192.0.2.2/24", "dev", "ipvl0"]);
    c.ip(&["link", "set", "ipvl0", "up"]);
    // Opened from this thread (another namespace): open_io enters the master's.
    let io = v.open_io().expect("packet socket on the host end");

    let mut ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.name,
            "ping",
            "-c",
            "1",
            "-W",
            "5",
            "192.0.2.1",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("ping");
    let mut buf = vec![0u8; HEADER_LEN + 65535];
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut arp, mut echo) = (0, 0);
    let status = loop {
        if let Some(st) = ping.try_wait().expect("waiting for ping") {
            break st;
        }
        let Some(n) = next_frame(&io, &mut buf, Instant::now() + Duration::from_millis(50)) else {
            assert!(Instant::now() < deadline, "no answer in time");
            continue;
        };
        let hdr = VnetHdr::parse(&buf[..n]);
        assert!(!hdr.is_gso());
        let frame = &buf[HEADER_LEN..n];
        assert_eq!(frame[6..12], SLAVE_MAC.0, "sent by the slave end");
        if let Some(reply) = answer(frame) {
            if frame[12..14] == [0x08, 0x06] {
                arp += 1;
            } else {
                echo += 1;
            }
            assert_eq!(io.send(&reply).expect("send"), reply.len());
        }
    };
    assert!(status.success(), "ping failed: arp {arp}, echo {echo}");
    assert!(arp >= 1 && echo == 1, "arp {arp}, echo {echo}");
    // What we wrote is not read back (PACKET_IGNORE_OUTGOING).
    while let Ok(n) = io.recv(&mut buf) {
        assert_ne!(buf[HEADER_LEN + 6..HEADER_LEN + 12], PEER_MAC.0, "{n}");
    }
}

#[test]
#[ignore = "needs root, creates namespaces and veth pairs"]
fn tcp_super_frames_pass_whole_both_ways() {
    let m = TestNs::new("m");
    let c = TestNs::new("c");
    let v = make(&m);
    m.ip(&["link", "set", "ipvl0", "netns", &c.name]);
    c.ip(&["addr", "add", "192.0.2.2/24", "dev", "ipvl0"]);
    c.ip(&["link", "set", "ipvl0", "up"]);
    // For this test only, the master's stack is the slave's TCP peer, through the host end.
    m.ip(&["addr", "add", "192.0.2.1/24", "dev", "ipvh3-1"]);
    let io = v.open_io().expect("packet socket on the host end");

    // 1. The slave's stack sends TSO super-frames: they arrive whole, with a GSO header.
    let listener = m.run(|| TcpListener::bind((HOST_IP, 0)).expect("listen"));
    let port = listener.local_addr().expect("port").port();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        io::copy(&mut s, &mut io::sink()).expect("read all")
    });
    c.run(|| {
        let mut s = TcpStream::connect(SocketAddr::from((HOST_IP, port))).expect("connect");
        io::Write::write_all(&mut s, &vec![7u8; 1 << 20]).expect("write");
    });
    assert_eq!(reader.join().expect("reader"), 1 << 20);
    let mut buf = vec![0u8; HEADER_LEN + 65535];
    let mut biggest = (0, VnetHdr::default());
    while let Ok(n) = io.recv(&mut buf) {
        if n > biggest.0 {
            biggest = (n, VnetHdr::parse(&buf[..n]));
        }
    }
    let (n, hdr) = biggest;
    assert!(n > HEADER_LEN + 1400 + 54, "largest frame {n}");
    assert!(hdr.is_gso(), "{hdr:?}");
    assert_eq!(hdr.gso_type & 0x7f, 1, "VIRTIO_NET_HDR_GSO_TCPV4: {hdr:?}");

    // 2. A super-frame written on the host end reaches the slave end whole.
    let tap = c.run(|| PacketSocket::open(v_slave_index(&c)).expect("socket on the slave end"));
    let payload = 8000;
    let frame = tcp_super_frame(payload);
    assert_eq!(io.send(&frame).expect("send"), frame.len());
    let deadline = Instant::now() + Duration::from_secs(5);
    let got = loop {
        match tap.recv(&mut buf) {
            Ok((n, _)) if n == frame.len() => break Some(n),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("recv on the slave end: {e}"),
        }
    };
    let n = got.expect("the super-frame at the slave end");
    let hdr = VnetHdr::parse(&buf[..n]);
    assert!(hdr.is_gso(), "{hdr:?}");
    assert_eq!(hdr.gso_size, 1400);
    assert_eq!(buf[HEADER_LEN..n], frame[HEADER_LEN..]);
}

fn v_slave_index(c: &TestNs) -> u32 {
    c.link("ipvl0").expect("the slave end")["ifindex"]
        .as_u64()
        .expect("an index") as u32
}

/// A vnet header + an IPv4 TCP GSO frame of `payload` bytes from `HOST_IP` to `SLAVE_IP`
/// (segments of 1400 bytes, checksum left to be finished: the pseudo-header sum in place).
fn tcp_super_frame(payload: usize) -> Vec<u8> {
    let total = 20 + 20 + payload;
    let mut f = Vec::with_capacity(HEADER_LEN + 14 + total);
    // virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, csum_offset.
    f.push(1);
    f.push(1);
    for v in [54u16, 1400, 34, 16] {
        f.extend(v.to_le_bytes());
    }
    f.extend(SLAVE_MAC.0);
    f.extend(PEER_MAC.0);
    f.extend([0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip.extend(HOST_IP.octets());
    ip.extend(SLAVE_IP.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend(&ip);
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&5001u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5002u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&1000u16.to_be_bytes());
    // The pseudo-header sum, not complemented, as a partial checksum carries it.
    let mut pseudo = Vec::new();
    pseudo.extend(HOST_IP.octets());
    pseudo.extend(SLAVE_IP.octets());
    pseudo.extend([0, 6]);
    pseudo.extend(((20 + payload) as u16).to_be_bytes());
    let partial = !csum(&pseudo);
    tcp[16..18].copy_from_slice(&partial.to_be_bytes());
    f.extend(tcp);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}
