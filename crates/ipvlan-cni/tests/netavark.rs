//! The netavark plugin `ipvlan-rs-netavark` against real namespaces and a real daemon: driven
//! with the JSON netavark sends it (netavark's `src/network/plugin.rs`: the `Network` for
//! `create`, a `NetworkPluginExec` for `setup`/`teardown`, the netns path as argument), and
//! driven by netavark itself (`netavark --plugin-directory DIR setup NETNS`, as netavark's
//! own `test/500-plugin.bats` does, without podman).
//!
//! netavark (≥ 1.6, with plugins) is not packaged in Debian 12: `scripts/test` builds it with
//! `cargo install netavark --version 2.1.0 --locked --root target/netavark`; `NETAVARK` names
//! another binary.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs-netavark");
const DRIVER: &str = "ipvlan-rs-netavark";
const NET_ID: &str = "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9";

fn daemon_bin() -> PathBuf {
    Path::new(PLUGIN).with_file_name("ipvlan")
}

/// Fails the calling test, saying why, where it cannot run (the tests are `#[ignore]`d: only
/// `--include-ignored` asks for them, so a missing prerequisite is an error).
fn require_env() {
    if let Some(why) = ipvlan_testkit::unsupported() {
        panic!("this netavark plugin test needs root, iproute2, nftables and TUN, and cannot run here: {why}");
    }
    if !daemon_bin().exists() {
        panic!(
            "{} is not built (run cargo build --workspace first)",
            daemon_bin().display()
        );
    }
}

/// netavark: `NETAVARK`, else the one `scripts/test` builds into `target/netavark/bin`.
fn netavark_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NETAVARK").filter(|p| !p.is_empty()) {
        return p.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/netavark/bin/netavark")
}

/// Runs `cmd` with `input` on stdin: (exit code, stdout as JSON or `Null` when empty, stderr).
fn run_json(cmd: &mut Command, input: &Value) -> (i32, Value, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that needs no input (`info`) may exit before reading it.
    let sent = child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes());
    if let Err(e) = sent {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}"))
    };
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared fixture (daemon in `host` with master `m0`, external host 192.0.2.254 in `ext`)
/// plus container namespaces `c1` and `c2`.
struct Fx(ipvlan_testkit::Fx);

impl Fx {
    fn new() -> Fx {
        let mut net = ipvlan_testkit::Fx::new(daemon_bin());
        net.add_ns("c1");
        net.add_ns("c2");
        Fx(net)
    }

    fn netns(&self, c: &str) -> String {
        format!("/run/netns/{}", self.0.ns(c))
    }

    /// A network as `podman network create -d ipvlan-rs-netavark --subnet 192.0.2.0/24
    /// --gateway 192.0.2.254 -o …` hands it to the plugin (netavark's `Network`, `None`
    /// fields left out), with `options` merged over `parent=m0` and this daemon's socket.
    fn network(&self, options: Value) -> Value {
        let mut o = json!({ "parent": "m0", "socket": self.0.socket });
        // The slave backend the suite runs with (IPVLAN_TEST_BACKEND).
        if let Some(b) = &self.0.backend {
            o["backend"] = json!(b);
        }
        for (k, v) in options.as_object().unwrap() {
            if v.is_null() {
                o.as_object_mut().unwrap().remove(k);
            } else {
                o[k] = v.clone();
            }
        }
        json!({
            "name": "ipvl-test",
            "id": NET_ID,
            "driver": DRIVER,
            "subnets": [ { "subnet": "192.0.2.0/24", "gateway": "192.0.2.254" } ],
            "ipv6_enabled": false,
            "internal": false,
            "dns_enabled": false,
            "ipam_options": { "driver": "host-local" },
            "options": o,
        })
    }

    /// `setup`'s and `teardown`'s input as netavark's `PluginDriver::exec_plugin` writes it.
    fn exec_input(&self, network: &Value, c: &str, ip: &str) -> Value {
        json!({
            "container_id": format!("{c}-0123456789abcdef"),
            "container_name": c,
            "port_mappings": null,
            "network": network,
            "network_options": {
                "aliases": null,
                "interface_name": "eth0",
                "static_ips": [ip],
                "static_mac": null,
                "options": null,
            },
        })
    }

    fn plugin(&self, args: &[&str], input: &Value) -> (i32, Value, String) {
        run_json(Command::new(PLUGIN).args(args), input)
    }

