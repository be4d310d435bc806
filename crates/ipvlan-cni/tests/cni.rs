//! The plugin run as a container runtime runs it (CNI_* variables, configuration on stdin)
//! against real namespaces and a real daemon.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");
const CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

fn daemon_bin() -> PathBuf {
    Path::new(PLUGIN).with_file_name("ipvlan")
}

fn unsupported() -> Option<String> {
    if let Some(why) = ipvlan_testkit::unsupported() {
        return Some(why);
    }
    if !daemon_bin().exists() {
        return Some(format!(
            "{} is not built (run cargo test --workspace)",
            daemon_bin().display()
        ));
    }
    if !CNI_PATH
        .split(':')
        .any(|d| Path::new(d).join("host-local").exists())
    {
        return Some(
            "the host-local IPAM plugin is missing (Debian: containernetworking-plugins)".into(),
        );
    }
    None
}

/// Fails the calling test, saying why, where it cannot run. The tests are `#[ignore]`d: only
/// `cargo test -- --include-ignored` asks them to run, so a missing prerequisite is an error.
fn require_env() {
    if let Some(why) = unsupported() {
        panic!("this CNI test needs root, iproute2, nftables, TUN and host-local, and cannot run here: {why}");
    }
}

/// The shared fixture (daemon in `host`, external host in `ext`) plus two container
/// namespaces `c1` and `c2`.
struct Fx(ipvlan_testkit::Fx);

fn sh(ns: &str, cmd: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap()
}

impl Fx {
    fn new() -> Fx {
        let mut net = ipvlan_testkit::Fx::new(daemon_bin());
        net.add_ns("c1");
        net.add_ns("c2");
        Fx(net)
    }

