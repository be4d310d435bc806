//! ipvtap end to end: a TAP for a virtual machine monitor on master m0, beside an ordinary
//! namespace slave. Without QEMU, the test opens the TAP as a VMM would (`TUNSETIFF` by name
//! from the master's namespace) and writes and reads frames through it; with QEMU
//! (`scripts/vm/build-guest`), a real guest boots on it and pings and is pinged, IPv4 and
//! IPv6. Both run on whatever data path the fixture's daemon uses (`IPVLAN_TEST_DATAPATH`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{text, wait, Fx};

const MASTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const EXT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const GUEST4: [u8; 4] = [192, 0, 2, 50];

/// The fixture with `vmtap0` (an ipvtap on m0, `args` after `type ipvtap`) whose guest has
/// 192.0.2.50 and 2001:db8:1::50, and `ipvl0` in ns0 (192.0.2.11, 2001:db8:1::11).
fn setup(args: &str) -> Fx {
    let mut fx = Fx::new();
    fx.slave("ipvl0", args, "ns0", "192.0.2.11/24", "2001:db8:1::11/64");
    let mut words = vec![
        "link", "add", "link", "m0", "name", "vmtap0", "type", "ipvtap",
    ];
    words.extend(args.split_whitespace());
    fx.cli_ok(&words);
    fx.cli_ok(&["address", "add", "192.0.2.50/24", "dev", "vmtap0"]);
    fx.cli_ok(&["addr", "add", "2001:db8:1::50/64", "dev", "vmtap0"]);
    fx
}

/// A TAP opened as a VMM opens it: `TUNSETIFF` on `/dev/net/tun` with the name, single queue,
/// no packet information, from a thread inside the namespace `ns` (`/run/netns/NS`).
struct VmmTap(File);

impl VmmTap {
    fn open(ns: &str, name: &str) -> std::io::Result<VmmTap> {
        let ns = PathBuf::from("/run/netns").join(ns);
        let name = name.to_owned();
        std::thread::spawn(move || {
            let nsf = File::open(&ns)?;
            // SAFETY: setns on this (short-lived) thread with a namespace descriptor we own.
            if unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/net/tun")?;
            let mut ifr = [0u8; 40];
            ifr[..name.len()].copy_from_slice(name.as_bytes());
            let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes), which `ifr` is.
            if unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(VmmTap(f))
        })
        .join()
        .expect("the opening thread")
    }

    fn send(&mut self, frame: &[u8]) {
        self.0.write_all(frame).expect("writing to the TAP");
    }

    /// The first frame read within `limit` for which `pick` is true.
    fn recv_until(&mut self, limit: Duration, pick: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < end {
            match self.0.read(&mut buf) {
                Ok(n) if pick(&buf[..n]) => return Some(buf[..n].to_vec()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("reading the TAP: {e}"),
            }
        }
        None
    }
}

/// An ARP packet (`op` 1 request, 2 reply) in an Ethernet frame.
fn arp(
    op: u8,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    sha: [u8; 6],
    spa: [u8; 4],
    tha: [u8; 6],
    tpa: [u8; 4],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(dst_mac);
    f.extend(src_mac);
    f.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend(sha);
    f.extend(spa);
    f.extend(tha);
    f.extend(tpa);
    f.resize(60, 0);
    f
}

fn is_arp_reply_from(f: &[u8], spa: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[21] == 2 && f[28..32] == spa
}

fn is_arp_request_for(f: &[u8], tpa: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[21] == 1 && f[38..42] == tpa
}