    fn ping(&self, from: &str, ip: &str) -> bool {
        self.0.ping(from, ip, 2)
    }

    fn has_eth0(&self, c: &str) -> bool {
        self.0.try_sh(c, "ip link show eth0").status.success()
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn plugin_create_setup_ping_teardown() {
    require_env();
    let fx = Fx::new();
    // info: version and API version (netavark's plugin::Info).
    let (code, info, _) = fx.plugin(&["info"], &Value::Null);
    assert_eq!(code, 0);
    assert_eq!(info["api_version"], "1.0.0");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["description"].as_str().unwrap().contains("ipvlan"));
    // create: the defaults filled in; name, ID and driver unchanged.
    let (code, net, err) = fx.plugin(&["create"], &fx.network(json!({})));
    assert_eq!(code, 0, "{net} {err}");
    assert_eq!(net["network_interface"], "m0");
    assert_eq!(net["options"]["mode"], "l2");
    assert_eq!(
        (&net["name"], &net["id"], &net["driver"]),
        (&json!("ipvl-test"), &json!(NET_ID), &json!(DRIVER))
    );
    assert_eq!(net["subnets"][0]["gateway"], "192.0.2.254");
    // setup in two containers: the status block netavark expects.
    let in1 = fx.exec_input(&net, "c1", "192.0.2.10");
    let in2 = fx.exec_input(&net, "c2", "192.0.2.11");
    let (code, s1, err) = fx.plugin(&["setup", &fx.netns("c1")], &in1);
    assert_eq!(code, 0, "{s1} {err}");
    let (code, s2, err) = fx.plugin(&["setup", &fx.netns("c2")], &in2);
    assert_eq!(code, 0, "{s2} {err}");
    let eth0 = &s1["interfaces"]["eth0"];
    assert_eq!(
        eth0["mac_address"], "02:00:00:00:00:01",
        "l2: the master's MAC"
    );
    assert_eq!(
        eth0["subnets"],
        json!([{ "ipnet": "192.0.2.10/24", "gateway": "192.0.2.254" }])
    );
    assert_eq!(
        s2["interfaces"]["eth0"]["subnets"][0]["ipnet"],
        "192.0.2.11/24"
    );
    // The slaves are the daemon's, each with its container's address.
    let links = fx.0.links();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links
            .iter()
            .all(|l| l["mode"] == "l2" && l["master"] == "m0"),
        "{links:?}"
    );
    // Each recorded with its attachment (network name, container id, interface).
    for c in ["c1", "c2"] {
        let id = format!("{c}-0123456789abcdef");
        assert!(
            links.iter().any(|l| l["attachment"]
                == json!({"network": "ipvl-test", "containerID": id, "ifname": "eth0"})),
            "{c}: {links:?}"
        );
    }
    assert!(
        links.iter().any(|l| l["addresses"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("192.0.2.10")))),
        "{links:?}"
    );
    // In the container: the address and a default route through the gateway.
    let routes = fx.0.sh("c1", "ip -4 route show default");
    assert!(routes.contains("via 192.0.2.254 dev eth0"), "{routes}");
    // Served at once (setup waits for it): the containers reach each other and the outside.
    assert!(fx.ping("c1", "192.0.2.11"), "c1 → c2");
    assert!(fx.ping("c2", "192.0.2.254"), "c2 → external");
    assert!(fx.ping("ext", "192.0.2.10"), "external → c1");
    // teardown: nothing printed, the interface and the slave gone; again: still success.
    let (code, out, err) = fx.plugin(&["teardown", &fx.netns("c1")], &in1);
    assert_eq!((code, &out), (0, &Value::Null), "{err}");
    assert!(!fx.has_eth0("c1"), "interface removed");
    assert_eq!(fx.0.links().len(), 1);
    let (code, out, err) = fx.plugin(&["teardown", &fx.netns("c1")], &in1);
    assert_eq!(
        (code, &out),
        (0, &Value::Null),
        "teardown is idempotent: {err}"
    );
    // teardown with the daemon unreachable (a socket nobody listens on): the plugin deletes
    // the interface in the container itself and succeeds.
    let mut lost = in2.clone();
    lost["network"]["options"]["socket"] = json!(fx.0.dir().join("nobody.sock"));
    let (code, _, err) = fx.plugin(&["teardown", &fx.netns("c2")], &lost);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("deleting eth0"), "says what it does: {err}");
    assert!(!fx.has_eth0("c2"), "interface removed without the daemon");
    // ... also when the container's namespace is gone already.
    let (code, _, err) = fx.plugin(&["teardown", "/proc/does-not-exist/ns/net"], &lost);
    assert_eq!(code, 0, "{err}");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn plugin_errors_are_json_with_a_non_zero_exit() {
    require_env();
    let fx = Fx::new();
    let expect_err = |args: &[&str], input: &Value, needle: &str| {
        let (code, out, _) = fx.plugin(args, input);
        assert_eq!(code, 1, "{args:?}: {out}");
        let msg = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
        assert!(msg.contains(needle), "{args:?}: {msg:?} lacks {needle:?}");
    };
    let create = ["create"];
    expect_err(
        &create,
        &fx.network(json!({ "colour": "blue" })),
        "unknown option \"colour\"",
    );
    expect_err(
        &create,
        &fx.network(json!({ "mode": "l4" })),
        "unknown ipvlan mode \"l4\"",
    );
    expect_err(
        &create,
        &fx.network(json!({ "parent": "nosuch0" })),
        "parent interface nosuch0 does not exist",
    );
    // No parent and no default route in the daemon's namespace to take one from.
    expect_err(
        &create,
        &fx.network(json!({ "parent": null })),
        "no parent given",
    );
    let mut no_subnet = fx.network(json!({}));
    no_subnet.as_object_mut().unwrap().remove("subnets");
    expect_err(&create, &no_subnet, "a subnet is needed");
    expect_err(&create, &json!({ "name": "x" }), "cannot decode");
    expect_err(
        &["frobnicate"],
        &Value::Null,
        "unknown subcommand: frobnicate",
    );
    expect_err(&["setup"], &Value::Null, "netns path argument is missing");
    // setup refuses what it cannot do, and leaves nothing behind.
    let net = fx.network(json!({}));
    let c1 = fx.netns("c1");
    let mut bad = fx.exec_input(&net, "c1", "198.51.100.7");
    expect_err(&["setup", &c1], &bad, "198.51.100.7 is in none");
    bad = fx.exec_input(&net, "c1", "192.0.2.10");
    bad["network_options"]["static_mac"] = json!("02:00:00:00:00:42");
    expect_err(&["setup", &c1], &bad, "static MAC");
    bad = fx.exec_input(
        &fx.network(json!({ "parent": "nosuch0" })),
        "c1",
        "192.0.2.10",
    );
    expect_err(&["setup", &c1], &bad, "parent interface nosuch0");
    // An address another container already has: the daemon does not serve it twice, so
    // setup fails after its wait and removes its slave.
    let first = fx.exec_input(&net, "c2", "192.0.2.10");
    let (code, out, err) = fx.plugin(&["setup", &fx.netns("c2")], &first);
    assert_eq!(code, 0, "{out} {err}");
    let dup = fx.exec_input(&net, "c1", "192.0.2.10");
    expect_err(&["setup", &c1], &dup, "does not serve 192.0.2.10");
    assert!(!fx.has_eth0("c1"), "nothing left in c1");
    assert_eq!(fx.0.links().len(), 1, "only c2's slave is left");
    // With a default route in the daemon's namespace, create takes its device.
    fx.0.sh("host", "ip route add default via 192.0.2.254 dev m0");
    let (code, n, err) = fx.plugin(&["create"], &fx.network(json!({ "parent": null })));
    assert_eq!(code, 0, "{n} {err}");
    assert_eq!(n["network_interface"], "m0");
}

