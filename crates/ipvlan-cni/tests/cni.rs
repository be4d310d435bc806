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

/// One run of the plugin: exit code, stdout as JSON (`Null` if none), stderr.
struct Run {
    code: i32,
    out: Value,
    err: String,
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
        // The slave backend the suite runs with (IPVLAN_TEST_BACKEND), as the CLI tests ask it.
        if let Some(b) = &self.0.backend {
            c["backend"] = json!(b);
        }
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
        let r = self.run(command, container, conf, &[]);
        (r.code, r.out)
    }

    /// As [`Fx::plugin`], with some `CNI_*` variables replaced (an empty value removes one),
    /// and stderr kept.
    fn run(&self, command: &str, container: &str, conf: &Value, vars: &[(&str, &str)]) -> Run {
        let netns = format!("/run/netns/{}", self.ns(container));
        let mut cmd = Command::new(PLUGIN);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", format!("id-{container}"))
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_PATH);
        for (k, v) in vars {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let out = ipvlan_testkit::run_with_input(&mut cmd, conf.to_string().as_bytes());
        Run {
            code: out.status.code().unwrap_or(-1),
            out: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
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
    let gone = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(err["msg"].as_str().unwrap().contains(gone), "{err}");
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
            2,
            "linkInContainer=true",
        ),
        (fx.conf(json!({"name": "bad name"})), 7, "network name"),
        (
            fx.conf(json!({"flag": "hairpin"})),
            7,
            "unknown ipvlan flag",
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
    // An older configuration version gets a result in its own format; `"mtu": 0` is the
    // master's MTU, as with the reference plugin.
    let (code, r) = fx.plugin(
        "ADD",
        "c1",
        &fx.conf(json!({"cniVersion": "0.4.0", "mtu": 0})),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["ips"][0]["version"], "4");
    let mtu = sh(&fx.ns("c1"), "cat /sys/class/net/eth0/mtu");
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1500");
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
    assert!(shown.contains("\"link\":\"m0\""), "{shown}");
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

/// The first address of a result, without its prefix length.
fn first_ip(r: &Value) -> String {
    r["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// libcni's parameter checks and version gates, through the binary: invalid container ids and
/// interface names are code 4 naming the variable; CHECK below 0.4.0 and STATUS/GC below
/// 1.1.0 are code 1; a runtime's unknown command is code 4; no command at all prints what the
/// plugin is and succeeds.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn parameters_and_version_gates_as_libcni() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({}));
    for (vars, needle) in [
        (vec![("CNI_CONTAINERID", "-x")], "CNI_CONTAINERID"),
        (vec![("CNI_CONTAINERID", "a b")], "CNI_CONTAINERID"),
        (vec![("CNI_IFNAME", "abcdefghijklmnop")], "too long"),
        (vec![("CNI_IFNAME", "et/h0")], "contains /"),
        // The kernel takes a name with % for a pattern and picks its own (net%d: net0): the
        // result would name an interface that does not exist.
        (vec![("CNI_IFNAME", "net%d")], "contains %"),
        (vec![("CNI_NETNS", "")], "[CNI_NETNS]"),
        (vec![("CNI_PATH", "")], "[CNI_PATH]"),
    ] {
        let r = fx.run("ADD", "c1", &conf, &vars);
        assert_eq!(
            (r.code, r.out["code"].clone()),
            (1, json!(4)),
            "{vars:?}: {}",
            r.out
        );
        assert!(r.out["msg"].as_str().unwrap().contains(needle), "{}", r.out);
    }
    assert!(!sh(&fx.ns("c1"), "ip link show eth0").status.success());
    for (cmd, version) in [("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "1.0.0")] {
        let mut c = fx.conf(json!({"cniVersion": version}));
        c["prevResult"] = json!({});
        let r = fx.run(cmd, "c1", &c, &[]);
        assert_eq!(r.out["code"], 1, "{cmd} {version}: {}", r.out);
        assert!(r.out["msg"]
            .as_str()
            .unwrap()
            .contains(&format!("does not allow {cmd}")));
    }
    let r = fx.run("FROB", "c1", &conf, &[]);
    assert_eq!(r.out["code"], 4, "{}", r.out);
    let r = fx.run("", "c1", &conf, &[("CNI_COMMAND", "")]);
    assert_eq!(r.code, 0);
    assert!(
        r.err
            .contains("CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"),
        "{}",
        r.err
    );
}

/// CNI 1.1 STATUS: ready while the daemon answers and the master exists (code 50 otherwise,
/// saying which); GC removes the slaves of this network whose attachment the runtime no
/// longer lists, releases their addresses (host-local here predates GC: through its DEL), and
/// leaves the valid ones and other networks' alone.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn status_and_gc_as_cni_1_1() {
    require_env();
    let mut fx = Fx::new();
    fx.0.add_ns("c3");
    let conf = fx.conf(json!({"cniVersion": "1.1.0"}));
    let r = fx.run("STATUS", "c1", &conf, &[]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let r = fx.run(
        "STATUS",
        "c1",
        &fx.conf(json!({"cniVersion": "1.1.0", "master": "nosuch"})),
        &[],
    );
    assert_eq!(r.out["code"], 50, "{}", r.out);
    assert!(
        r.out["msg"]
            .as_str()
            .unwrap()
            .contains("master nosuch does not exist"),
        "{}",
        r.out
    );

    let mut results = Vec::new();
    for c in ["c1", "c2"] {
        let (code, r) = fx.plugin("ADD", c, &conf);
        assert_eq!(code, 0, "{r}");
        results.push(r);
    }
    // Another network's slave in c3: GC of ours must not touch it.
    let other = fx.conf(json!({
        "cniVersion": "1.1.0",
        "name": "other-net",
        "ipam": {"type": "static", "addresses": [{"address": "192.0.2.140/24"}]},
    }));
    let (code, r3) = fx.plugin("ADD", "c3", &other);
    assert_eq!(code, 0, "{r3}");
    let shown = fx.0.cli_ok(&["-j", "link", "show"]);
    assert!(
        shown.contains("\"containerID\":\"id-c2\""),
        "attachment recorded: {shown}"
    );

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "id-c1", "ifname": "eth0"}]);
    let r = fx.run(
        "GC",
        "c1",
        &gc,
        &[
            ("CNI_CONTAINERID", ""),
            ("CNI_IFNAME", ""),
            ("CNI_NETNS", ""),
        ],
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(
        !sh(&fx.ns("c2"), "ip link show eth0").status.success(),
        "c2's slave removed"
    );
    assert!(
        sh(&fx.ns("c1"), "ip link show eth0").status.success(),
        "c1's slave kept"
    );
    assert!(
        sh(&fx.ns("c3"), "ip link show eth0").status.success(),
        "other network's kept"
    );
    assert!(fx.ping("c1", "192.0.2.254"), "c1 still works");
    // c2's address is free again: host-local hands it to the next container.
    let ipam_dir = fx.0.dir().join("ipam");
    let leases = std::fs::read_dir(ipam_dir.join("ipvl-test")).unwrap();
    let held: Vec<String> = leases
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !held.contains(&first_ip(&results[1])),
        "c2's lease released: {held:?}"
    );
    assert!(
        held.contains(&first_ip(&results[0])),
        "c1's lease kept: {held:?}"
    );

    // With the daemon gone, STATUS says ADD cannot be served.
    fx.0.stop_daemon(false);
    let r = fx.run("STATUS", "c1", &conf, &[]);
    assert_eq!(r.out["code"], 50, "{}", r.out);
    assert!(
        r.out["msg"].as_str().unwrap().contains("ipvlan"),
        "{}",
        r.out
    );
}

/// Chained after a plugin whose result names one interface, without `ipam` or `master`: the
/// slave is made on that interface and given the prevResult's IPs and routes; the result
/// replaces the interfaces and passes the DNS through (a configured `dns` wins). Errors when
/// the prevResult names several interfaces, or when there is neither ipam nor an IP.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn chained_from_a_prev_result_as_the_reference_plugin() {
    require_env();
    let fx = Fx::new();
    let mut conf = fx.conf(json!({}));
    let o = conf.as_object_mut().unwrap();
    o.remove("master");
    o.remove("ipam");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "m0"}],
        "ips": [{"address": "192.0.2.77/24", "gateway": "192.0.2.254", "interface": 0}],
        "routes": [{"dst": "198.51.100.0/24"}],
        "dns": {"nameservers": ["192.0.2.53"]}
    });
    let (code, r) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["interfaces"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["ips"][0]["address"], "192.0.2.77/24");
    assert_eq!(r["ips"][0]["interface"], 0);
    assert_eq!(r["dns"]["nameservers"][0], "192.0.2.53", "{r}");
    let shown = fx.0.cli_ok(&["-j", "link", "show"]);
    assert!(shown.contains("\"link\":\"m0\""), "{shown}");
    assert!(
        fx.ping("c1", "192.0.2.254"),
        "the prevResult's address works"
    );
    let routes = sh(&fx.ns("c1"), "ip route show 198.51.100.0/24");
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("via 192.0.2.254 dev eth0"),
        "the prevResult's route, through its gateway: {routes:?}"
    );
    // A configured dns replaces the prevResult's.
    let mut with_dns = conf.clone();
    with_dns["prevResult"]["ips"][0]["address"] = json!("192.0.2.78/24");
    with_dns["dns"] = json!({"nameservers": ["198.51.100.53"], "search": ["example.test"]});
    let (code, r2) = fx.plugin("ADD", "c2", &with_dns);
    assert_eq!(code, 0, "{r2}");
    assert_eq!(r2["dns"]["search"][0], "example.test", "{r2}");
    assert_eq!(r2["dns"]["nameservers"][0], "198.51.100.53");
    assert_eq!(fx.plugin("DEL", "c2", &with_dns).0, 0);
    // Several interfaces and no master: no guess.
    let mut two = conf.clone();
    two["prevResult"]["interfaces"] = json!([{"name": "m0"}, {"name": "e9"}]);
    let (code, e) = fx.plugin("ADD", "c2", &two);
    assert_ne!(code, 0);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("single named interface"),
        "{e}"
    );
    // No ipam and no prevResult: nothing to address it with.
    let mut bare = conf.clone();
    bare.as_object_mut().unwrap().remove("prevResult");
    bare["master"] = json!("m0");
    let (code, e) = fx.plugin("ADD", "c2", &bare);
    assert_eq!((code, e["code"].clone()), (1, json!(7)), "{e}");
    assert!(!sh(&fx.ns("c2"), "ip link show eth0").status.success());
    // CHECK with the ADD's own result passes; DEL removes it.
    let mut chk = conf.clone();
    chk["prevResult"] = r.clone();
    assert_eq!(fx.plugin("CHECK", "c1", &chk).0, 0);
    assert_eq!(fx.plugin("DEL", "c1", &conf).0, 0);
}

