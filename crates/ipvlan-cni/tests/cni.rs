//! The plugin run as a container runtime runs it (CNI_* variables, configuration on stdin)
//! against real namespaces and a real daemon.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");
static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

fn daemon_bin() -> PathBuf {
    Path::new(PLUGIN).with_file_name("ipvlan")
}

fn unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
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

struct Fx {
    tag: String,
    dir: PathBuf,
    daemon: Option<Child>,
}

fn sh(ns: &str, cmd: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .unwrap()
}

impl Fx {
    fn new() -> Fx {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("cni{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        let fx = Fx {
            tag,
            dir,
            daemon: None,
        };
        for n in ["host", "ext", "c1", "c2"] {
            assert!(Command::new("ip")
                .args(["netns", "add", &fx.ns(n)])
                .status()
                .unwrap()
                .success());
            sh(&fx.ns(n), "ip link set lo up");
        }
        let (host, ext) = (fx.ns("host"), fx.ns("ext"));
        assert!(Command::new("ip")
            .args([
                "-n",
                &host,
                "link",
                "add",
                "m0",
                "address",
                "02:00:00:00:00:01",
                "type",
                "veth",
                "peer",
                "name",
                "e0",
                "netns",
                &ext
            ])
            .status()
            .unwrap()
            .success());
        sh(&host, "ip link set m0 up");
        sh(
            &ext,
            "ip link set e0 up && ip addr add 192.0.2.254/24 dev e0",
        );
        let mut fx = fx;
        let log = std::fs::File::create(fx.dir.join("daemon.log")).unwrap();
        fx.daemon = Some(
            Command::new("ip")
                .args(["netns", "exec", &host])
                .arg(daemon_bin())
                .args(["daemon", "--socket"])
                .arg(fx.dir.join("s.sock"))
                .arg("--state-dir")
                .arg(fx.dir.join("state"))
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let t = Instant::now();
        while !fx.dir.join("s.sock").exists() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        fx
    }

    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.tag)
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "ipvl-test",
            "type": "ipvlan-rs",
            "master": "m0",
            "mode": "l2",
            "socket": self.dir.join("s.sock"),
            "ipam": {
                "type": "host-local",
                "subnet": "192.0.2.0/24",
                "rangeStart": "192.0.2.100",
                "rangeEnd": "192.0.2.150",
                "gateway": "192.0.2.254",
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.dir.join("ipam"),
            }
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

impl Drop for Fx {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SAFETY: signalling the daemon we started, by its PID.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "{}",
                std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
            );
        }
        for n in ["host", "ext", "c1", "c2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn add_check_del_two_containers() {
    if let Some(why) = unsupported() {
        eprintln!("SKIP: CNI tests: {why}");
        return;
    }
    let fx = Fx::new();
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
    let a1 = r1["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let a2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
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
    let _ = Command::new("ip")
        .args(["netns", "del", &fx.ns("c2")])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fx.plugin("DEL", "c2", &conf).0, 0);
}

#[test]
fn version_and_bad_configs_give_cni_errors() {
    if let Some(why) = unsupported() {
        eprintln!("SKIP: CNI tests: {why}");
        return;
    }
    let fx = Fx::new();
    let (code, v) = fx.plugin("VERSION", "c1", &json!({"cniVersion": "1.0.0"}));
    assert_eq!(code, 0);
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