fn is_echo_request_to(f: &[u8], dst: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[30..34] == dst && f[34] == 8
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_frames_through_a_vmm_descriptor() {
    require_env!();
    let fx = setup("mode l2");
    let host = fx.ns("host");
    // Single queue (a VMM opens it without IFF_MULTI_QUEUE), in the master's namespace.
    let flags = fx.sh("host", "cat /sys/class/net/vmtap0/tun_flags");
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 0x0100, 0, "IFF_MULTI_QUEUE set: {flags:#x}");
    let mut tap = VmmTap::open(&host, "vmtap0").expect("opening vmtap0 as a VMM");
    // Guest → wire and back: ARP for the external host, answered to the guest.
    let who_has = |tpa| arp(1, MASTER_MAC, [0xff; 6], MASTER_MAC, GUEST4, [0; 6], tpa);
    let mut answered = None;
    for _ in 0..5 {
        tap.send(&who_has([192, 0, 2, 254]));
        answered = tap.recv_until(Duration::from_secs(1), |f| {
            is_arp_reply_from(f, [192, 0, 2, 254])
        });
        if answered.is_some() {
            break;
        }
    }
    let reply = answered.unwrap_or_else(|| panic!("no ARP reply from ext\n{}", fx.daemon_log()));
    assert_eq!(reply[6..12], EXT_MAC, "from e0");
    assert_eq!(
        reply[0..6],
        MASTER_MAC,
        "to the guest, which has the master's MAC"
    );
    // Guest → namespace slave: switched inside the port.
    tap.send(&who_has([192, 0, 2, 11]));
    let r = tap.recv_until(Duration::from_secs(3), |f| {
        is_arp_reply_from(f, [192, 0, 2, 11])
    });
    assert!(r.is_some(), "no ARP reply from ipvl0\n{}", fx.daemon_log());
    // Wire → guest: ext pings the guest's address; its ARP request reaches the TAP, the test
    // answers as the guest, and the echo request follows to the guest's address.
    let ping = fx.python_bg(
        "ext",
        "import subprocess;print(subprocess.run(['ping','-c','3','-i','0.5','-W','1','192.0.2.50']).returncode)",
        &[],
    );
    // (ext may know the guest already from its ARP requests: then the echo request comes
    // first, and the ARP request only to confirm.)
    let mut echo = None;
    let end = Instant::now() + Duration::from_secs(8);
    while echo.is_none() && Instant::now() < end {
        let f = tap.recv_until(Duration::from_millis(200), |f| {
            is_arp_request_for(f, GUEST4) || is_echo_request_to(f, GUEST4)
        });
        match f {
            Some(f) if is_arp_request_for(&f, GUEST4) => tap.send(&arp(
                2,
                MASTER_MAC,
                EXT_MAC,
                MASTER_MAC,
                GUEST4,
                EXT_MAC,
                [192, 0, 2, 254],
            )),
            Some(f) => echo = Some(f),
            None => {}
        }
    }
    assert!(
        echo.is_some(),
        "ext's echo request never reached the TAP\n{}",
        fx.cli_ok(&["-s", "link", "show"])
    );
    drop(ping.output());
    // Counted as any slave's.
    let l = fx.link("vmtap0").unwrap();
    assert_eq!(l["backend"], "ipvtap", "{l}");
    assert!(l["stats"]["tx_packets"].as_u64().unwrap() >= 2, "{l}");
    assert!(l["stats"]["rx_packets"].as_u64().unwrap() >= 2, "{l}");
    // The master namespace's own stack never answers the guest for its addresses.
    tap.send(&who_has([192, 0, 2, 1]));
    let r = tap.recv_until(Duration::from_secs(1), |f| {
        is_arp_reply_from(f, [192, 0, 2, 1])
    });
    assert!(
        r.is_none(),
        "the master namespace answered the guest's ARP for 192.0.2.1"
    );
    // The daemon down: the eBPF programs go on switching, the userspace workers are gone;
    // started again, it serves the TAP the VMM still holds.
    let bpf = l["datapath"].as_str().unwrap().starts_with("bpf");
    let mut fx = fx;
    fx.stop_daemon(false);
    let ext_answers = |tap: &mut VmmTap| {
        tap.send(&who_has([192, 0, 2, 254]));
        tap.recv_until(Duration::from_secs(2), |f| {
            is_arp_reply_from(f, [192, 0, 2, 254])
        })
        .is_some()
    };
    assert_eq!(ext_answers(&mut tap), bpf, "daemon down, eBPF path: {bpf}");
    fx.start_daemon();
    assert!(
        wait(Duration::from_secs(10), || ext_answers(&mut tap)),
        "the restarted daemon does not serve the TAP\n{}",
        fx.daemon_log()
    );
    // Deleted while the VMM holds it.
    fx.cli_ok(&["link", "del", "vmtap0"]);
    assert!(!fx.try_sh("host", "ip link show vmtap0").status.success());
    drop(tap);
}

/// The Internet checksum (RFC 1071) of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request from the guest (`src`) to `dst`, in a frame to the master's MAC.
fn echo_request(src: [u8; 4], dst: [u8; 4], seq: u16) -> Vec<u8> {
    echo_request_ttl(src, dst, seq, 64)
}

/// [`echo_request`] with IPv4 TTL `ttl`.
fn echo_request_ttl(src: [u8; 4], dst: [u8; 4], seq: u16, ttl: u8) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend(seq.to_be_bytes());
    icmp.extend(b"ipvtap-l3-egress");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = u16::try_from(20 + icmp.len()).unwrap();
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(src);
    ip.extend(dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend(MASTER_MAC);
    f.extend(MASTER_MAC);
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f.extend(icmp);
    f
}