/// CHECK compares what the reference compares: the sandbox of the prevResult's interface, its
/// MAC, and its routes, beside the addresses.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn check_compares_sandbox_mac_and_routes() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({}));
    let (code, r) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r}");
    let check = |prev: &Value| {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        fx.plugin("CHECK", "c1", &c)
    };
    assert_eq!(check(&r).0, 0, "its own result");
    for (field, value, needle) in [
        ("sandbox", json!("/run/netns/elsewhere"), "sandbox"),
        ("mac", json!("02:00:00:00:00:99"), "MAC"),
    ] {
        let mut bad = r.clone();
        bad["interfaces"][0][field] = value;
        let (code, e) = check(&bad);
        assert_ne!(code, 0, "{field}");
        assert!(e["msg"].as_str().unwrap().contains(needle), "{e}");
    }
    sh(&fx.ns("c1"), "ip route del default");
    let (code, e) = check(&r);
    assert_ne!(code, 0);
    assert!(
        e["msg"].as_str().unwrap().contains("route to 0.0.0.0/0"),
        "{e}"
    );
}

/// ipvlan-rs's own keys and the well-known ones: `flag` and `spoofchk` reach the daemon (a
/// private port keeps two containers apart), `dns` is returned, an MTU above the master's is
/// accepted as the kernel accepts it with a warning on stderr, and an unknown key is named on
/// stderr without failing ADD.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn flag_spoofchk_dns_and_unknown_keys() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({
        "flag": "private",
        "spoofchk": true,
        "dns": {"nameservers": ["192.0.2.53"]},
        "mdoe": "l3",
    }));
    let r1 = fx.run("ADD", "c1", &conf, &[]);
    assert_eq!(r1.code, 0, "{}", r1.out);
    assert!(r1.err.contains("\"mdoe\" is not used"), "{}", r1.err);
    assert_eq!(r1.out["dns"]["nameservers"][0], "192.0.2.53");
    let (code, r2) = fx.plugin("ADD", "c2", &conf);
    assert_eq!(code, 0, "{r2}");
    let links = fx.0.links();
    assert_eq!(links.len(), 2, "{links:?}");
    for l in &links {
        assert_eq!(l["flag"], "private", "{l}");
        assert_eq!(l["spoofchk"], true, "{l}");
    }
    assert!(
        fx.ping("c1", "192.0.2.254"),
        "private: the wire is reachable"
    );
    assert!(
        !fx.ping("c1", &first_ip(&r2)),
        "private: no unicast between slaves"
    );
    assert_eq!(fx.plugin("DEL", "c2", &conf).0, 0);
    // An MTU above the master's: accepted, as the kernel accepts it (R-MTU-2), and said.
    let big = fx.conf(json!({"mtu": 9000, "flag": "private"}));
    let r = fx.run("ADD", "c2", &big, &[]);
    assert_eq!(r.code, 0, "{}", r.out);
    assert!(
        r.err.contains("mtu 9000 is above master m0's 1500"),
        "warned: {}",
        r.err
    );
    let mtu = sh(&fx.ns("c2"), "cat /sys/class/net/eth0/mtu");
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "9000");
}

