//! End to end in namespaces of its own: master m0 (a veth end in `h`) with its peer e0 in `x`
//! (the wire), two veth slaves s1/s2 in `n1`/`n2` with the master's MAC, host ends h1/h2 in `h`.
//! Everything is loaded, attached and filled through the public API, from inside `h`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use ipvlan_bpf::{ensure_bpffs, PortConfig, PortProgram, RouteMethod, SlaveEntry};
use ipvlan_core::{Flag, Mode};

const MAC: &str = "02:00:00:00:00:01";

struct Ns {
    tag: String,
    pin: PathBuf,
    /// The test's own bpffs mount (unmounted on drop).
    root: PathBuf,
}

impl Ns {
    fn name(&self, s: &str) -> String {
        format!("{}{s}", self.tag)
    }
    fn sh(&self, ns: &str, cmd: &str) -> (bool, String) {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name(ns), "sh", "-c", cmd])
            .output()
            .expect("ip netns exec");
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), text)
    }
    fn ok(&self, ns: &str, cmd: &str) -> String {
        let (ok, text) = self.sh(ns, cmd);
        assert!(ok, "{ns}: {cmd}: {text}");
        text
    }
    fn ping(&self, ns: &str, dst: &str) -> bool {
        self.sh(ns, &format!("ping -c 2 -i 0.2 -W 1 {dst}")).0
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        for n in ["h", "x", "1", "2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name(n)])
                .status();
        }
        for e in std::fs::read_dir(&self.pin).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        let _ = std::fs::remove_dir(&self.pin);
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
        let _ = std::fs::remove_dir(&self.root);
    }
}

fn ifindex(ns: &Ns, n: &str, dev: &str) -> u32 {
    ns.ok(n, &format!("cat /sys/class/net/{dev}/ifindex"))
        .trim()
        .parse()
        .expect("ifindex")
}

/// Runs `f` with the calling thread in namespace `path` (setns), then returns to the original.
fn in_netns<T>(path: &str, f: impl FnOnce() -> T) -> T {
    let me = std::fs::File::open("/proc/thread-self/ns/net").expect("own netns");
    let target = std::fs::File::open(path).expect("target netns");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects this thread only.
    let r = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0);
    let out = f();
    // SAFETY: as above, back to the original namespace.
    let r = unsafe { libc::setns(me.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0);
    out
}

fn build() -> Ns {
    let tag = format!("ebt{}", std::process::id());
    // A bpffs of the test's own, not the system's /sys/fs/bpf.
    let root = std::env::temp_dir().join(format!("{tag}-bpffs"));
    ensure_bpffs(&root).expect("bpffs");
    let ns = Ns {
        pin: root.join("port"),
        tag,
        root,
    };
    for n in ["h", "x", "1", "2"] {
        let st = Command::new("ip")
            .args(["netns", "add", &ns.name(n)])
            .status()
            .expect("ip");
        assert!(st.success());
    }
    let (h, x, n1, n2) = (ns.name("h"), ns.name("x"), ns.name("1"), ns.name("2"));
    ns.ok(
        "h",
        &format!("ip link add m0 address {MAC} type veth peer name e0 netns {x}"),
    );
    ns.ok(
        "x",
        "ip link set e0 address 02:00:00:00:00:fe && ip link set e0 up && ip link set lo up",
    );
    ns.ok(
        "x",
        "ip addr add 192.0.2.254/24 dev e0 && ip addr add 2001:db8::fe/64 dev e0 nodad",
    );
    ns.ok("h", "ip link set m0 up && ip link set lo up");
    for (i, n) in [(1, &n1), (2, &n2)] {
        ns.ok(
            "h",
            &format!("ip link add h{i} type veth peer name s{i} netns {n}"),
        );
        ns.ok("h", &format!("ip link set h{i} up"));
        ns.ok(
            &i.to_string(),
            &format!(
                "ip link set s{i} address {MAC} && sysctl -qw net.ipv6.conf.s{i}.addr_gen_mode=1 && \
                 ip link set s{i} up && ip link set lo up && \
                 ip addr add 192.0.2.1{i}/24 dev s{i} && ip addr add 2001:db8::1{i}/64 dev s{i} nodad"
            ),
        );
    }
    let _ = h;
    ns
}

fn config(m0: u32, flag: Flag, mode: Mode) -> PortConfig {
    PortConfig {
        master_ifindex: m0,
        master_mac: [2, 0, 0, 0, 0, 1],
        master_mtu: 1500,
        mode,
        flag,
        route_v4: RouteMethod::Stack,
        route_v6: RouteMethod::Stack,
    }
}

