//! End to end: `hostreach on|off` (`docs/hostreach.md`). Off, the master's namespace and the
//! slaves cannot reach each other (the kernel's behaviour); on, they can, both ways, IPv4 and
//! IPv6, ping and TCP, in l2, l3 and l3s — and nothing of it appears on the master's wire (a
//! capture on the external host's end `e0`); off again, the `proto 73` routes and the host
//! device are gone. Each data path runs these: the default (eBPF tcx), `IPVLAN_TEST_DATAPATH`
//! `bpf-tc` or `user`, `IPVLAN_TEST_BACKEND` `tap` or `veth`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{text, wait, Fx};

const M4: &str = "192.0.2.1";
const M6: &str = "2001:db8:1::1";

/// A capture on the external host's end of every packet between `a` and any of `others`,
/// written to a file; [`Capture::count`] stops it and counts them.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(fx: &Fx, hosts: &[&str], others: &[&str]) -> Capture {
        let file = fx
            .dir()
            .join(format!("cap{}.pcap", hosts.join("_").replace(':', "")));
        let side = |v: &[&str]| {
            v.iter()
                .map(|h| format!("host {h}"))
                .collect::<Vec<_>>()
                .join(" or ")
        };
        let filter = format!("({}) and ({})", side(hosts), side(others));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &fx.ns("ext"),
                "tcpdump",
                "-i",
                "e0",
                "-nn",
                "-U",
                "-w",
            ])
            .arg(&file)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        Capture { child, file }
    }

    fn count(mut self) -> String {
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let o = Command::new("tcpdump")
            .args(["-nn", "-r"])
            .arg(&self.file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn routes(fx: &Fx) -> String {
    fx.sh("host", "ip route show proto 73; ip -6 route show proto 73")
}

fn host_dev_exists(fx: &Fx) -> bool {
    fx.sh("host", "ip -o link show")
        .lines()
        .any(|l| l.contains(": ipvlh"))
}

/// One slave `s1` in `c1` in `mode`, with `v4`/`v6`; l3 and l3s slaves route everything
/// through their device.
fn setup(mode: &str, v4: &str, v6: &str) -> Fx {
    if !ipvlan_testkit::have("tcpdump") {
        panic!("this test needs tcpdump (apt-get install tcpdump)");
    }
    let mut fx = Fx::new();
    fx.slave("s1", &format!("mode {mode}"), "c1", v4, v6);
    if mode != "l2" {
        fx.sh(
            "c1",
            "ip route add default dev s1 && ip -6 route add default dev s1",
        );
    }
    fx
}

fn check(mode: &str, v4: &str, v6: &str) {
    require_env!();
    let fx = setup(mode, v4, v6);
    let s4 = v4.split('/').next().unwrap();
    let s6 = v6.split('/').next().unwrap();
    // Off: the kernel's behaviour.
    assert!(
        !fx.ping("host", s4, 1),
        "{mode}: off, master → slave must fail"
    );
    assert!(
        !fx.ping("c1", M4, 1),
        "{mode}: off, slave → master must fail"
    );
    assert!(
        !fx.ping("host", s6, 1),
        "{mode}: off, master → slave IPv6 must fail"
    );
    assert!(routes(&fx).trim().is_empty(), "{}", routes(&fx));
    assert!(!host_dev_exists(&fx));

    for round in 0..2 {
        // The failed pings' neighbour probes (off) still retry on m0 for a few seconds: not
        // the traffic the capture below is about.
        fx.sh("host", "ip neigh flush dev m0; ip -6 neigh flush dev m0");
        fx.cli_ok(&["link", "set", "dev", "m0", "hostreach", "on"]);
        let shown = fx.link("s1").unwrap();
        assert_eq!(shown["hostreach"], true, "{shown}");
        assert!(
            shown["host_device"].as_str().unwrap().starts_with("ipvlh"),
            "{shown}"
        );
        let d = fx.cli_ok(&["-d", "link", "show", "s1"]);
        assert!(d.contains("hostreach on host-device ipvlh"), "{d}");
        assert!(
            wait(Duration::from_secs(5), || routes(&fx).contains(s4)
                && routes(&fx).contains(s6)),
            "{mode}: routes: {}\n{}",
            routes(&fx),
            fx.daemon_log()
        );
        let cap = Capture::start(&fx, &[s4, s6], &[M4, M6]);
        assert!(
            fx.ping("host", s4, 2),
            "{mode} round {round}: master → slave\n{}",
            fx.daemon_log()
        );
        assert!(fx.ping("c1", M4, 2), "{mode}: slave → master");
        assert!(
            fx.ping("host", s6, 2),
            "{mode}: master → slave IPv6\n{}",
            fx.sh("host", "ip -6 neigh; ip -6 route")
        );
        assert!(
            fx.ping("c1", M6, 2),
            "{mode}: slave → master IPv6\n{}",
            fx.sh("c1", "ip -6 neigh")
        );
        assert_eq!(
            fx.tcp_transfer("host", "c1", s4, 7001, 200_000).trim(),
            "200000"
        );
        assert_eq!(
            fx.tcp_transfer("c1", "host", M4, 7002, 200_000).trim(),
            "200000"
        );
        assert_eq!(
            fx.tcp_transfer("host", "c1", s6, 7003, 200_000).trim(),
            "200000"
        );
        let seen = cap.count();
        assert!(
            seen.trim().is_empty(),
            "{mode}: host↔slave frames on the wire:\n{seen}"
        );
        // The wire still reaches the master and the slave as before.
        assert!(
            fx.ping("ext", M4, 1) && fx.ping("ext", M6, 1),
            "{mode}: wire → master"
        );
        if mode == "l2" {
            assert!(fx.ping("ext", s4, 1), "{mode}: wire → slave");
        }

        fx.cli_ok(&["link", "set", "dev", "s1", "hostreach", "off"]);
        assert!(
            routes(&fx).trim().is_empty(),
            "{mode}: routes left: {}",
            routes(&fx)
        );
        assert!(!host_dev_exists(&fx), "{}", fx.sh("host", "ip link"));
        assert_eq!(fx.link("s1").unwrap()["hostreach"], false);
        assert!(
            !fx.ping("host", s4, 1),
            "{mode}: off again, master → slave must fail"
        );
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, tcpdump"]
fn hostreach_l2() {
    check("l2", "192.0.2.11/24", "2001:db8:1::11/64");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, tcpdump"]
fn hostreach_l3() {
    check("l3", "198.51.100.11/32", "2001:db8:2::11/128");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, tcpdump"]
fn hostreach_l3s() {
    check("l3s", "198.51.100.11/32", "2001:db8:2::11/128");
}

/// `hostreach on` given at `link add`, kept across a daemon restart: the host device is found
/// again, the routes are there once (no duplicate), and traffic flows.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, tcpdump"]
fn hostreach_survives_a_restart() {
    require_env!();
    let mut fx = Fx::new();
    let mut words = vec!["link", "add", "link", "m0", "s1"];
    let backend = fx.backend.clone();
    if let Some(b) = &backend {
        words.extend(["backend", b.as_str()]);
    }
    words.extend(["type", "ipvlan", "mode", "l2", "hostreach", "on"]);
    fx.cli_ok(&words);
    fx.add_ns("c1");
    let c1 = fx.ns("c1");
    fx.sh("host", &format!("ip link set dev s1 netns {c1}"));
    fx.sh(
        "c1",
        "ip link set dev s1 up && ip addr add 192.0.2.11/24 dev s1",
    );
    fx.wait_learned("s1", "192.0.2.11");
    assert!(wait(Duration::from_secs(5), || routes(&fx)
        .contains("192.0.2.11")));
    assert!(fx.ping("host", "192.0.2.11", 2), "{}", fx.daemon_log());
    fx.stop_daemon(false);
    fx.start_daemon();
    assert_eq!(fx.link("s1").unwrap()["hostreach"], true);
    assert!(wait(Duration::from_secs(5), || routes(&fx)
        .contains("192.0.2.11")));
    assert_eq!(
        routes(&fx).matches("192.0.2.11").count(),
        1,
        "{}",
        routes(&fx)
    );
    assert!(fx.ping("host", "192.0.2.11", 2), "{}", fx.daemon_log());
    assert!(fx.ping("c1", M4, 2));
    let links = fx.sh("host", "ip -o link show");
    assert_eq!(links.matches(": ipvlh").count(), 1, "{links}");
    let _ = text;
}