/// As the reference plugin: the address is on the interface before it comes up with
/// `arp_notify`, so the LAN hears a gratuitous ARP and a stale neighbour entry is fixed at
/// once; IPv6 addresses go through duplicate address detection and ADD waits for it: an
/// address the LAN already has fails ADD (and leaves nothing behind), another is usable (not
/// tentative) when ADD returns.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn addresses_are_announced_and_ipv6_waits_for_dad() {
    require_env();
    let fx = Fx::new();
    // The external host believes 192.0.2.100 (host-local's first) is elsewhere.
    fx.0.sh(
        "ext",
        "ip neigh replace 192.0.2.100 lladdr 02:aa:bb:cc:dd:ee dev e0 nud stale",
    );
    let (code, r) = fx.plugin("ADD", "c1", &fx.conf(json!({})));
    assert_eq!(code, 0, "{r}");
    assert_eq!(first_ip(&r), "192.0.2.100");
    assert!(
        ipvlan_testkit::wait(Duration::from_secs(3), || {
            fx.0.sh("ext", "ip neigh show 192.0.2.100")
                .contains("02:00:00:00:00:01")
        }),
        "the gratuitous ARP fixed the external host's entry: {}",
        fx.0.sh("ext", "ip neigh show 192.0.2.100")
    );
    let v6 =
        |addr: &str| fx.conf(json!({"ipam": {"type": "static", "addresses": [{"address": addr}]}}));
    // e0 on the external host has 2001:db8:1::fe.
    let t = Instant::now();
    let (code, e) = fx.plugin("ADD", "c2", &v6("2001:db8:1::fe/64"));
    assert_ne!(code, 0, "{e}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("duplicate address detection failed"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(
        !sh(&fx.ns("c2"), "ip link show eth0").status.success(),
        "nothing left"
    );
    assert!(
        !fx.0.cli_ok(&["link", "show"]).contains("c2"),
        "no slave left"
    );
    let (code, r) = fx.plugin("ADD", "c2", &v6("2001:db8:1::77/64"));
    assert_eq!(code, 0, "{r}");
    let addrs = sh(&fx.ns("c2"), "ip -6 addr show dev eth0");
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(
        addrs.contains("2001:db8:1::77/64") && !addrs.contains("tentative"),
        "{addrs}"
    );
    let keep = sh(
        &fx.ns("c2"),
        "cat /proc/sys/net/ipv6/conf/eth0/keep_addr_on_down",
    );
    assert_eq!(String::from_utf8_lossy(&keep.stdout).trim(), "1");
    assert!(fx.ping("c2", "2001:db8:1::fe"), "usable at once");
}

/// DEL with the daemon down still removes the container's interface (and the IPAM lease),
/// and succeeds; the daemon, started again, no longer has the slave and the address can be
/// taken again.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn del_without_the_daemon_succeeds_and_the_daemon_reconciles() {
    require_env();
    let mut fx = Fx::new();
    let conf = fx.conf(json!({}));
    let (code, r) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r}");
    fx.0.stop_daemon(false);
    let d = fx.run("DEL", "c1", &conf, &[]);
    assert_eq!(d.code, 0, "{} {}", d.out, d.err);
    assert!(d.err.contains("directly"), "{}", d.err);
    assert!(
        !sh(&fx.ns("c1"), "ip link show eth0").status.success(),
        "removed"
    );
    fx.0.start_daemon();
    assert!(
        ipvlan_testkit::wait(Duration::from_secs(5), || fx.0.links().is_empty()),
        "the daemon dropped the slave: {:?}",
        fx.0.links()
    );
    let lease = fx.0.dir().join("ipam").join("ipvl-test").join(first_ip(&r));
    assert!(
        !lease.exists(),
        "the lease was released: {}",
        lease.display()
    );
    // The address is free for another slave: a static one takes it and works.
    let same = fx.conf(json!({"ipam": {"type": "static", "addresses": [{"address": format!("{}/24", first_ip(&r))}]}}));
    let (code, again) = fx.plugin("ADD", "c2", &same);
    assert_eq!(code, 0, "{again}");
    assert!(fx.ping("c2", "192.0.2.254"));
}

