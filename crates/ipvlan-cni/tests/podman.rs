//! A real container engine: podman with its CNI backend, two containers from a local image (a
//! busybox-static root filesystem imported with `podman import`, no registry) on an ipvlan-rs
//! network, pinging each other and an external namespace. Ignored unless asked for
//! (`cargo test -- --include-ignored`); asked for where podman cannot run, it fails and says why.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");

fn unsupported() -> Option<String> {
    if let Some(why) = ipvlan_testkit::unsupported() {
        return Some(why);
    }
    if let Some(why) = ipvlan_testkit::missing(&[
        ("podman", "podman"),
        ("runc", "runc"),
        ("busybox", "busybox-static"),
    ]) {
        return Some(why);
    }
    if !Path::new("/usr/lib/cni/host-local").exists() {
        return Some("host-local is missing (containernetworking-plugins)".into());
    }
    if !Path::new(PLUGIN).with_file_name("ipvlan").exists() {
        return Some("the ipvlan daemon binary is not built (cargo test --workspace)".into());
    }
    None
}

/// podman's own directories inside the shared fixture's (daemon in `host`, external host in
/// `ext`); dropped before it, so containers go before the daemon and the namespaces.
struct Engine {
    dir: PathBuf,
    net: ipvlan_testkit::Fx,
}

impl Engine {
    /// podman with everything in our own directory: storage, run state, CNI configuration and
    /// plugin directory. runc and cgroupfs because some sandboxes' hybrid cgroups defeat crun;
    /// explicit ulimits because the engine may not raise the defaults here.
    fn podman(&self, args: &[&str]) -> Output {
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--runtime",
                "runc",
            ])
            .args(args)
            .output()
            .unwrap();
        out
    }

    fn run(&self, args: &[&str]) -> String {
        let mut full = vec![
            "run",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ];
        full.extend_from_slice(args);
        let o = self.podman(&full);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "podman {}: {text}\n{}",
            args.join(" "),
            self.daemon_log()
        );
        text
    }

    fn daemon_log(&self) -> String {
        self.net.daemon_log()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
    }
}

fn sh(cmd: &str) {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, podman, runc, busybox-static, host-local"]
fn podman_containers_on_an_ipvlan_rs_network() {
    if let Some(why) = unsupported() {
        panic!("this test needs root, iproute2, nftables, TUN, podman, runc, busybox-static and host-local, and cannot run here: {why}");
    }
    let net = ipvlan_testkit::Fx::new(Path::new(PLUGIN).with_file_name("ipvlan"));
    let dir = net.dir().join("podman");
    for d in ["net.d", "plugins", "rootfs/bin", "ipam"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let e = Engine {
        dir: dir.clone(),
        net,
    };
    // An existing reference-plugin configuration with only "type" changed (plus our socket).
    std::fs::copy(PLUGIN, dir.join("plugins/ipvlan-rs")).unwrap();
    std::fs::write(
        dir.join("net.d/ipvlan-rs-net.conflist"),
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "ipvlan-rs-net",
            "plugins": [{
                "type": "ipvlan-rs",
                "master": "m0",
                "mode": "l2",
                "socket": e.net.socket,
                "backend": e.net.backend,
                "ipam": ipvlan_testkit::host_local_ipam(&dir.join("ipam")),
            }]
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("containers.conf"),
        format!(
            "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n",
            dir.join("plugins").display(),
            dir.join("net.d").display()
        ),
    )
    .unwrap();
    // A local image: busybox-static as the whole root filesystem.
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(busybox.trim(), dir.join("rootfs/bin/busybox")).unwrap();
    for applet in ["sh", "ip", "ping", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(applet)).unwrap();
    }
    sh(&format!(
        "tar -C {root} -c . | CONTAINERS_CONF={conf} podman --root {st} --runroot {rr} --storage-driver vfs import - localhost/ipvlan-rs-test >/dev/null",
        root = dir.join("rootfs").display(),
        conf = dir.join("containers.conf").display(),
        st = dir.join("storage").display(),
        rr = dir.join("run").display()
    ));
    // Can the engine run a container at all here (no network involved)? If not, that is the
    // machine, not the plugin: fail with the engine's own words.
    let probe = e.podman(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "--network",
        "none",
        "localhost/ipvlan-rs-test",
        "true",
    ]);
    assert!(
        probe.status.success(),
        "podman cannot run a container on this machine (no network involved, so not the plugin): {}",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    // Container 1 stays up; container 2 pings it and the external host.
    e.run(&[
        "-d",
        "--name",
        "c1",
        "--network",
        "ipvlan-rs-net",
        "localhost/ipvlan-rs-test",
        "sleep",
        "60",
    ]);
    let addr = e.podman(&["exec", "c1", "ip", "-4", "-o", "addr", "show", "eth0"]);
    let addr = String::from_utf8_lossy(&addr.stdout).to_string();
    let c1 = addr
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        c1.starts_with("192.0.2.1"),
        "c1 address from host-local: {addr:?}"
    );
    let out = e.run(&[
        "--rm",
        "--network",
        "ipvlan-rs-net",
        "localhost/ipvlan-rs-test",
        "sh",
        "-c",
        &format!("ip -o link show eth0 && ping -c 2 -W 2 {c1} && ping -c 2 -W 2 192.0.2.254"),
    ]);
    assert!(out.contains("link/ether 02:00:00:00:00:01"), "{out}");
    assert_eq!(out.matches("2 packets received").count(), 2, "{out}");
    // Removing the containers removes their slaves (CNI DEL through the daemon).
    let _ = e.podman(&["rm", "-f", "-t", "0", "c1"]);
    assert_eq!(
        e.net.links(),
        Vec::<serde_json::Value>::new(),
        "{}",
        e.daemon_log()
    );
}
