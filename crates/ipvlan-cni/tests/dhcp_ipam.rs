//! The CNI `dhcp` IPAM path (docs/dhcp.md): the reference `dhcp` plugin, with its daemon
//! (`dhcp daemon -socketpath …`, our own socket, never the host's /run/cni/dhcp.sock) running
//! the client inside each container on `CNI_IFNAME`, with a client id made of the container
//! id, network and interface. Two containers on one ipvlan-rs network get two leases from
//! dnsmasq on the external host, each reachable; DEL releases them.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");
const CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";
const DHCP: &str = "/usr/lib/cni/dhcp";

fn daemon_bin() -> PathBuf {
    Path::new(PLUGIN).with_file_name("ipvlan")
}

fn require_env() {
    let why = ipvlan_testkit::unsupported()
        .or_else(|| {
            (!daemon_bin().exists()).then(|| {
                format!(
                    "{} is not built (run cargo test --workspace)",
                    daemon_bin().display()
                )
            })
        })
        .or_else(|| {
            (!Path::new(DHCP).exists())
                .then(|| format!("{DHCP} is missing (Debian: containernetworking-plugins)"))
        })
        .or_else(|| ipvlan_testkit::missing(&[("dnsmasq", "dnsmasq-base")]));
    if let Some(why) = why {
        panic!("this CNI dhcp test needs root, iproute2, nftables, TUN, the dhcp IPAM plugin and dnsmasq, and cannot run here: {why}");
    }
}

/// Programs this test started, by PID: SIGTERM on drop, SIGKILL after 3 s. Declared after the
/// fixture, so they end before it deletes their namespaces.
#[derive(Default)]
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: kill(2) on the PID of a child of ours.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let gone = ipvlan_testkit::wait(Duration::from_secs(3), || {
                c.try_wait().ok().flatten().is_some()
            });
            if !gone {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn spawn_in(fx: &ipvlan_testkit::Fx, ns: &str, argv: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new("ip")
        .args(["netns", "exec", &fx.ns(ns)])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// dnsmasq's leases: `(address, client id)`.
fn leases(dir: &Path) -> Vec<(String, String)> {
    read(&dir.join("leases"))
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| (f[2].to_owned(), f[4].to_owned()))
        })
        .collect()
}