impl Fx {
    /// The addresses host-local holds for the test network (its lease files).
    fn leases(&self) -> Vec<String> {
        let dir = self.0.dir().join("ipam").join("ipvl-test");
        let mut held: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        held.sort();
        held
    }

    /// The daemon's slaves' names.
    fn slaves(&self) -> Vec<String> {
        self.0
            .links()
            .iter()
            .filter_map(|l| l["name"].as_str().map(str::to_owned))
            .collect()
    }

    fn has_eth0(&self, ns: &str) -> bool {
        sh(&self.ns(ns), "ip link show eth0").status.success()
    }
}

/// A failed run as the spec wants it: exit 1 and one error object on stdout, in the caller's
/// version, with a code and a message containing `needle`; nothing else on stdout.
fn assert_cni_error(r: &Run, version: &str, needle: &str) {
    assert_eq!(r.code, 1, "{} {}", r.out, r.err);
    let o = r
        .out
        .as_object()
        .unwrap_or_else(|| panic!("one JSON object on stdout: {}", r.err));
    assert_eq!(o["cniVersion"], version, "{}", r.out);
    assert!(o["code"].as_u64().is_some(), "{}", r.out);
    let msg = o["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "{needle:?} in {}", r.out);
    assert!(
        o.keys()
            .all(|k| ["cniVersion", "code", "msg", "details"].contains(&k.as_str())),
        "{}",
        r.out
    );
}

/// A second ADD of the same attachment without DEL, and an ADD whose CNI_IFNAME the container
/// already has, fail with an error object and leave what was there alone: the first
/// container's interface, lease and slave, the other interface.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn add_twice_or_onto_a_taken_ifname_fails_and_leaves_what_was_there() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({}));
    let (code, r1) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r1}");
    let again = fx.run("ADD", "c1", &conf, &[]);
    assert_cni_error(&again, "1.0.0", "");
    assert!(fx.has_eth0("c1"));
    assert_eq!(fx.leases(), vec![first_ip(&r1)]);
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());
    assert!(
        fx.ping("c1", "192.0.2.254"),
        "the first ADD's interface still works"
    );

    fx.0.sh("c2", "ip link add eth0 type veth peer name vp0");
    let taken = fx.run("ADD", "c2", &conf, &[]);
    assert_cni_error(&taken, "1.0.0", "already has an interface named eth0");
    let kind = sh(&fx.ns("c2"), "ip -d link show eth0");
    assert!(
        String::from_utf8_lossy(&kind.stdout).contains("veth"),
        "{kind:?}"
    );
    let links = sh(&fx.ns("c2"), "ip -o link show");
    assert_eq!(
        String::from_utf8_lossy(&links.stdout).lines().count(),
        3,
        "lo and the veth pair only: {links:?}"
    );
    assert_eq!(fx.leases(), vec![first_ip(&r1)]);
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());
}

/// CNI_NETNS that is no namespace, is missing, or is the plugin's or the daemon's own: an
/// error object, and nothing made (no slave, no lease).
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn add_into_what_is_not_a_container_namespace_makes_nothing() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({}));
    let file = fx.0.dir().join("not-a-netns");
    std::fs::create_dir_all(fx.0.dir()).unwrap();
    std::fs::write(&file, "").unwrap();
    let host = format!("/run/netns/{}", fx.ns("host"));
    let missing = fx.0.dir().join("missing");
    let dir = fx.0.dir();
    for (netns, needle) in [
        (file.to_str().unwrap(), "CNI_NETNS"),
        (missing.to_str().unwrap(), "CNI_NETNS"),
        (dir.to_str().unwrap(), "CNI_NETNS"),
        ("/proc/self/ns/net", "own network namespace"),
        (host.as_str(), "own network namespace"),
    ] {
        let r = fx.run("ADD", "c1", &conf, &[("CNI_NETNS", netns)]);
        assert_cni_error(&r, "1.0.0", needle);
        assert!(fx.slaves().is_empty(), "{netns}: {:?}", fx.slaves());
        assert!(fx.leases().is_empty(), "{netns}: {:?}", fx.leases());
    }
    assert!(
        fx.0.sh("host", "ip -o link show").lines().count() <= 2,
        "{}",
        fx.0.sh("host", "ip -o link show")
    );
}

