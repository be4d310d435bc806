//! systemd integration: `deploy/systemd/ipvlan.service` is a `Type=notify` unit that
//! `systemd-analyze verify` accepts, and the daemon sends `READY=1` (with `STATUS=`) to
//! `$NOTIFY_SOCKET` only once its control socket answers, and `STOPPING=1` when it stops; and
//! the systemd-networkd example (`deploy/systemd-networkd/`) configures a slave left in the
//! master's namespace, run by a real systemd-networkd.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_ipvlan");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn unit_text() -> String {
    std::fs::read_to_string(root().join("deploy/systemd/ipvlan.service")).unwrap()
}

/// `[Section] Key=value` lines; a key given twice keeps every value (as `Documentation=`).
fn unit() -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in unit_text().lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']').to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            keys.entry(format!("{section}.{k}"))
                .or_default()
                .push(v.to_owned());
        }
    }
    keys
}

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ipvlan-systemd-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_unit_is_type_notify_with_real_documentation() {
    let u = unit();
    let one = |k: &str| -> String {
        let v = u.get(k).unwrap_or_else(|| panic!("{k} missing: {u:?}"));
        assert_eq!(v.len(), 1, "{k}: {v:?}");
        v[0].clone()
    };
    assert_eq!(one("Service.Type"), "notify");
    let desc = one("Unit.Description");
    assert!(
        desc.contains("eBPF") && desc.contains("userspace"),
        "{desc}"
    );
    let docs: Vec<&str> = u["Unit.Documentation"]
        .iter()
        .flat_map(|d| d.split_whitespace())
        .collect();
    assert!(docs.contains(&"man:ipvlan(8)"), "{docs:?}");
    for d in &docs {
        assert!(
            !d.contains("example.invalid"),
            "placeholder documentation: {d}"
        );
        if let Some(page) = d.strip_prefix("man:") {
            let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
            let file = root().join(format!("docs/man/{name}.{section}"));
            assert!(file.exists(), "{d}: no {}", file.display());
        } else {
            assert!(
                d.starts_with("file:/") || d.starts_with("https://"),
                "Documentation= takes man:, file: or http(s): URIs: {d}"
            );
        }
    }
    // What ExecStart runs is a daemon command line this CLI accepts.
    let exec = one("Service.ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/ipvlan"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args.first(), Some(&"daemon"), "{exec}");
    let o = Command::new(BIN).args(&args).arg("help").output().unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Usage"),
        "`ipvlan {} help`: {o:?}",
        args.join(" ")
    );
    // The socket it names is the one the CLI and the plugins use by default.
    assert!(exec.contains("--socket /run/ipvlan/ipvlan.sock"), "{exec}");
    assert_eq!(one("Service.RuntimeDirectory"), "ipvlan");
}

/// `systemd-analyze verify` on the unit, its ExecStart pointed at this build and its man pages
/// found in docs/man. Needs `systemd-analyze` (Debian: systemd; `.ci/run` installs it).
#[test]
#[ignore = "needs systemd-analyze (Debian package systemd)"]
fn systemd_analyze_verify_accepts_the_unit() {
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        has("systemd-analyze"),
        "systemd-analyze is not installed: the unit cannot be verified (Debian: apt-get install systemd)"
    );
    let dir = TempDir::new("verify");
    let text = unit_text().replace("/usr/local/bin/ipvlan", BIN);
    let unit = dir.0.join("ipvlan.service");
    std::fs::write(&unit, text).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if has("man") {
        // Documentation=man:… is checked with man(1): the pages, where man looks.
        let man8 = dir.0.join("man/man8");
        std::fs::create_dir_all(&man8).unwrap();
        for e in std::fs::read_dir(root().join("docs/man")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, man8.join(p.file_name().unwrap())).unwrap();
        }
        cmd.env("MANPATH", dir.0.join("man"));
    } else {
        eprintln!("note: no man(1) here: Documentation=man:… not checked by systemd-analyze");
        cmd.arg("--man=no");
    }
    let o = cmd.arg(&unit).output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Only what concerns this unit (a host's own units may have their own complaints).
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("ipvlan")).collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify: {out}"
    );
}