fn is_echo_reply(f: &[u8], src: [u8; 4], dst: [u8; 4]) -> bool {
    f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[26..30] == src && f[30..34] == dst && f[34] == 0
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_l3_egress_is_routed_and_answered() {
    require_env!();
    // As the l3 tests of e2e_modes: the slaves in 198.51.100.0/24, routed by the master's
    // namespace (192.0.2.1), which ext knows as their gateway.
    let mut fx = Fx::new();
    fx.slave("ipvl0", "mode l3", "ns0", "198.51.100.11/24", "");
    fx.sh("ns0", "ip route add default dev ipvl0");
    fx.sh("ext", "ip route add 198.51.100.0/24 via 192.0.2.1");
    fx.cli_ok(&[
        "link", "add", "link", "m0", "vmtap0", "type", "ipvtap", "mode", "l3",
    ]);
    fx.cli_ok(&["address", "add", "198.51.100.50/24", "dev", "vmtap0"]);
    let guest = [198, 51, 100, 50];
    let mut tap = VmmTap::open(&fx.ns("host"), "vmtap0").expect("opening vmtap0 as a VMM");
    // l3: the guest speaks IP only, to the master's MAC (a NOARP guest's neighbours); its
    // packets for the outside are routed by the master's namespace, the replies come back.
    for (dst, what) in [([192, 0, 2, 254], "ext"), ([198, 51, 100, 11], "ipvl0")] {
        let mut got = None;
        for seq in 0..5 {
            tap.send(&echo_request(guest, dst, seq));
            got = tap.recv_until(Duration::from_secs(1), |f| is_echo_reply(f, dst, guest));
            if got.is_some() {
                break;
            }
        }
        assert!(
            got.is_some(),
            "no echo reply from {what}\n{}\n{}",
            fx.cli_ok(&["-s", "link", "show"]),
            fx.daemon_log()
        );
    }
    // A TTL of 1 leaves the master as the kernel's l3 egress (a local output) sends it: the
    // master namespace's forwarding takes no hop off the guest's packet.
    let mut got = None;
    for seq in 10..15 {
        tap.send(&echo_request_ttl(guest, [192, 0, 2, 254], seq, 1));
        got = tap.recv_until(Duration::from_secs(1), |f| {
            is_echo_reply(f, [192, 0, 2, 254], guest)
        });
        if got.is_some() {
            break;
        }
    }
    assert!(
        got.is_some(),
        "a TTL-1 packet of the guest did not reach ext"
    );
    // A broadcast (an ARP request) is dropped in l3 as from any slave (R-TX-L3-3).
    tap.send(&arp(
        1,
        MASTER_MAC,
        [0xff; 6],
        MASTER_MAC,
        GUEST4,
        [0; 6],
        [192, 0, 2, 254],
    ));
    assert!(wait(Duration::from_secs(3), || {
        fx.link("vmtap0").unwrap()["stats"]["drops"]
            .to_string()
            .contains("l3_multicast")
    }));
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_addresses_show_conflicts_restart_and_delete() {
    require_env!();
    let mut fx = setup("mode l2");
    let show = fx.cli_ok(&["-j", "link", "show", "dev", "vmtap0"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let s = v["links"][0].clone();
    let s = if s.is_null() { v[0].clone() } else { s };
    assert!(show.contains("ipvtap"), "{show}");
    // As the kernel's ipvtap shows in `ip -d link` and its JSON.
    let d = fx.cli_ok(&["-d", "link", "show", "dev", "vmtap0"]);
    assert!(d.contains("ipvtap  mode l2 bridge"), "{d}");
    let d = fx.cli_ok(&["-d", "-j", "link", "show", "dev", "vmtap0"]);
    assert!(d.contains("\"info_kind\":\"ipvtap\""), "{d}");
    assert!(
        show.contains("192.0.2.50") && show.contains("2001:db8:1::50"),
        "{show}"
    );
    drop(s);
    // A duplicate: the kernel's words, exit 2.
    let o = fx.cli(&["address", "add", "192.0.2.11/24", "dev", "vmtap0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Address already assigned to an ipvlan device."),
        "{}",
        text(&o)
    );
    let o = fx.cli(&["a", "add", "192.0.2.50", "dev", "vmtap0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A namespace slave's addresses are its namespace's.
    let o = fx.cli(&["address", "add", "192.0.2.77/24", "dev", "ipvl0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("use `ip address add"), "{}", text(&o));
    // Unknown device.
    let o = fx.cli(&["address", "add", "192.0.2.77", "dev", "nosuch0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Cannot find device \"nosuch0\""),
        "{}",
        text(&o)
    );
    // Not given: cannot be deleted.
    let o = fx.cli(&["address", "del", "192.0.2.99", "dev", "vmtap0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A namespace slave cannot take a guest's address: a conflict, as between namespaces.
    fx.sh("ns0", "ip addr add 192.0.2.50/32 dev ipvl0");
    assert!(wait(Duration::from_secs(5), || {
        fx.link("ipvl0").unwrap()["conflicts"]
            .as_array()
            .unwrap()
            .len()
            == 1
    }));
    // Restart: the ipvtap and its addresses are found again.
    fx.stop_daemon(false);
    fx.start_daemon();
    let l = fx.link("vmtap0").expect("vmtap0 restored");
    // The TAP's own MAC is never the master's (the guest's): a frame of the guest for the
    // master would otherwise be the master namespace's own on the TAP.
    let tap_mac = fx.sh("host", "cat /sys/class/net/vmtap0/address");
    assert_ne!(tap_mac.trim(), "02:00:00:00:00:01");
    assert_eq!(l["backend"], "ipvtap", "{l}");
    let addrs = l["addresses"].to_string();
    assert!(
        addrs.contains("192.0.2.50") && addrs.contains("2001:db8:1::50"),
        "{l}"
    );
    // Deleting an address passes it on to the slave that claimed it next.
    fx.cli_ok(&["address", "del", "192.0.2.50/24", "dev", "vmtap0"]);
    fx.wait_learned("ipvl0", "192.0.2.50");
    // link del deletes the TAP.
    fx.cli_ok(&["link", "del", "vmtap0"]);
    let o = fx.try_sh("host", "ip link show vmtap0");
    assert!(!o.status.success(), "vmtap0 still exists");
    assert!(fx.link("vmtap0").is_none());
}

/// Opens `/dev/net/tun` as root, then becomes `nobody` (65534) and asks for the TAP named by
/// its argument (`TUNSETIFF`, `IFF_TAP | IFF_NO_PI`): prints `opened` or `refused ERRNO`.
const OPEN_AS_NOBODY: &str = r#"
import fcntl, os, struct, sys
f = os.open('/dev/net/tun', os.O_RDWR)
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
try:
    fcntl.ioctl(f, 0x400454ca, struct.pack('16sH', sys.argv[1].encode(), 0x1002))
    print('opened')
except OSError as e:
    print('refused', e.errno)
"#;

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_user_and_group_let_an_unprivileged_vmm_open_it() {
    require_env!();
    let fx = Fx::new();
    let add = |name: &str, owner: &[&str]| {
        let mut w = vec!["link", "add", "link", "m0", "name", name, "type", "ipvtap"];
        w.extend(owner);
        fx.cli_ok(&w);
    };
    add("vmtap1", &["user", "65534"]);
    add("vmtap2", &["group", "65534"]);
    add("vmtap3", &[]);
    assert_eq!(fx.python("host", OPEN_AS_NOBODY, &["vmtap1"]), "opened");
    assert_eq!(fx.python("host", OPEN_AS_NOBODY, &["vmtap2"]), "opened");
    // Without them the TAP is root's: only root or CAP_NET_ADMIN opens it (EPERM), however
    // /dev/net/tun's mode lets others open the device file.
    assert_eq!(fx.python("host", OPEN_AS_NOBODY, &["vmtap3"]), "refused 1");
    let d = fx.sh("host", "ip -d link show vmtap3");
    assert!(d.contains("user root") || d.contains("user 0"), "{d}");
    // As the kernel keeps them: `ip -d link` shows the owner.
    let d = fx.sh("host", "ip -d link show vmtap1");
    assert!(d.contains("user nobody") || d.contains("user 65534"), "{d}");
}

// ---- QEMU -----------------------------------------------------------------------------------

/// QEMU, killed by PID when dropped (the test ends or fails), and its serial console.
struct Qemu {
    child: Child,
    console: PathBuf,
}

impl Qemu {
    /// The serial console, then whatever QEMU wrote on its stderr.
    fn console(&self) -> String {
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let err = read(&self.console.with_file_name("qemu.err"));
        let console = read(&self.console);
        if err.is_empty() {
            console
        } else {
            format!("{console}\n--- qemu stderr ---\n{err}")
        }
    }

    /// Waits (at most `limit`) until the console has the line `line`.
    fn wait_line(&self, line: &str, limit: Duration) -> bool {
        wait(limit, || self.console().lines().any(|l| l.trim() == line))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // SAFETY: signalling the child we spawned, by its PID.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The guest's kernel and initramfs (`scripts/vm/build-guest`, built or found in its cache).
fn guest() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let t = Instant::now();
    let o = Command::new(repo.join("scripts/vm/build-guest"))
        .output()
        .expect("running scripts/vm/build-guest");
    assert!(o.status.success(), "scripts/vm/build-guest: {}", text(&o));
    eprintln!("guest ready in {:.1}s", t.elapsed().as_secs_f64());
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// Boots the guest (`dir`: its kernel and initramfs) on `vmtap0` in the fixture's `host`
/// namespace, its NIC carrying `mac`, with `cmdline` for its init (`scripts/vm/guest-init`).
fn boot(fx: &Fx, dir: &Path, mac: &str, cmdline: &str) -> Qemu {
    let console = fx.dir().join("console.log");
    let child = Command::new("ip")
        .args(["netns", "exec", &fx.ns("host"), "qemu-system-x86_64"])
        .args(["-accel", "tcg", "-cpu", "max", "-m", "256", "-smp", "1"])
        .args(["-display", "none", "-no-reboot", "-nodefaults"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(dir.join("initrd.cpio"))
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {cmdline}"))
        .args(["-netdev", "tap,id=n0,ifname=vmtap0,script=no,downscript=no"])
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(fx.dir().join("qemu.err")).expect("qemu.err"))
        .spawn()
        .expect("starting qemu-system-x86_64");
    Qemu { child, console }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, QEMU (qemu-system-x86), busybox-static, cpio, apt-get download"]
fn ipvtap_guest_under_qemu_pings_and_is_pinged() {
    require_env!();
    if let Some(why) = ipvlan_testkit::missing(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("cpio", "cpio"),
        ("busybox", "busybox-static"),
    ]) {
        panic!("this test boots a guest under QEMU and cannot run here: {why}");
    }
    let t0 = Instant::now();
    let dir = guest();
    let fx = setup("mode l2");
    let targets = "192.0.2.254,192.0.2.11,2001:db8:1::fe,2001:db8:1::11";
    let cmdline = format!(
        "ipvt.ip4=192.0.2.50/24 ipvt.ip6=2001:db8:1::50/64 ipvt.ping={targets} ipvt.echos=6 \
         ipvt.badmac=02:00:00:00:00:99 ipvt.badping=192.0.2.254"
    );
    let vm = boot(&fx, &dir, "02:00:00:00:00:01", &cmdline);
    let fail = |what: &str| -> ! {
        panic!(
            "{what}\n--- guest console ---\n{}\n--- vmtap0 ---\n{:?}\n--- daemon log ---\n{}",
            vm.console(),
            fx.link("vmtap0"),
            fx.daemon_log()
        )
    };
    if !vm.wait_line("IPVT ready", Duration::from_secs(120)) {
        fail("the guest did not come up within 120 s");
    }
    let booted = t0.elapsed();
    // Each of the guest's pings, within 20 s each.
    for t in targets.split(',') {
        let want = format!("IPVT ping {t} ok");
        let done = format!("IPVT ping {t} fail");
        if !vm.wait_line(&want, Duration::from_secs(45)) || vm.console().contains(&done) {
            fail(&format!("the guest could not ping {t}"));
        }
    }
    // And the guest is pinged: from the external host and from the namespace slave.
    for (ns, dst) in [
        ("ext", "192.0.2.50"),
        ("ns0", "192.0.2.50"),
        ("ext", "2001:db8:1::50"),
        ("ns0", "2001:db8:1::50"),
    ] {
        let ok = (0..3).any(|_| fx.ping(ns, dst, 3));
        if !ok {
            fail(&format!("{ns} could not ping the guest at {dst}"));
        }
    }
    if !vm.wait_line("IPVT done", Duration::from_secs(120)) {
        fail("the guest did not finish");
    }
    let console = vm.console();
    // The guest with a MAC other than the master's is cut off, and the drops say why.
    if !console.contains("IPVT badping 192.0.2.254 fail") {
        fail("a guest with a MAC other than the master's still reached ext");
    }
    let l = fx.link("vmtap0").unwrap();
    let drops = l["stats"]["drops"].to_string();
    if !drops.contains("foreign_source_mac") {
        fail(&format!("no foreign_source_mac drops counted: {drops}"));
    }
    // And the daemon said once how to fix it.
    let fix = "give the guest's NIC the master's MAC (QEMU -device virtio-net-pci,...,mac=02:00:00:00:00:01";
    if !wait(Duration::from_secs(5), || fx.daemon_log().contains(fix)) {
        fail("the daemon did not warn about the guest's MAC");
    }
    assert_eq!(fx.daemon_log().matches(fix).count(), 1, "warned once");
    eprintln!(
        "datapath {:?}: guest up after {:.1}s, test {:.1}s",
        l["datapath"],
        booted.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// `ip link del vmtap0` done by hand (not through `ipvlan`): the daemon notices, forgets the
/// ipvtap and lets go of its addresses, which a namespace slave that claimed one gets.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_deleted_by_hand_lets_go_of_its_addresses() {
    require_env!();
    let fx = setup("mode l2");
    fx.sh("ns0", "ip addr add 192.0.2.50/32 dev ipvl0");
    assert!(wait(Duration::from_secs(5), || {
        fx.link("ipvl0").unwrap()["conflicts"]
            .to_string()
            .contains("192.0.2.50")
    }));
    fx.sh("host", "ip link del vmtap0");
    assert!(
        wait(Duration::from_secs(5), || fx.link("vmtap0").is_none()),
        "{:?}\n{}",
        fx.link("vmtap0"),
        fx.daemon_log()
    );
    fx.wait_learned("ipvl0", "192.0.2.50");
    // And the name can be used again.
    fx.cli_ok(&[
        "link", "add", "link", "m0", "name", "vmtap0", "type", "ipvtap", "mode", "l2",
    ]);
    fx.cli_ok(&["address", "add", "2001:db8:1::50/64", "dev", "vmtap0"]);
}

/// Bad input to `ipvlan address` and to `link set` on an ipvtap: refused with a non-zero exit
/// and words naming the problem; nothing changes.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_bad_input_is_refused() {
    require_env!();
    let fx = setup("mode l2");
    for args in [
        &["address", "add", "300.1.1.1/24", "dev", "vmtap0"][..],
        &["address", "add", "2001:db8::1/200", "dev", "vmtap0"],
        &["address", "add", "192.0.2.60/33", "dev", "vmtap0"],
        &["address", "add", "192.0.2.60/24"],
        &["address", "add", "dev", "vmtap0"],
        &["address", "add", "192.0.2.60/24", "dev", "m0"],
        &["address", "add", "0.0.0.0", "dev", "vmtap0"],
        &["address", "add", "255.255.255.255", "dev", "vmtap0"],
        &["address", "add", "224.0.0.1", "dev", "vmtap0"],
        &["address", "add", "ff02::1", "dev", "vmtap0"],
        &["address", "add", "::", "dev", "vmtap0"],
    ] {
        let o = fx.cli(args);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(!text(&o).trim().is_empty(), "{args:?}: no message");
        assert!(!text(&o).contains("panicked"), "{args:?}: {}", text(&o));
    }
    let l = fx.link("vmtap0").unwrap();
    let addrs = l["addresses"].as_array().unwrap().len();
    assert_eq!(addrs, 2, "{l}");
    // The MTU is the device's (`ip link set`, as for any slave; `ipvlan link set` refuses
    // it); the daemon follows it. spoofchk is `ipvlan link set`'s.
    let o = fx.cli(&["link", "set", "dev", "vmtap0", "mtu", "1400"]);
    assert!(text(&o).contains("ip link set"), "{}", text(&o));
    fx.sh("host", "ip link set dev vmtap0 mtu 1400");
    assert!(
        wait(Duration::from_secs(5), || fx.link("vmtap0").unwrap()["mtu"]
            == 1400),
        "{:?}",
        fx.link("vmtap0")
    );
    fx.cli_ok(&["link", "set", "dev", "vmtap0", "spoofchk", "on"]);
    // 4294967295 is (uid_t)-1, "no owner" to the TUN driver: with it, anyone could open the
    // TAP (`tun_not_capable`), what the default owner root is there to prevent. The kernel
    // refuses it (EINVAL); no half-made TAP is left.
    for who in ["user", "group"] {
        let o = fx.cli(&[
            "link",
            "add",
            "link",
            "m0",
            "name",
            "vmtap1",
            "type",
            "ipvtap",
            who,
            "4294967295",
        ]);
        assert!(!o.status.success(), "{who}: {}", text(&o));
        assert!(text(&o).contains("Invalid argument"), "{who}: {}", text(&o));
        assert!(!fx.try_sh("host", "ip link show vmtap1").status.success());
    }
    fx.cli_ok(&[
        "link", "set", "dev", "vmtap0", "type", "ipvtap", "mode", "l3",
    ]);
    assert_eq!(
        fx.link("ipvl0").unwrap()["mode"],
        "l3",
        "{:?}",
        fx.link("ipvl0")
    );
}

/// `hostreach on` with an ipvtap: the guest reaches the master's namespace (its ARP for the
/// master's address is answered, its echo request too), and the master's namespace reaches the
/// guest (a `proto 73` route for the guest's address, the ARP request and echo request reach the
/// TAP).
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_with_hostreach_reaches_the_host_both_ways() {
    require_env!();
    let fx = setup("mode l2");
    fx.cli_ok(&["link", "set", "dev", "m0", "hostreach", "on"]);
    assert!(
        wait(Duration::from_secs(5), || fx
            .sh("host", "ip route show proto 73")
            .contains("192.0.2.50")),
        "no route for the guest\n{}",
        fx.sh("host", "ip route show proto 73")
    );
    // The master's address is the host device's: refused for the guest, saying whose it is.
    let o = fx.cli(&["address", "add", "192.0.2.1/24", "dev", "vmtap0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("192.0.2.1 is the master's, which hostreach device"),
        "{}",
        text(&o)
    );
    let host = fx.ns("host");
    let mut tap = VmmTap::open(&host, "vmtap0").expect("opening vmtap0 as a VMM");
    // Guest → host.
    let who_has = arp(
        1,
        MASTER_MAC,
        [0xff; 6],
        MASTER_MAC,
        GUEST4,
        [0; 6],
        [192, 0, 2, 1],
    );
    let mut answered = None;
    for _ in 0..5 {
        tap.send(&who_has);
        answered = tap.recv_until(Duration::from_secs(1), |f| {
            is_arp_reply_from(f, [192, 0, 2, 1])
        });
        if answered.is_some() {
            break;
        }
    }
    assert!(
        answered.is_some(),
        "the host does not answer the guest's ARP\n{}",
        fx.daemon_log()
    );
    tap.send(&echo_request(GUEST4, [192, 0, 2, 1], 1));
    let r = tap.recv_until(Duration::from_secs(3), |f| {
        is_echo_reply(f, [192, 0, 2, 1], GUEST4)
    });
    assert!(
        r.is_some(),
        "no echo reply from the host\n{}",
        fx.daemon_log()
    );
    // Host → guest.
    let ping = fx.python_bg(
        "host",
        "import subprocess;print(subprocess.run(['ping','-c','3','-i','0.5','-W','1','192.0.2.50']).returncode)",
        &[],
    );
    let mut echo = None;
    let end = Instant::now() + Duration::from_secs(8);
    while echo.is_none() && Instant::now() < end {
        let f = tap.recv_until(Duration::from_millis(200), |f| {
            is_arp_request_for(f, GUEST4) || is_echo_request_to(f, GUEST4)
        });
        match f {
            Some(f) if is_arp_request_for(&f, GUEST4) => {
                let (sha, spa) = (f[22..28].try_into().unwrap(), f[28..32].try_into().unwrap());
                tap.send(&arp(2, MASTER_MAC, sha, MASTER_MAC, GUEST4, sha, spa));
            }
            Some(f) => echo = Some(f),
            None => {}
        }
    }
    drop(ping.output());
    assert!(
        echo.is_some(),
        "the host's echo request never reached the TAP\n{}\n{}",
        fx.cli_ok(&["-s", "-d", "link", "show"]),
        fx.daemon_log()
    );
}

/// The state file lost (deleted while the daemon was down): every device is found again by its
/// alias; the ipvtap stays an ipvtap and the log says its guest's addresses must be given
/// again (they were in the file only); the `hostreach` device is the port's host device again
/// (not a user slave), so host↔slave works and `hostreach off` removes it and its routes.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn state_file_lost_with_ipvtap_and_hostreach() {
    require_env!();
    let mut fx = setup("mode l2");
    fx.cli_ok(&["link", "set", "dev", "m0", "hostreach", "on"]);
    assert!(wait(Duration::from_secs(5), || fx
        .sh("host", "ip route show proto 73")
        .contains("192.0.2.11")));
    fx.stop_daemon(false);
    std::fs::remove_file(fx.state_dir.join("state.json")).unwrap();
    fx.start_daemon();
    let names: Vec<String> = fx.links().iter().map(|l| l["name"].to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let l = fx.link("vmtap0").unwrap();
    assert_eq!(l["backend"], "ipvtap", "{l}");
    assert!(
        fx.daemon_log().contains("ipvlan address add"),
        "nothing says the guest's addresses are lost\n{}",
        fx.daemon_log()
    );
    assert_eq!(
        fx.link("ipvl0").unwrap()["hostreach"],
        true,
        "{:?}",
        fx.links()
    );
    // (the port is l3 now, its mode not in the file either)
    fx.cli_ok(&[
        "link", "set", "dev", "ipvl0", "type", "ipvlan", "mode", "l2",
    ]);
    assert!(
        wait(Duration::from_secs(5), || fx.ping("host", "192.0.2.11", 1)),
        "{}",
        fx.daemon_log()
    );
    fx.cli_ok(&["link", "set", "dev", "m0", "hostreach", "off"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fx.sh("host", "ip route show proto 73").trim(), "");
    assert!(!fx.sh("host", "ip -o link show").contains(": ipvlh"));
}

/// A VMM that closes the TAP and opens it again (a guest rebooted, the VMM restarted): the
/// ipvtap keeps its addresses and the guest is served again, both ways.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_reopened_by_the_vmm_is_served_again() {
    require_env!();
    let fx = setup("mode l2");
    let host = fx.ns("host");
    let who_has = arp(
        1,
        MASTER_MAC,
        [0xff; 6],
        MASTER_MAC,
        GUEST4,
        [0; 6],
        [192, 0, 2, 11],
    );
    for round in 0..3 {
        let mut tap = VmmTap::open(&host, "vmtap0").expect("opening vmtap0 as a VMM");
        let mut answered = false;
        for _ in 0..5 {
            tap.send(&who_has);
            if tap
                .recv_until(Duration::from_secs(1), |f| {
                    is_arp_reply_from(f, [192, 0, 2, 11])
                })
                .is_some()
            {
                answered = true;
                break;
            }
        }
        assert!(
            answered,
            "round {round}: no ARP reply from ipvl0\n{}\n{}",
            fx.cli_ok(&["-s", "link", "show"]),
            fx.daemon_log()
        );
        drop(tap);
        std::thread::sleep(Duration::from_millis(300));
    }
    let l = fx.link("vmtap0").unwrap();
    assert_eq!(l["addresses"].as_array().unwrap().len(), 2, "{l}");
}

/// The ipvtap renamed by hand (`ip link set vmtap0 name …`): still served under its new name,
/// and `ipvlan link del vmtap0` (the name it was made with, as for any slave) deletes the
/// TAP, not leaving it behind.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_renamed_by_hand_is_still_deleted() {
    require_env!();
    let fx = setup("mode l2");
    fx.sh("host", "ip link set dev vmtap0 name vmguest0");
    std::thread::sleep(Duration::from_millis(1000));
    let l = fx.link("vmtap0").expect("still a slave");
    assert_eq!(l["addresses"].as_array().unwrap().len(), 2, "{l}");
    let host = fx.ns("host");
    let mut tap = VmmTap::open(&host, "vmguest0").expect("opening vmguest0 as a VMM");
    let who_has = arp(
        1,
        MASTER_MAC,
        [0xff; 6],
        MASTER_MAC,
        GUEST4,
        [0; 6],
        [192, 0, 2, 11],
    );
    let mut answered = false;
    for _ in 0..5 {
        tap.send(&who_has);
        if tap
            .recv_until(Duration::from_secs(1), |f| {
                is_arp_reply_from(f, [192, 0, 2, 11])
            })
            .is_some()
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "renamed, not served\n{}", fx.daemon_log());
    drop(tap);
    fx.cli_ok(&["link", "del", "vmtap0"]);
    assert!(
        !fx.try_sh("host", "ip link show vmguest0").status.success(),
        "the renamed TAP was left behind"
    );
}

/// The ipvtap moved to another namespace by hand (`ip link set vmtap0 netns …`): it cannot be
/// served there (everything of an ipvtap is its master namespace's), so it leaves its port,
/// freeing its addresses, and the log says so without calling it deleted.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn ipvtap_moved_to_another_namespace_leaves_its_port() {
    require_env!();
    let mut fx = setup("mode l2");
    fx.add_ns("vm");
    let vm = fx.ns("vm");
    fx.sh("host", &format!("ip link set dev vmtap0 netns {vm}"));
    assert!(
        wait(Duration::from_secs(5), || fx.link("vmtap0").is_none()),
        "{:?}",
        fx.link("vmtap0")
    );
    assert!(
        fx.daemon_log().contains("moved to another namespace"),
        "{}",
        fx.daemon_log()
    );
    fx.sh("ns0", "ip addr add 192.0.2.50/32 dev ipvl0");
    fx.wait_learned("ipvl0", "192.0.2.50");
    fx.sh("vm", "ip link del vmtap0");
}