/// Failures in the middle of ADD leave nothing behind: no interface in the container, no
/// slave in the daemon, no host-local lease; the container that owns a contested address
/// keeps being served.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn failures_in_the_middle_of_add_leave_nothing_behind() {
    require_env();
    let mut fx = Fx::new();
    fx.0.add_ns("c3");
    let ipam = |extra: Value| {
        let mut i = ipvlan_testkit::host_local_ipam(&fx.0.dir().join("ipam"));
        for (k, v) in extra.as_object().unwrap() {
            i[k] = v.clone();
        }
        i
    };
    // c1 holds 192.0.2.50 (static); host-local then hands c2 the same address.
    let owner =
        fx.conf(json!({"ipam": {"type": "static", "addresses": [{"address": "192.0.2.50/24"}]}}));
    let (code, r) = fx.plugin("ADD", "c1", &owner);
    assert_eq!(code, 0, "{r}");
    let clash = fx
        .conf(json!({"ipam": ipam(json!({"rangeStart": "192.0.2.50", "rangeEnd": "192.0.2.50"}))}));
    let r = fx.run("ADD", "c2", &clash, &[]);
    assert_cni_error(&r, "1.0.0", "192.0.2.50 (owned by slave");
    assert!(!fx.has_eth0("c2"));
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());
    assert!(fx.ping("c1", "192.0.2.254"), "the owner is still served");
    assert!(fx.ping("ext", "192.0.2.50"), "the owner is still reached");

    // A route whose gateway is not on any link cannot be added.
    let unreachable = fx.conf(
        json!({"ipam": ipam(json!({"routes": [{"dst": "198.51.100.0/24", "gw": "203.0.113.1"}]}))}),
    );
    let r = fx.run("ADD", "c3", &unreachable, &[]);
    assert_cni_error(&r, "1.0.0", "198.51.100.0/24 via 203.0.113.1");
    assert!(!fx.has_eth0("c3"));
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());

    // An IPv6 address the LAN has (DAD fails), from host-local.
    let dad = fx.conf(json!({"ipam": {
        "type": "host-local", "dataDir": fx.0.dir().join("ipam"),
        "ranges": [[{"subnet": "2001:db8:1::/64", "rangeStart": "2001:db8:1::fe", "rangeEnd": "2001:db8:1::fe"}]],
    }}));
    let r = fx.run("ADD", "c3", &dad, &[]);
    assert_cni_error(&r, "1.0.0", "duplicate address detection failed");
    assert!(!fx.has_eth0("c3"));
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());
    // The IPAM plugin fails (its range is used up): its code and message, nothing left.
    let (code, r) = fx.plugin(
        "ADD",
        "c3",
        &fx.conf(
            json!({"ipam": ipam(json!({"rangeStart": "192.0.2.49", "rangeEnd": "192.0.2.49"}))}),
        ),
    );
    assert_eq!(code, 0, "{r}");
    let r = fx.run(
        "ADD",
        "c2",
        &fx.conf(
            json!({"ipam": ipam(json!({"rangeStart": "192.0.2.49", "rangeEnd": "192.0.2.49"}))}),
        ),
        &[],
    );
    assert_cni_error(&r, "1.0.0", "IPAM plugin host-local ADD failed");
    assert!(!fx.has_eth0("c2"));
    assert_eq!(fx.slaves().len(), 2, "{:?}", fx.slaves());
    assert_eq!(fx.plugin("DEL", "c3", &fx.conf(json!({}))).0, 0);
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());

    // And after all that, a good ADD into c3 works.
    let (code, r) = fx.plugin("ADD", "c3", &fx.conf(json!({})));
    assert_eq!(code, 0, "{r}");
    assert!(fx.ping("c3", "192.0.2.254"));
}

/// GC as runtimes send it: the tagged CNI 1.1.0 spec (`spec-v1.1.0`) names the still-valid
/// list `cni.dev/attachments` (libcni sends both names since): a runtime that follows it
/// must not lose its valid containers; libcni's "none valid" is `null`; with the daemon down
/// GC fails with an error object and removes nothing.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn gc_reads_the_spec_1_1_0_key_and_null_and_fails_without_the_daemon() {
    require_env();
    let mut fx = Fx::new();
    let conf = fx.conf(json!({"cniVersion": "1.1.0"}));
    let mut results = Vec::new();
    for c in ["c1", "c2"] {
        let (code, r) = fx.plugin("ADD", c, &conf);
        assert_eq!(code, 0, "{r}");
        results.push(first_ip(&r));
    }
    let gc_only = [
        ("CNI_CONTAINERID", ""),
        ("CNI_IFNAME", ""),
        ("CNI_NETNS", ""),
    ];
    // An IPAM plugin that speaks 1.1.0 and keeps what GC gave it.
    let fake = fx.0.dir().join("fake-ipam-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let script = fake.join("fake-ipam");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\nVERSION) echo '{{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}}' ;;\nGC) cat > {}/gc-input.json ;;\nesac\n",
            fake.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut gc = conf.clone();
    gc["ipam"] = json!({"type": "fake-ipam"});
    gc["cni.dev/attachments"] = json!([
        {"containerID": "id-c1", "ifname": "eth0"},
        {"containerID": "id-c2", "ifname": "eth0"},
    ]);
    let path = format!("{}:{CNI_PATH}", fake.display());
    let mut vars = gc_only.to_vec();
    vars.push(("CNI_PATH", &path));
    let r = fx.run("GC", "c1", &gc, &vars);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(r.out.is_null(), "no output on success: {}", r.out);
    assert!(
        fx.has_eth0("c1") && fx.has_eth0("c2"),
        "both valid: {}",
        r.err
    );
    assert_eq!(fx.leases(), results);
    let given: Value =
        serde_json::from_slice(&std::fs::read(fake.join("gc-input.json")).unwrap()).unwrap();
    assert_eq!(
        given["cni.dev/valid-attachments"], gc["cni.dev/attachments"],
        "the IPAM plugin gets the list under the current name too: {given}"
    );

    // With the daemon down: an error object, and nothing is removed.
    fx.0.stop_daemon(false);
    let mut none = conf.clone();
    none["cni.dev/valid-attachments"] = Value::Null;
    let r = fx.run("GC", "c1", &none, &gc_only);
    assert_cni_error(&r, "1.1.0", "ipvlan-rs daemon");
    assert!(fx.has_eth0("c1") && fx.has_eth0("c2"));
    assert_eq!(fx.leases(), results, "no address of a live slave released");
    fx.0.start_daemon();

    // libcni's "no valid attachments" (a nil list) is null: both go.
    let r = fx.run("GC", "c1", &none, &gc_only);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(!fx.has_eth0("c1") && !fx.has_eth0("c2"), "{}", r.err);
    assert!(fx.slaves().is_empty(), "{:?}", fx.slaves());
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
}