    fn ns(&self, n: &str) -> String {
        self.0.ns(n)
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "ipvl-test",
            "type": "ipvlan-rs",
            "master": "m0",
            "mode": "l2",
            "socket": self.0.socket,
            "ipam": ipvlan_testkit::host_local_ipam(&self.0.dir().join("ipam")),
        });
        if let (Some(o), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// Runs the plugin as a runtime would, from the test's own namespace (the daemon lives in
    /// `host`; the plugin finds it through the socket): (exit code, stdout JSON).
    fn plugin(&self, command: &str, container: &str, conf: &Value) -> (i32, Value) {
        let netns = format!("/run/netns/{}", self.ns(container));
        let mut child = Command::new(PLUGIN)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("id-{container}"))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    fn ping(&self, ns: &str, ip: &str) -> bool {
        sh(&self.ns(ns), &format!("ping -c 2 -i 0.2 -W 1 {ip}"))
            .status
            .success()
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn add_check_del_two_containers() {
    require_env();
    let mut fx = Fx::new();
    let conf = fx.conf(json!({}));
    let (code, r1) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r1}");
    let (code, r2) = fx.plugin("ADD", "c2", &conf);
    assert_eq!(code, 0, "{r2}");
    // A spec-conformant result: the interface in the sandbox, its address from host-local.
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["mac"], "02:00:00:00:00:01");
    assert!(r1["interfaces"][0]["sandbox"]
        .as_str()
        .unwrap()
        .ends_with("-c1"));
    assert_eq!(r1["ips"][0]["interface"], 0);
    assert_eq!(r1["ips"][0]["gateway"], "192.0.2.254");
    // The first address of a result, without its prefix length.
    let addr = |r: &Value| {
        r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let (a1, a2) = (addr(&r1), addr(&r2));
    assert_ne!(a1, a2);
    // The containers reach each other and the external host.
    let t = Instant::now();
    while !fx.ping("c1", &a2) && t.elapsed() < Duration::from_secs(5) {}
    assert!(fx.ping("c1", &a2), "c1 → c2");
    assert!(fx.ping("c2", "192.0.2.254"), "c2 → external");
    assert!(fx.ping("ext", &a1), "external → c1");
    // CHECK passes, then fails once the address is gone.
    let mut chk = conf.clone();
    chk["prevResult"] = r2.clone();
    assert_eq!(fx.plugin("CHECK", "c2", &chk).0, 0);
    sh(
        &fx.ns("c2"),
        &format!(
            "ip addr del {} dev eth0",
            r2["ips"][0]["address"].as_str().unwrap()
        ),
    );
    let (code, err) = fx.plugin("CHECK", "c2", &chk);
    assert_ne!(code, 0);
    assert!(err["msg"].as_str().unwrap().contains("missing"), "{err}");
    // DEL removes everything; a second DEL succeeds too.
    assert_eq!(fx.plugin("DEL", "c1", &conf).0, 0);
    assert!(
        !sh(&fx.ns("c1"), "ip link show eth0").status.success(),
        "interface removed"
    );
    assert_eq!(fx.plugin("DEL", "c1", &conf).0, 0, "DEL is idempotent");
    // DEL after the namespace is gone succeeds as well.
    fx.0.del_ns("c2");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fx.plugin("DEL", "c2", &conf).0, 0);
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn version_and_bad_configs_give_cni_errors() {
    require_env();
    let fx = Fx::new();
    let (code, v) = fx.plugin("VERSION", "c1", &json!({"cniVersion": "0.4.0"}));
    assert_eq!(code, 0);
    assert_eq!(v["cniVersion"], "0.4.0", "the caller's version echoed: {v}");
    assert!(v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "0.4.0"));
    let cases = [
        (fx.conf(json!({"cniVersion": "9.9.9"})), 1, "not supported"),
        (fx.conf(json!({"mode": "l4"})), 7, "unknown ipvlan mode"),
        (
            fx.conf(json!({"linkInContainer": true})),
            7,
            "linkInContainer",
        ),
        (
            fx.conf(json!({"master": "nosuch"})),
            999,
            "Cannot find device",
        ),
        (json!("not an object"), 6, "decode"),
    ];
    for (conf, code, needle) in cases {
        let (exit, err) = fx.plugin("ADD", "c1", &conf);
        assert_ne!(exit, 0, "{conf}");
        assert_eq!(err["code"], code, "{err}");
        assert!(err["msg"].as_str().unwrap().contains(needle), "{err}");
    }
    // Nothing was created by the failures.
    assert!(!sh(&fx.ns("c1"), "ip link show eth0").status.success());
    // An older configuration version gets a result in its own format.
    let (code, r) = fx.plugin("ADD", "c1", &fx.conf(json!({"cniVersion": "0.4.0"})));
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ips"][0]["version"], "4");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn without_master_the_default_routes_device_is_taken() {
    require_env();
    let fx = Fx::new();
    let mut conf = fx.conf(json!({}));
    if let Some(o) = conf.as_object_mut() {
        o.remove("master");
    }
    // No default route in the daemon's namespace: a configuration error that says so.
    let (code, err) = fx.plugin("ADD", "c1", &conf);
    assert_ne!(code, 0, "{err}");
    assert_eq!(err["code"], 7, "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("no default route"),
        "{err}"
    );
    // With one (through m0, found over rtnetlink): the slave is made on m0 and works.
    fx.0.sh("host", "ip route add default via 192.0.2.254 dev m0");
    let (code, r) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r}");
    let shown = fx.0.cli_ok(&["-j", "link", "show"]);
    assert!(shown.contains("\"master\":\"m0\""), "{shown}");
    assert!(fx.ping("c1", "192.0.2.254"), "c1 → external");
    assert_eq!(fx.plugin("DEL", "c1", &conf).0, 0);
}

/// ADD returns only once the daemon serves the container's address: with 16 ADDs at once,
/// each container's very first ping to the outside (one echo, no retry) is answered.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn concurrent_adds_return_once_served_so_the_first_packet_gets_through() {
    require_env();
    const N: usize = 16;
    let mut fx = Fx::new();
    for n in 3..=N {
        fx.0.add_ns(&format!("c{n}"));
    }
    let conf = fx.conf(json!({}));
    let fx = std::sync::Arc::new(fx);
    let results: Vec<(usize, i32, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=N)
            .map(|n| {
                let (fx, conf) = (fx.clone(), conf.clone());
                s.spawn(move || {
                    let (code, r) = fx.plugin("ADD", &format!("c{n}"), &conf);
                    // At once, as a container's first packet would be: one echo, no retry.
                    let first = sh(&fx.ns(&format!("c{n}")), "ping -c 1 -W 2 192.0.2.254")
                        .status
                        .success();
                    (n, code, json!({ "result": r, "first_ping": first }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, code, v)| *code != 0 || v["first_ping"] != true)
        .map(|(n, code, v)| format!("c{n}: exit {code} {v}"))
        .collect();
    assert!(failed.is_empty(), "{} of {N}: {failed:#?}", failed.len());
    for n in 1..=N {
        assert_eq!(fx.plugin("DEL", &format!("c{n}"), &conf).0, 0);
    }
}