/// netavark itself runs the plugin: `netavark create` (the plugin validates and fills in the
/// network), `setup` into two containers (netavark's answer: network name → status block),
/// the containers reach each other and the outside, `teardown` removes the interfaces.
/// netavark runs in this process's namespace with firewall driver `none` and its config
/// directory in the fixture's own directory: it touches no firewall and no host file.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN, netavark (built by scripts/test into target/netavark)"]
fn netavark_drives_the_plugin() {
    require_env();
    let netavark = netavark_bin();
    if !netavark.exists() {
        panic!(
            "netavark is missing at {}: build it with `cargo install netavark --version 2.1.0 --locked --root target/netavark` (needs protoc, Debian protobuf-compiler; scripts/test does this) or set NETAVARK",
            netavark.display()
        );
    }
    let fx = Fx::new();
    let plugins = fx.0.dir().join("netavark-plugins");
    let config = fx.0.dir().join("netavark-config");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    std::os::unix::fs::symlink(PLUGIN, plugins.join(DRIVER)).unwrap();
    let nv = |args: &[&str], input: &Value| {
        let mut cmd = Command::new(&netavark);
        cmd.env("NETAVARK_FW", "none")
            // No firewalld over D-Bus (netavark's test helpers do the same).
            .env("DBUS_SYSTEM_BUS_ADDRESS", "")
            .arg("--firewall-driver")
            .arg("none")
            .arg("--config")
            .arg(&config)
            .arg("--plugin-directory")
            .arg(&plugins)
            .args(args);
        run_json(&mut cmd, input)
    };
    // netavark create (netavark ≥ 2.0 runs the plugin's create itself).
    let create = json!({
        "network": fx.network(json!({})),
        "used": { "interfaces": [], "names": {}, "subnets": [] },
        "options": { "subnet_pools": [], "default_interface_name": null, "check_used_subnets": false },
    });
    let (code, net, err) = nv(&["create"], &create);
    let net = if code == 0 {
        assert_eq!(net["network_interface"], "m0", "{net}");
        assert_eq!(net["options"]["mode"], "l2", "{net}");
        net
    } else {
        // netavark before 2.0 has no `create`: podman ran the plugin's. Do as it did.
        eprintln!("netavark create: {net} {err}; running the plugin's create");
        let (code, net, err) = fx.plugin(&["create"], &fx.network(json!({})));
        assert_eq!(code, 0, "{net} {err}");
        net
    };
    // setup, as podman calls it: NetworkOptions with the network under its name.
    let opts = |c: &str, ip: &str| {
        json!({
            "container_id": format!("{c}-fedcba9876543210"),
            "container_name": c,
            "networks": { "ipvl-test": { "interface_name": "eth0", "static_ips": [ip] } },
            "network_info": { "ipvl-test": net },
        })
    };
    let (o1, o2) = (opts("c1", "192.0.2.20"), opts("c2", "192.0.2.21"));
    let (code, s1, err) = nv(&["setup", &fx.netns("c1")], &o1);
    assert_eq!(code, 0, "{s1} {err}");
    let (code, s2, err) = nv(&["setup", &fx.netns("c2")], &o2);
    assert_eq!(code, 0, "{s2} {err}");
    assert_eq!(
        s1["ipvl-test"]["interfaces"]["eth0"]["subnets"],
        json!([{ "ipnet": "192.0.2.20/24", "gateway": "192.0.2.254" }]),
        "{s1}"
    );
    assert_eq!(
        s2["ipvl-test"]["interfaces"]["eth0"]["mac_address"],
        "02:00:00:00:00:01"
    );
    assert!(fx.ping("c1", "192.0.2.21"), "c1 → c2");
    assert!(fx.ping("c2", "192.0.2.254"), "c2 → external");
    assert!(fx.ping("ext", "192.0.2.20"), "external → c1");
    // teardown through netavark: no output, interfaces and slaves gone.
    for (c, o) in [("c1", &o1), ("c2", &o2)] {
        let (code, out, err) = nv(&["teardown", &fx.netns(c)], o);
        assert_eq!((code, &out), (0, &Value::Null), "{err}");
        assert!(!fx.has_eth0(c), "{c}: interface removed");
    }
    assert!(
        ipvlan_testkit::wait(Duration::from_secs(2), || fx.0.links().is_empty()),
        "{:?}",
        fx.0.links()
    );
    // A plugin error reaches netavark's caller as netavark's JSON error, naming the plugin.
    let mut bad = opts("c1", "192.0.2.20");
    bad["network_info"]["ipvl-test"]["options"]["parent"] = json!("nosuch0");
    bad["network_info"]["ipvl-test"]["network_interface"] = json!("nosuch0");
    let (code, out, _) = nv(&["setup", &fx.netns("c1")], &bad);
    assert_ne!(code, 0);
    let msg = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(
        msg.contains(DRIVER) && msg.contains("parent interface nosuch0"),
        "{msg}"
    );
}