/// prevResults of the shapes runtimes and earlier plugins hand over: 0.3.1 with `version`
/// fields, both families, an `interface` index out of range, DNS with keys of its own;
/// IPv6 only. CHECK with the result and with another interface's IPs added passes.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn prev_results_of_each_shape() {
    require_env();
    let fx = Fx::new();
    let mut conf = fx.conf(json!({"cniVersion": "0.3.1"}));
    conf.as_object_mut().unwrap().remove("ipam");
    conf["prevResult"] = json!({
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "m0"}],
        "ips": [
            {"version": "4", "address": "192.0.2.81/24", "gateway": "192.0.2.254", "interface": 0},
            {"version": "6", "address": "2001:db8:1::81/64", "gateway": "2001:db8:1::fe", "interface": 7},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        "dns": {"nameservers": ["192.0.2.53"], "x-vendor": {"a": 1}},
    });
    let r = fx.run("ADD", "c1", &conf, &[]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    let res = r.out;
    assert_eq!(res["cniVersion"], "0.3.1");
    assert_eq!(res["ips"][0]["version"], "4", "{res}");
    assert_eq!(res["ips"][1]["version"], "6", "{res}");
    assert_eq!(res["ips"][1]["interface"], 0, "{res}");
    assert_eq!(res["dns"]["nameservers"][0], "192.0.2.53");
    assert!(fx.ping("c1", "192.0.2.254") && fx.ping("c1", "2001:db8:1::fe"));
    let r6 = sh(&fx.ns("c1"), "ip -6 route show default");
    assert!(
        String::from_utf8_lossy(&r6.stdout).contains("via 2001:db8:1::fe dev eth0"),
        "{r6:?}"
    );

    let mut chk = fx.conf(json!({"cniVersion": "0.4.0"}));
    chk.as_object_mut().unwrap().remove("ipam");
    chk["prevResult"] = res.clone();
    let r = fx.run("CHECK", "c1", &chk, &[]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    // A later plugin of the chain added a host-side interface with an address of its own.
    let mut more = res.clone();
    more["interfaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "veth-host"}));
    more["ips"]
        .as_array_mut()
        .unwrap()
        .push(json!({"version": "4", "address": "198.51.100.9/24", "interface": 1}));
    chk["prevResult"] = more;
    let r = fx.run("CHECK", "c1", &chk, &[]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);

    // IPv6 only.
    let mut v6 = fx.conf(json!({}));
    v6.as_object_mut().unwrap().remove("ipam");
    v6["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "m0"}],
        "ips": [{"address": "2001:db8:1::82/64", "interface": 0}],
    });
    let r = fx.run("ADD", "c2", &v6, &[]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(fx.ping("c2", "2001:db8:1::fe"));
    assert!(fx.ping("c2", "2001:db8:1::81"), "c2 → c1 over IPv6");
}

/// STATUS with an IPAM plugin that is not on CNI_PATH: ADD cannot be served, so code 50
/// naming it. DEL with the daemon down and no CNI_NETNS (the runtime lost the namespace)
/// succeeds and releases the lease; a DEL whose configuration does not parse is an error
/// object in its own version.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn status_without_ipam_and_del_without_daemon_or_netns() {
    require_env();
    let mut fx = Fx::new();
    let conf = fx.conf(json!({"cniVersion": "1.1.0"}));
    let mut gone = conf.clone();
    gone["ipam"]["type"] = json!("no-such-ipam");
    let r = fx.run("STATUS", "c1", &gone, &[]);
    assert_cni_error(&r, "1.1.0", "no-such-ipam");
    assert_eq!(r.out["code"], 50, "{}", r.out);

    let (code, res) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{res}");
    let bad = fx.run(
        "DEL",
        "c1",
        &fx.conf(json!({"cniVersion": "1.1.0", "mode": "l9"})),
        &[],
    );
    assert_cni_error(&bad, "1.1.0", "unknown ipvlan mode");
    fx.0.stop_daemon(false);
    let r = fx.run("DEL", "c1", &conf, &[("CNI_NETNS", "")]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(r.out.is_null(), "{}", r.out);
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
    fx.0.start_daemon();
}

/// ADD, DEL and CHECK of different containers of one network at once: each gets what it
/// asked for, and afterwards the daemon, the namespaces and host-local agree.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn concurrent_add_del_check_of_one_network_agree_afterwards() {
    require_env();
    let mut fx = Fx::new();
    for n in 3..=8 {
        fx.0.add_ns(&format!("c{n}"));
    }
    let conf = fx.conf(json!({}));
    let mut added = std::collections::HashMap::new();
    for n in 1..=4 {
        let (code, r) = fx.plugin("ADD", &format!("c{n}"), &conf);
        assert_eq!(code, 0, "{r}");
        added.insert(n, r);
    }
    let fx = std::sync::Arc::new(fx);
    let outcomes: Vec<(String, i32, Value)> = std::thread::scope(|s| {
        let mut jobs = Vec::new();
        for (cmd, n) in [
            ("DEL", 1),
            ("DEL", 2),
            ("ADD", 5),
            ("ADD", 6),
            ("ADD", 7),
            ("ADD", 8),
            ("CHECK", 3),
            ("CHECK", 4),
        ] {
            let fx = fx.clone();
            let mut c = conf.clone();
            if cmd == "CHECK" {
                c["prevResult"] = added[&n].clone();
            }
            jobs.push(s.spawn(move || {
                let (code, out) = fx.plugin(cmd, &format!("c{n}"), &c);
                (format!("{cmd} c{n}"), code, out)
            }));
        }
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let failed: Vec<_> = outcomes.iter().filter(|(_, code, _)| *code != 0).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for n in 1..=8 {
        assert_eq!(fx.has_eth0(&format!("c{n}")), n > 2, "c{n}");
    }
    assert_eq!(fx.slaves().len(), 6, "{:?}", fx.slaves());
    assert_eq!(fx.leases().len(), 6, "{:?}", fx.leases());
    for n in 3..=8 {
        assert!(fx.ping(&format!("c{n}"), "192.0.2.254"), "c{n}");
    }
}

/// Writes an executable shell script `name` into `dir` (made if needed).
fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// GC releases the addresses of every stale attachment: of a container whose namespace went
/// without DEL (the daemon has dropped its slave, host-local still holds its lease), and with
/// an IPAM plugin that speaks 1.1.0 but does nothing on GC (upstream host-local since 1.5:
/// `/* FIXME GC */`), of the stale slaves GC removes.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn gc_releases_the_leases_of_every_stale_attachment() {
    require_env();
    let mut fx = Fx::new();
    fx.0.add_ns("c3");
    fx.0.add_ns("c4");
    let conf = fx.conf(json!({"cniVersion": "1.1.0"}));
    let mut ips = std::collections::HashMap::new();
    for c in ["c1", "c2", "c3"] {
        let (code, r) = fx.plugin("ADD", c, &conf);
        assert_eq!(code, 0, "{r}");
        ips.insert(c, first_ip(&r));
    }
    // c2's namespace goes without DEL: the daemon drops its slave.
    fx.0.del_ns("c2");
    assert!(
        ipvlan_testkit::wait(Duration::from_secs(5), || fx.slaves().len() == 2),
        "{:?}",
        fx.slaves()
    );
    let gc_only = [
        ("CNI_CONTAINERID", ""),
        ("CNI_IFNAME", ""),
        ("CNI_NETNS", ""),
    ];
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "id-c1", "ifname": "eth0"}]);
    let r = fx.run("GC", "c1", &gc, &gc_only);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(!fx.has_eth0("c3"), "c3's slave removed");
    assert_eq!(
        fx.leases(),
        vec![ips["c1"].clone()],
        "c2's and c3's released"
    );

    // An IPAM plugin that speaks 1.1.0 and whose GC does nothing: host-local behind it.
    let bin = fx.0.dir().join("newer-ipam");
    script(
        &bin,
        "host-local-1.1",
        "case \"$CNI_COMMAND\" in\n\
         VERSION) echo '{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"1.0.0\",\"1.1.0\"]}' ;;\n\
         GC|STATUS) exit 0 ;;\n\
         *) sed 's/\"cniVersion\":\"1.1.0\"/\"cniVersion\":\"1.0.0\"/' | exec /usr/lib/cni/host-local ;;\n\
         esac\n",
    );
    let path = format!("{}:{CNI_PATH}", bin.display());
    let mut newer = conf.clone();
    newer["ipam"]["type"] = json!("host-local-1.1");
    let r = fx.run("ADD", "c4", &newer, &[("CNI_PATH", &path)]);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert_eq!(fx.leases().len(), 2, "{:?}", fx.leases());
    let mut gc = newer.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "id-c1", "ifname": "eth0"}]);
    let mut vars = gc_only.to_vec();
    vars.push(("CNI_PATH", &path));
    let r = fx.run("GC", "c1", &gc, &vars);
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(!fx.has_eth0("c4"), "c4's slave removed");
    assert_eq!(fx.leases(), vec![ips["c1"].clone()], "c4's released");
    assert!(fx.ping("c1", "192.0.2.254"), "c1 untouched");
}