/// A network namespace of this test's own, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The daemon, stopped (SIGKILL) on drop if the test did not stop it.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The next notification, or a panic with the daemon's log.
fn next_message(sock: &UnixDatagram, log: &Path) -> String {
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            // A signal to this test process (another test's child ending) is no answer.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "no notification from the daemon within 15 s ({e}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

#[test]
#[ignore = "needs root, iproute2"]
fn daemon_notifies_ready_once_its_socket_answers_and_stopping_on_sigterm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test starts the daemon, which needs root, and cannot run here: not root");
    }
    let dir = TempDir::new("notify");
    let ns = Netns(format!("ivsd{}", std::process::id()));
    let o = Command::new("ip")
        .args(["netns", "add", &ns.0])
        .output()
        .unwrap();
    assert!(o.status.success(), "ip netns add {}: {o:?}", ns.0);
    let notify_path = dir.0.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let socket = dir.0.join("ipvlan.sock");
    let log = dir.0.join("daemon.log");
    let mut daemon = Daemon(Some(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, BIN, "daemon", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.0.join("state"))
            .args(["--datapath", "user", "--bpffs"])
            .arg(dir.0.join("bpffs"))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));

    let ready = next_message(&notify, &log);
    // At the moment READY=1 arrives, the socket takes connections and answers a request.
    assert!(
        UnixStream::connect(&socket).is_ok(),
        "READY=1 before the control socket accepts connections: {ready:?}"
    );
    let show = Command::new(BIN)
        .arg("--socket")
        .arg(&socket)
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "link show right after READY=1: {show:?}"
    );
    let lines: Vec<&str> = ready.lines().collect();
    assert!(lines.contains(&"READY=1"), "{ready:?}");
    let status = lines
        .iter()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {ready:?}"));
    assert!(
        status.contains("0 slave(s) on 0 master(s)") && status.contains(socket.to_str().unwrap()),
        "{status}"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    let mut child = daemon.0.take().unwrap();
    // SAFETY: signalling the child we spawned, by its PID (`ip netns exec` execs the daemon).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let stopping = next_message(&notify, &log);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// systemd-networkd, run in the fixture's `host` namespace with a mount namespace of its own:
/// only the given `.network` files (`/etc`, `/usr/lib` and `/run` configuration hidden), no
/// D-Bus, and a read-only /sys (so it does not wait for udev, which does not run in a test
/// namespace). Killed on drop.
struct Networkd {
    child: Option<Child>,
    log: PathBuf,
}

impl Networkd {
    fn start(fx: &common::Fx, networks: &[PathBuf]) -> Networkd {
        let dir = fx.dir().join("networkd");
        std::fs::create_dir_all(dir.join("network")).unwrap();
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        for n in networks {
            std::fs::copy(n, dir.join("network").join(n.file_name().unwrap())).unwrap();
        }
        let bin = ["/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-networkd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| {
                panic!("systemd-networkd is not installed (Debian: systemd): the example cannot be checked")
            });
        let script = format!(
            "set -e
mount -t tmpfs tmpfs /run/systemd
[ -d /run/dbus ] && mount -t tmpfs tmpfs /run/dbus
mkdir -p /run/systemd/network
cp {net}/*.network /run/systemd/network/
for d in /etc/systemd/network /usr/lib/systemd/network /lib/systemd/network; do
    [ -d $d ] && mount --bind {empty} $d
done
mount -o remount,ro /sys
exec env SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console {bin} 2>&1",
            net = dir.join("network").display(),
            empty = dir.join("empty").display(),
        );
        let log = dir.join("networkd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &fx.ns("host"), "sh", "-c", &script])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("networkd.err")).unwrap())
            .spawn()
            .unwrap();
        Networkd {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Networkd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling the child we spawned (sh execs networkd), by its PID.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, systemd-networkd"]
fn networkd_example_configures_a_slave_left_in_the_host() {
    require_env!();
    let fx = common::Fx::new();
    let example = root().join("deploy/systemd-networkd");
    // The example's unit makes the slave so (its master here is the fixture's m0).
    let unit = std::fs::read_to_string(example.join("ipvlan-ipvl0.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/ipvlan "))
        .unwrap()
        .replace("link eth0", "link m0");
    fx.cli_ok(&exec.split_whitespace().collect::<Vec<_>>());
    let networkd = Networkd::start(
        &fx,
        &[
            example.join("50-ipvl0.network"),
            example.join("10-ipvlan-rs-unmanaged.network"),
        ],
    );
    let configured = common::wait(Duration::from_secs(20), || {
        networkd
            .log()
            .contains("ipvl0: State changed: configuring -> configured")
    });
    assert!(
        configured,
        "networkd did not configure ipvl0:\n{}",
        networkd.log()
    );
    // The daemon learned what networkd configured, the kernel's ipvlan link-local address
    // included, and serves it: the external host reaches the slave.
    for a in ["192.0.2.11", "2001:db8:1::11", "fe80::200:0:100:1"] {
        fx.wait_learned("ipvl0", a);
    }
    assert!(
        common::wait(Duration::from_secs(5), || fx.ping("ext", "192.0.2.11", 1)),
        "{}",
        fx.daemon_log()
    );
    // No tug of war over the link-local address or the address generation mode.
    std::thread::sleep(Duration::from_secs(2));
    let addrs = fx.sh("host", "ip -6 addr show dev ipvl0");
    assert!(addrs.contains("fe80::200:0:100:1/64"), "{addrs}");
    assert_eq!(
        addrs.matches("fe80::").count(),
        1,
        "a second link-local address: {addrs}"
    );
    let link = fx.sh("host", "ip -d link show dev ipvl0");
    assert!(link.contains("addrgenmode none"), "{link}");
    // A veth slave's host end is left to the daemon.
    let log = networkd.log();
    for l in fx.links() {
        if let Some(h) = l["host_end"].as_str() {
            assert!(
                log.contains(&format!("{h}: found matching network '/run/systemd/network/10-ipvlan-rs-unmanaged.network'"))
                    || log.contains(&format!("{h}: Unmanaged")),
                "host end {h} not left unmanaged:\n{log}"
            );
        }
    }
}
