//! A second real container engine: containerd (Debian 12's 1.6) through `ctr run --cni`, two
//! containers on an ipvlan-rs network reaching each other and an external namespace, their
//! slaves released (CNI DEL) when `ctr run --rm` ends.
//!
//! `ctr` 1.6 reads its CNI configuration from `/etc/cni/net.d` and its plugins from
//! `/opt/cni/bin`, with no flag to change either (`ctr run --help`; containerd's
//! `cmd/ctr/commands/run/run_unix.go` calls go-cni's `WithDefaultConf`). So this test's
//! containerd and every `ctr` runs in a private mount namespace of its own (`unshare -m`, private
//! propagation) where the test's own directories are mounted over those two paths and over
//! `/run/containerd` (the shims' sockets, runc's state): the host never sees them. The
//! containers run from a busybox-static directory (`ctr run --rootfs`, no image, no registry).
//! Ignored unless asked for (`cargo test -- --include-ignored`); asked for where containerd
//! cannot run, it fails and says why.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");

/// The reference plugins of Debian's containernetworking-plugins.
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

fn which(cmd: &str) -> PathBuf {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

fn unsupported() -> Option<String> {
    if let Some(why) = ipvlan_testkit::unsupported() {
        return Some(why);
    }
    if let Some(why) = ipvlan_testkit::missing(&[
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
        ("busybox", "busybox-static"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
    ]) {
        return Some(why);
    }
    if !Path::new(REFERENCE_PLUGINS).join("host-local").exists() {
        return Some("host-local is missing (containernetworking-plugins)".into());
    }
    if !Path::new(PLUGIN).with_file_name("ipvlan").exists() {
        return Some("the ipvlan daemon binary is not built (cargo test --workspace)".into());
    }
    None
}

/// Runs in the new mount namespace before containerd: `shadow TARGET SOURCE` mounts SOURCE at
/// TARGET there. A TARGET that does not exist (e.g. `/opt/cni/bin` on a host without it) is
/// made inside a tmpfs laid over its deepest existing ancestor, which keeps every entry of the
/// ancestor as a symlink into a bind of the original, so nothing is written to the host's file
/// systems and nothing else under the ancestor disappears.
const SHADOW: &str = r#"
set -eu
shadow() {
    t=$1 src=$2 a=$1
    while [ ! -e "$a" ] && [ ! -L "$a" ]; do a=$(dirname "$a"); done
    if [ "$a" != "$t" ]; then
        [ "$a" != / ] || { echo "cannot shadow $t: no existing ancestor but /" >&2; exit 1; }
        [ -d "$a" ] && [ ! -L "$a" ] || { echo "cannot shadow $t: $a is not a directory" >&2; exit 1; }
        stash="$STASH/$(echo "$a" | tr / _)"
        mkdir -p "$stash"
        mount --rbind "$a" "$stash"
        mount -t tmpfs -o mode=0755 tmpfs "$a"
        for e in "$stash"/* "$stash"/.[!.]*; do
            if [ -e "$e" ] || [ -L "$e" ]; then ln -s "$e" "$a/${e##*/}"; fi
        done
        mkdir -p "$t"
    fi
    mount --bind "$src" "$t"
}
"#;

/// One test's containerd with everything under its own directory, in its own mount namespace,
/// inside the shared fixture (daemon in `host` serving master `m0`, external host `ext` at
/// 192.0.2.254). Dropped before the fixture: the containers, then containerd, go before the
/// daemon and the namespaces.
struct Containerd {
    dir: PathBuf,
    /// containerd's PID (`unshare` and `sh` exec it): the mount namespace every `ctr` joins.
    daemon: Child,
    /// The `ctr run --rm` processes still running, by container name.
    running: Vec<(String, Child)>,
    /// Every container asked for, for the clean-up (a failed `ctr run` may leave its task).
    created: Vec<String>,
    /// The containerd namespace (the test's tag: unique cgroup paths and container IDs).
    namespace: String,
    execs: AtomicU32,
    net: ipvlan_testkit::Fx,
}

impl Containerd {
    fn start(net: ipvlan_testkit::Fx) -> Containerd {
        let dir = net.dir().join("containerd");
        for d in [
            "rootfs/bin",
            "rootfs/proc",
            "rootfs/sys",
            "rootfs/dev",
            "rootfs/tmp",
            "net.d",
            "bin",
            "ipam",
            "run",
            "stash",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        // The network: an existing reference-plugin configuration with only "type" changed
        // (plus our socket); go-cni names the container's interface eth0.
        std::fs::write(
            dir.join("net.d/10-ipvlan-rs.conflist"),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "name": "ipvlan-rs-net",
                "plugins": [{
                    "type": "ipvlan-rs",
                    "master": "m0",
                    "mode": "l2",
                    "socket": net.socket,
                    "backend": net.backend,
                    "ipam": ipvlan_testkit::host_local_ipam(&dir.join("ipam")),
                }]
            })
            .to_string(),
        )
        .unwrap();
        std::fs::copy(PLUGIN, dir.join("bin/ipvlan-rs")).unwrap();
        for p in ["host-local", "loopback"] {
            let from = Path::new(REFERENCE_PLUGINS).join(p);
            if from.exists() {
                std::os::unix::fs::symlink(from, dir.join("bin").join(p)).unwrap();
            }
        }
        // The containers' root file system: busybox-static and the applets the test uses.
        std::fs::copy(which("busybox"), dir.join("rootfs/bin/busybox")).unwrap();
        for applet in ["sh", "ip", "ping", "sleep", "true", "cat"] {
            std::os::unix::fs::symlink("busybox", dir.join("rootfs/bin").join(applet)).unwrap();
        }
        // containerd with root, state, sockets and the `opt` plugin's directory all ours; no
        // CRI (it would start its own CNI handling).
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
            ),
        )
        .unwrap();
        let script = format!(
            "{SHADOW}\nshadow /etc/cni/net.d {d}/net.d\nshadow /opt/cni/bin {d}/bin\nshadow /run/containerd {d}/run\nexec containerd --config {d}/config.toml"
        );
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("STASH", dir.join("stash"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let namespace = net.tag.clone();
        let mut c = Containerd {
            dir,
            daemon,
            running: Vec::new(),
            created: Vec::new(),
            namespace,
            execs: AtomicU32::new(0),
            net,
        };
        let up = ipvlan_testkit::wait(Duration::from_secs(20), || {
            c.log().contains("containerd successfully booted")
                || c.daemon.try_wait().ok().flatten().is_some()
        });
        assert!(
            up && c.daemon.try_wait().unwrap().is_none(),
            "containerd did not start: {}",
            c.log()
        );
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` in containerd's mount namespace, talking to it, in the test's namespace.
    fn ctr_cmd(&self, args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.daemon.id().to_string())
            .args(["-m", "ctr", "--address"])
            .arg(self.dir.join("containerd.sock"))
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn ctr(&self, args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
        self.ctr_cmd(args).output().unwrap()
    }

    /// `ctr run --rm [--cni]` of the busybox root file system, to its end.
    fn run(&mut self, cni: bool, name: &str, cmd: &[&str]) -> Output {
        self.created.push(name.to_owned());
        self.ctr(&self.run_args(cni, name, cmd))
    }

    fn run_args(&self, cni: bool, name: &str, cmd: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--rm", "--env", "PATH=/bin"]
            .map(String::from)
            .into();
        if cni {
            args.push("--cni".into());
        }
        args.push("--rootfs".into());
        args.push(self.dir.join("rootfs").display().to_string());
        args.push(name.into());
        args.extend(cmd.iter().map(|a| a.to_string()));
        args
    }

    /// Starts `ctr run --rm --cni NAME sleep 120` in the background and waits until its
    /// `eth0` has an IPv4 address; returns that address.
    fn start_container(&mut self, name: &str) -> String {
        let child = self
            .ctr_cmd(&self.run_args(true, name, &["sleep", "120"]))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.running.push((name.to_owned(), child));
        self.created.push(name.to_owned());
        let mut addr = String::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let o = self.exec(name, "ip -4 -o addr show dev eth0");
            if let Some(a) = String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)
            {
                addr = a.split('/').next().unwrap_or_default().to_owned();
                break;
            }
            if let Some(pos) = self.running.iter().position(|(n, _)| n == name) {
                if self.running[pos].1.try_wait().unwrap().is_some() {
                    let (_, child) = self.running.remove(pos);
                    let o = child.wait_with_output().unwrap();
                    panic!(
                        "ctr run --cni {name} ended: {}\n--- containerd ---\n{}\n--- daemon ---\n{}",
                        ipvlan_testkit::text(&o),
                        self.log(),
                        self.net.daemon_log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !addr.is_empty(),
            "{name} never got an address on eth0\n--- containerd ---\n{}\n--- daemon ---\n{}",
            self.log(),
            self.net.daemon_log()
        );
        addr
    }

    /// `sh -c cmd` inside running container `name` (`ctr task exec`).
    fn exec(&self, name: &str, cmd: &str) -> Output {
        let id = format!("x{}", self.execs.fetch_add(1, Ordering::SeqCst));
        self.ctr(&["task", "exec", "--exec-id", &id, name, "sh", "-c", cmd])
    }

    /// Kills container `name`'s task and waits for its `ctr run --rm` to end, which runs the
    /// CNI DEL and removes the container; returns that process's output.
    fn stop(&mut self, name: &str) -> String {
        let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", name]);
        let pos = self.running.iter().position(|(n, _)| n == name).unwrap();
        let (_, mut child) = self.running.remove(pos);
        let ended = ipvlan_testkit::wait(Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !ended {
            // SAFETY: signalling the child we spawned, by its PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        }
        let o = child.wait_with_output().unwrap();
        assert!(
            ended,
            "ctr run {name} did not end after its task was killed"
        );
        ipvlan_testkit::text(&o)
    }

    /// The daemon's slaves (as the control protocol shows them).
    fn slaves(&self) -> Vec<serde_json::Value> {
        self.net.links()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for (name, _) in &self.running {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", name]);
        }
        for (_, mut child) in std::mem::take(&mut self.running) {
            let ended = ipvlan_testkit::wait(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !ended {
                // SAFETY: signalling the child we spawned, by its PID.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
                let _ = child.wait();
            }
        }
        // Whatever a failed or interrupted `ctr run` left: its task (and shim), its container.
        for name in &self.created {
            let _ = self.ctr(&["task", "delete", "--force", name]);
            let _ = self.ctr(&["container", "delete", name]);
        }
        // SAFETY: signalling the containerd we spawned, by its PID.
        unsafe { libc::kill(self.daemon.id() as libc::pid_t, libc::SIGTERM) };
        let ended = ipvlan_testkit::wait(Duration::from_secs(10), || {
            self.daemon.try_wait().ok().flatten().is_some()
        });
        if !ended {
            // SAFETY: as above.
            unsafe { libc::kill(self.daemon.id() as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.daemon.wait();
        // runc removes each container's cgroup but not their parent, named after our
        // containerd namespace (`/<namespace>/<id>`): remove it where it is empty.
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path().join(&self.namespace));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.namespace));
        if std::thread::panicking() {
            eprintln!("--- containerd log ---\n{}", self.log());
        }
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, containerd, runc, busybox-static, host-local, util-linux"]
fn containerd_containers_on_an_ipvlan_rs_network() {
    if let Some(why) = unsupported() {
        panic!("this test needs root, iproute2, nftables, TUN, containerd (ctr), runc, busybox-static, host-local and util-linux (unshare, nsenter), and cannot run here: {why}");
    }
    let net = ipvlan_testkit::Fx::new(Path::new(PLUGIN).with_file_name("ipvlan"));
    let mut c = Containerd::start(net);
    // Can containerd run a container at all here (no network involved)? If not, that is the
    // machine, not the plugin: fail with the engine's own words.
    let probe = c.run(false, "probe", &["true"]);
    assert!(
        probe.status.success(),
        "containerd cannot run a container on this machine (no network involved, so not the plugin): {}\n{}",
        ipvlan_testkit::text(&probe).trim(),
        c.log()
    );
    // The host's CNI directories are untouched: our configuration is seen only inside.
    assert!(!Path::new("/etc/cni/net.d/10-ipvlan-rs.conflist").exists());

    let a1 = c.start_container("c1");
    let a2 = c.start_container("c2");
    for a in [&a1, &a2] {
        assert!(
            a.starts_with("192.0.2.1"),
            "addresses come from host-local's 192.0.2.100-150: {a1} {a2}"
        );
    }
    assert_ne!(a1, a2, "two containers, two addresses");
    let slaves = c.slaves();
    assert_eq!(slaves.len(), 2, "{slaves:?}");
    // The data path the run asked for (IPVLAN_TEST_DATAPATH) is the one that served them.
    let datapath = slaves[0]["datapath"].as_str().unwrap_or_default();
    eprintln!(
        "slaves on data path {datapath}, backend {}",
        slaves[0]["backend"]
    );
    if let Some(want) = c.net.datapath.as_deref() {
        let ok = match want {
            "auto" => true,
            "bpf" => datapath.starts_with("bpf-"),
            w => datapath == w,
        };
        assert!(ok, "asked for data path {want}, got {datapath}");
    }
    if let Some(want) = c.net.backend.as_deref() {
        assert_eq!(slaves[0]["backend"], want, "the backend the run asked for");
    }

    // Each container reaches the other and the external host; the external host reaches both.
    for (from, to) in [
        ("c1", a2.as_str()),
        ("c2", a1.as_str()),
        ("c1", "192.0.2.254"),
        ("c2", "192.0.2.254"),
    ] {
        let o = c.exec(from, &format!("ping -c 2 -W 2 {to}"));
        assert!(
            o.status.success(),
            "{from} -> {to}: {}\n{}",
            ipvlan_testkit::text(&o),
            c.net.daemon_log()
        );
    }
    for to in [&a1, &a2] {
        assert!(
            c.net.ping("ext", to, 2),
            "ext -> {to}\n{}",
            c.net.daemon_log()
        );
    }
    // The container sees an ordinary interface with the master's MAC (IPVLAN: one MAC).
    let link = c.exec("c1", "ip -o link show dev eth0");
    assert!(
        ipvlan_testkit::text(&link).contains("link/ether 02:00:00:00:00:01"),
        "{}",
        ipvlan_testkit::text(&link)
    );

    // `ctr run --rm` ends when its task does: CNI DEL, the slave goes; the other one stays.
    // host-local's leases show that the plugin's DEL ran (it delegates DEL to the IPAM plugin),
    // not just that the slave vanished with the container's namespace.
    let leases = c.dir.join("ipam/ipvlan-rs-net");
    let lease = |a: &str| leases.join(a).exists();
    assert!(lease(&a1) && lease(&a2), "host-local leases before DEL");
    c.stop("c2");
    let left = c.slaves();
    assert_eq!(left.len(), 1, "after c2 ended: {left:?}");
    assert!(
        !lease(&a2) && lease(&a1),
        "c2's lease released by DEL, c1's kept"
    );
    assert!(c.exec("c1", "ping -c 1 -W 2 192.0.2.254").status.success());
    c.stop("c1");
    assert_eq!(
        c.slaves(),
        Vec::<serde_json::Value>::new(),
        "{}",
        c.net.daemon_log()
    );
    // And a container run to its end with --rm leaves nothing behind either.
    let o = c.run(true, "c3", &["ping", "-c", "1", "-W", "2", "192.0.2.254"]);
    let out = ipvlan_testkit::text(&o);
    assert!(
        o.status.success() && out.contains("1 packets received"),
        "{out}\n{}",
        c.net.daemon_log()
    );
    assert!(c.slaves().is_empty(), "after c3: {:?}", c.slaves());
}