/// DEL never deletes in the plugin's own or the daemon's namespace (a careless runtime's
/// CNI_NETNS, with CNI_IFNAME naming the master or a host interface): code 8, as libcni's
/// `skel` answers, and the interface stays.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn del_never_deletes_in_the_plugins_or_the_daemons_namespace() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({}));
    let host = format!("/run/netns/{}", fx.ns("host"));
    let r = fx.run(
        "DEL",
        "c1",
        &conf,
        &[("CNI_NETNS", &host), ("CNI_IFNAME", "m0")],
    );
    let m0_there = fx.0.try_sh("host", "ip link show m0").status.success();
    assert_cni_error(&r, "1.0.0", "own network namespace");
    assert_eq!(r.out["code"], 8, "{}", r.out);
    assert!(m0_there, "the master is still there");

    // The plugin run inside c1 (as a runtime in that namespace would), CNI_NETNS its own.
    fx.0.sh("c1", "ip link add hx0 type veth peer name hx1");
    let out = ipvlan_testkit::run_with_input(
        Command::new("ip")
            .args(["netns", "exec", &fx.ns("c1"), PLUGIN])
            .env("CNI_COMMAND", "DEL")
            .env("CNI_CONTAINERID", "id-c1")
            .env("CNI_NETNS", "/proc/self/ns/net")
            .env("CNI_IFNAME", "hx0")
            .env("CNI_PATH", CNI_PATH),
        conf.to_string().as_bytes(),
    );
    let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err["code"], 8, "{err}");
    assert!(
        fx.0.try_sh("c1", "ip link show hx0").status.success(),
        "hx0 is still there"
    );

    // A CNI_NETNS that is no namespace any more (the runtime's unmounted bind mount, an
    // empty file): nothing can be left in it, DEL succeeds and the slave goes.
    let (code, r) = fx.plugin("ADD", "c2", &conf);
    assert_eq!(code, 0, "{r}");
    let leftover = fx.0.dir().join("unmounted-netns");
    std::fs::write(&leftover, "").unwrap();
    let r = fx.run(
        "DEL",
        "c2",
        &conf,
        &[("CNI_NETNS", leftover.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{} {}", r.out, r.err);
    assert!(fx.slaves().is_empty(), "{:?}", fx.slaves());
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
}

/// Two containers asking for one address at once (a static IPAM, say): exactly one gets it
/// and is served, the other fails naming the owner and leaves nothing.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn two_adds_for_one_address_at_once_one_wins() {
    require_env();
    let fx = std::sync::Arc::new(Fx::new());
    let conf =
        fx.conf(json!({"ipam": {"type": "static", "addresses": [{"address": "192.0.2.60/24"}]}}));
    let runs: Vec<(String, Run)> = std::thread::scope(|s| {
        let jobs: Vec<_> = ["c1", "c2"]
            .into_iter()
            .map(|c| {
                let (fx, conf) = (fx.clone(), conf.clone());
                s.spawn(move || (c.to_owned(), fx.run("ADD", c, &conf, &[])))
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    let won: Vec<&String> = runs
        .iter()
        .filter(|(_, r)| r.code == 0)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        runs.iter()
            .map(|(c, r)| format!("{c}: {} {}", r.out, r.err))
            .collect::<Vec<_>>()
    );
    let (lost, r) = runs.iter().find(|(_, r)| r.code != 0).unwrap();
    assert_cni_error(r, "1.0.0", "owned by slave");
    assert!(!fx.has_eth0(lost));
    assert_eq!(fx.slaves().len(), 1, "{:?}", fx.slaves());
    assert!(fx.ping(won[0], "192.0.2.254"), "the winner is served");
    assert!(fx.ping("ext", "192.0.2.60"));
}

/// l3 and l3s containers with both families (host-local with two ranges of subnets routed
/// to the host, as the e2e l3 tests set them up): ADD returns with the addresses usable (no
/// DAD on a NOARP slave), CHECK passes, DEL releases both leases.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn l3_and_l3s_with_both_families() {
    require_env();
    let fx = Fx::new();
    fx.0.sh(
        "ext",
        "ip route add 198.51.100.0/24 via 192.0.2.1 && ip -6 route add 2001:db8:2::/64 via 2001:db8:1::1",
    );
    for (c, mode) in [("c1", "l3"), ("c2", "l3s")] {
        let conf = fx.conf(json!({"mode": mode, "ipam": {
            "type": "host-local", "dataDir": fx.0.dir().join("ipam"),
            "ranges": [
                [{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.20", "rangeEnd": "198.51.100.30"}],
                [{"subnet": "2001:db8:2::/64", "rangeStart": "2001:db8:2::20", "rangeEnd": "2001:db8:2::30"}],
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        }}));
        let r = fx.run("ADD", c, &conf, &[]);
        assert_eq!(r.code, 0, "{mode}: {} {}", r.out, r.err);
        assert_eq!(r.out["ips"].as_array().unwrap().len(), 2, "{}", r.out);
        let mut chk = conf.clone();
        chk["prevResult"] = r.out.clone();
        let k = fx.run("CHECK", c, &chk, &[]);
        assert_eq!(k.code, 0, "{mode}: {} {}", k.out, k.err);
        let v6 = r.out["ips"][1]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        assert!(fx.ping("ext", &first_ip(&r.out)), "{mode}: ext → v4");
        assert!(fx.ping("ext", &v6), "{mode}: ext → {v6}");
        assert_eq!(fx.plugin("DEL", c, &conf).0, 0);
    }
    assert!(fx.leases().is_empty(), "{:?}", fx.leases());
    assert!(fx.slaves().is_empty(), "{:?}", fx.slaves());
}

/// CNI_NETNS deleted by the runtime while ADD waits (here for an address another container
/// holds): ADD fails with an error object, and no slave or lease is left.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn netns_deleted_in_the_middle_of_add_leaves_nothing() {
    require_env();
    let fx = std::sync::Arc::new(std::sync::Mutex::new(Fx::new()));
    let (owner, clash) = {
        let f = fx.lock().unwrap();
        let mut ipam = ipvlan_testkit::host_local_ipam(&f.0.dir().join("ipam"));
        ipam["rangeStart"] = json!("192.0.2.50");
        ipam["rangeEnd"] = json!("192.0.2.50");
        (
            f.conf(
                json!({"ipam": {"type": "static", "addresses": [{"address": "192.0.2.50/24"}]}}),
            ),
            f.conf(json!({ "ipam": ipam })),
        )
    };
    let (code, r) = fx.lock().unwrap().plugin("ADD", "c1", &owner);
    assert_eq!(code, 0, "{r}");
    let netns = format!("/run/netns/{}", fx.lock().unwrap().ns("c2"));
    let mut cmd = Command::new(PLUGIN);
    cmd.env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "id-c2")
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(clash.to_string().as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    fx.lock().unwrap().0.del_ns("c2");
    let out = child.wait_with_output().unwrap();
    let err: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err["msg"].as_str().is_some(), "{err}");
    let f = fx.lock().unwrap();
    assert!(
        ipvlan_testkit::wait(Duration::from_secs(3), || f.slaves().len() == 1),
        "{:?}",
        f.slaves()
    );
    assert!(f.leases().is_empty(), "{:?}", f.leases());
    assert!(f.ping("c1", "192.0.2.254"), "the owner is still served");
}

/// `"hostreach": true` reaches the daemon: the host (the daemon's, the master's namespace)
/// and the container reach each other, even on a `private` port (the host is not a slave);
/// DEL of the last container removes the port with its host device and its routes.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, the host-local IPAM plugin"]
fn hostreach_lets_the_host_and_the_container_talk() {
    require_env();
    let fx = Fx::new();
    let conf = fx.conf(json!({"hostreach": true, "flag": "private"}));
    let (code, r1) = fx.plugin("ADD", "c1", &conf);
    assert_eq!(code, 0, "{r1}");
    let ip = first_ip(&r1);
    let l =
        fx.0.link("eth0")
            .or_else(|| fx.0.links().into_iter().next())
            .unwrap();
    assert_eq!(l["hostreach"], true, "{l}");
    let routes = |fx: &Fx| fx.0.sh("host", "ip route show proto 73");
    assert!(
        ipvlan_testkit::wait(std::time::Duration::from_secs(5), || routes(&fx)
            .contains(&ip)),
        "{}",
        routes(&fx)
    );
    assert!(
        fx.ping("host", &ip),
        "host → container\n{}",
        fx.0.daemon_log()
    );
    assert!(fx.ping("c1", "192.0.2.1"), "container → host");
    assert_eq!(fx.plugin("DEL", "c1", &conf).0, 0);
    assert!(
        ipvlan_testkit::wait(std::time::Duration::from_secs(5), || routes(&fx)
            .trim()
            .is_empty()
            && !fx.0.sh("host", "ip -o link").contains("ipvlh")),
        "{}",
        fx.0.sh("host", "ip -o link; ip route show proto 73")
    );
}