fn plugin(
    fx: &ipvlan_testkit::Fx,
    command: &str,
    container: &str,
    conf: &Value,
) -> (i32, Value, String) {
    let mut cmd = Command::new(PLUGIN);
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("id-{container}"))
        .env("CNI_NETNS", format!("/run/netns/{}", fx.ns(container)))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_PATH);
    let out = ipvlan_testkit::run_with_input(&mut cmd, conf.to_string().as_bytes());
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the dhcp IPAM plugin, dnsmasq"]
fn dhcp_ipam_gives_two_containers_two_leases_and_del_releases_them() {
    require_env();
    let mut fx = ipvlan_testkit::Fx::new(daemon_bin());
    fx.add_ns("c1");
    fx.add_ns("c2");
    let dir = fx.dir().join("dhcp");
    std::fs::create_dir_all(&dir).unwrap();
    let mut procs = Procs::default();
    let p = |f: &str| dir.join(f).display().to_string();
    let dnsmasq = [
        "dnsmasq".to_owned(),
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        "--port=0".into(),
        "--user=root".into(),
        "--interface=e0".into(),
        "--bind-interfaces".into(),
        "--no-ping".into(), // no ICMP check of an address before offering it: quicker
        "--dhcp-authoritative".into(),
        "--dhcp-range=192.0.2.100,192.0.2.150,255.255.255.0,2m".into(),
        "--dhcp-option=option:router,192.0.2.254".into(),
        "--log-dhcp".into(),
        format!("--dhcp-leasefile={}", p("leases")),
        format!("--pid-file={}", p("dnsmasq.pid")),
        format!("--log-facility={}", p("dnsmasq.log")), // not the host's syslog
    ];
    let argv: Vec<&str> = dnsmasq.iter().map(String::as_str).collect();
    procs
        .0
        .push(spawn_in(&fx, "ext", &argv, &dir.join("dnsmasq.out")));
    let up = ipvlan_testkit::wait(Duration::from_secs(10), || {
        ["dnsmasq.out", "dnsmasq.log"]
            .iter()
            .any(|f| read(&dir.join(f)).contains("sockets bound"))
    });
    assert!(up, "dnsmasq: {}", read(&dir.join("dnsmasq.out")));
    // The dhcp plugin's daemon, on a socket of our own; it enters each container's namespace
    // by the CNI_NETNS path it is given.
    let socket = dir.join("cni-dhcp.sock");
    let sock = socket.display().to_string();
    let pid = p("cni-dhcp.pid");
    procs.0.push(spawn_in(
        &fx,
        "host",
        &[DHCP, "daemon", "-socketpath", &sock, "-pidfile", &pid],
        &dir.join("cni-dhcp.out"),
    ));
    let up = ipvlan_testkit::wait(Duration::from_secs(10), || socket.exists());
    assert!(up, "dhcp daemon: {}", read(&dir.join("cni-dhcp.out")));
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": "ipvl-dhcp",
        "type": "ipvlan-rs",
        "master": "m0",
        "mode": "l2",
        "socket": fx.socket,
        "ipam": { "type": "dhcp", "daemonSocketPath": sock },
    });
    if let Some(b) = &fx.backend {
        conf["backend"] = json!(b);
    }
    let diag = |fx: &ipvlan_testkit::Fx| {
        format!(
            "--- dnsmasq ---\n{}{}\n--- cni dhcp daemon ---\n{}\n--- ipvlan daemon ---\n{}",
            read(&dir.join("dnsmasq.out")),
            read(&dir.join("dnsmasq.log")),
            read(&dir.join("cni-dhcp.out")),
            fx.daemon_log()
        )
    };
    let mut addrs = Vec::new();
    for c in ["c1", "c2"] {
        let (code, r, err) = plugin(&fx, "ADD", c, &conf);
        assert_eq!(code, 0, "ADD {c}: {r} {err}\n{}", diag(&fx));
        assert_eq!(r["interfaces"][0]["name"], "eth0");
        let a = r["ips"][0]["address"].as_str().unwrap().to_owned();
        assert!(a.starts_with("192.0.2.1") && a.ends_with("/24"), "{r}");
        addrs.push(a.split('/').next().unwrap().to_owned());
    }
    assert_ne!(addrs[0], addrs[1], "two leases");
    let l = leases(&dir);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_ne!(l[0].1, l[1].1, "distinct client ids: {l:?}");
    for a in &addrs {
        assert!(l.iter().any(|(x, _)| x == a), "{a} leased: {l:?}");
        assert!(fx.ping("ext", a, 1), "ext → {a}\n{}", diag(&fx));
    }
    // The steered replies show in the daemon's counters.
    let steered: u64 = fx
        .links()
        .iter()
        .map(|l| l["stats"]["dhcp_steered"].as_u64().unwrap_or(0))
        .sum();
    assert!(steered >= 4, "OFFER + ACK for each: {steered}");
    // DEL releases each lease.
    for (c, a) in ["c1", "c2"].into_iter().zip(&addrs) {
        let (code, r, err) = plugin(&fx, "DEL", c, &conf);
        assert_eq!(code, 0, "DEL {c}: {r} {err}");
        let gone = ipvlan_testkit::wait(Duration::from_secs(10), || {
            !leases(&dir).iter().any(|(x, _)| x == a)
        });
        assert!(
            gone,
            "{a} still leased after DEL: {:?}\n{}",
            leases(&dir),
            diag(&fx)
        );
    }
    drop(procs);
}