#[test]
#[ignore = "needs root, loads BPF programs"]
fn slaves_switch_through_bpf() {
    let ns = build();
    let m0 = ifindex(&ns, "h", "m0");
    let hs = [ifindex(&ns, "h", "h1"), ifindex(&ns, "h", "h2")];
    let hpath = format!("/run/netns/{}", ns.name("h"));
    let pin = ns.pin.clone();
    in_netns(&hpath, || {
        let mut p = PortProgram::load(&pin).expect("load");
        p.set_config(&config(m0, Flag::Bridge, Mode::L2))
            .expect("config");
        for (i, h) in hs.iter().enumerate() {
            let id = i as u16 + 1;
            p.set_slave(
                id,
                &SlaveEntry {
                    host_ifindex: *h,
                    mtu: 1500,
                    up: true,
                    source_guard: true,
                    router: false,
                    same_ns: false,
                    host: false,
                    mac_guard: false,
                },
            )
            .expect("slave");
            for a in [format!("192.0.2.1{id}"), format!("2001:db8::1{id}")] {
                p.add_address(a.parse::<IpAddr>().expect("ip"), id)
                    .expect("addr");
            }
            p.attach_slave(*h).expect("attach slave");
        }
        p.attach_master(m0).expect("attach master");
        // idempotent
        p.attach_master(m0).expect("attach master again");
    });
    assert!(ns.ping("1", "192.0.2.12"), "l2 bridge: s1 -> s2 IPv4");
    assert!(ns.ping("1", "2001:db8::12"), "l2 bridge: s1 -> s2 IPv6");
    assert!(ns.ping("2", "192.0.2.254"), "l2 bridge: s2 -> wire IPv4");
    assert!(ns.ping("2", "2001:db8::fe"), "l2 bridge: s2 -> wire IPv6");
    assert!(ns.ping("x", "192.0.2.11"), "wire -> s1 IPv4");

    // The PortProgram value is gone: the pins keep forwarding.
    assert!(ns.ping("1", "192.0.2.12"), "after drop");

    in_netns(&hpath, || {
        let mut p = PortProgram::open_pinned(&pin).expect("open pinned");
        let c = p.slave_counters(1).expect("counters");
        assert!(c.tx_packets > 0 && c.rx_packets > 0, "{c:?}");
        let pc = p.port_counters().expect("port counters");
        assert!(pc.tx_packets > 0 && pc.rx_claimed > 0, "{pc:?}");
        assert_eq!(p.addresses().expect("addresses").len(), 4);
        p.set_config(&config(m0, Flag::Private, Mode::L2))
            .expect("private");
    });
    assert!(!ns.ping("1", "192.0.2.12"), "private blocks s1 -> s2");
    assert!(
        ns.ping("1", "192.0.2.254"),
        "private still reaches the wire"
    );

    // l3: egress through the master namespace's stack (forwarding on), the wire routes back.
    ns.ok(
        "h",
        "sysctl -qw net.ipv4.ip_forward=1 && ip addr add 198.51.100.1/24 dev m0",
    );
    ns.ok(
        "h",
        "ip route add 192.0.2.11/32 dev h1 && ip route add 192.0.2.12/32 dev h2",
    );
    ns.ok(
        "x",
        "ip addr add 198.51.100.254/24 dev e0 && ip route add 203.0.113.0/24 via 198.51.100.1",
    );
    // l3 slaves are NOARP (R-MODE-2): the next hop is their own (the shared) MAC.
    ns.ok(
        "1",
        "ip link set s1 arp off && ip route add 198.51.100.0/24 dev s1",
    );
    in_netns(&hpath, || {
        let mut p = PortProgram::open_pinned(&pin).expect("open pinned");
        p.set_config(&config(m0, Flag::Bridge, Mode::L3))
            .expect("l3");
    });
    assert!(ns.ping("1", "192.0.2.12"), "l3: s1 -> s2 switched locally");
    let before = in_netns(&hpath, || {
        PortProgram::open_pinned(&pin)
            .expect("open")
            .port_counters()
            .expect("c")
            .to_host_stack
    });
    // The reply comes back over m0 to 192.0.2.11, which from_master claims.
    let _ = ns.sh("1", "ping -c 2 -i 0.2 -W 1 198.51.100.254");
    let after = in_netns(&hpath, || {
        PortProgram::open_pinned(&pin)
            .expect("open")
            .port_counters()
            .expect("c")
            .to_host_stack
    });
    assert!(
        after > before,
        "l3 egress goes to the master namespace's stack"
    );

    in_netns(&hpath, || {
        let p = PortProgram::open_pinned(&pin).expect("open pinned");
        p.remove(&pin).expect("remove");
    });
    assert!(!pin.exists(), "pins removed");
    // Without the programs (and with the test's own forwarding off) nothing switches any more.
    ns.ok("h", "sysctl -qw net.ipv4.ip_forward=0");
    assert!(!ns.ping("1", "192.0.2.12"), "nothing forwards after remove");
}
