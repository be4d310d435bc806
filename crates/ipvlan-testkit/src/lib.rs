//! End-to-end fixture: real namespaces, a real daemon, the real CLI. Everything a test creates
//! carries a unique tag and is removed on drop, also when the test fails. Shared by the daemon's
//! tests and the CNI plugin's.
//!
//! Topology (spec §11.1 F-BASE, HOWTO §6): namespace `host` holds the master `m0`
//! (02:00:00:00:00:01, 192.0.2.1/24, 2001:db8:1::1/64) and runs the daemon; its veth peer `e0`
//! (02:00:00:00:00:fe, 192.0.2.254/24, 2001:db8:1::fe/64) is the external host in `ext`.

// Test support: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// What the daemon logs once it serves requests.
const READY: &str = "ipvlan daemon ready";

/// Why the e2e tests cannot run here, if they cannot.
pub fn unsupported() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    if let Some(tool) = ["ip", "nft", "ping"].into_iter().find(|t| !have(t)) {
        return Some(format!("{tool} is not installed"));
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    None
}

pub struct Fx {
    /// The `ipvlan` binary: daemon and CLI.
    bin: PathBuf,
    pub tag: String,
    namespaces: Vec<String>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    daemon: Option<Child>,
    pub log: PathBuf,
    /// `IPVLAN_WORKERS` for the next daemon start (the daemon's default when `None`).
    pub workers: Option<usize>,
    /// Soft limit on open files for the next daemon start (inherited when `None`).
    pub open_files: Option<u64>,
    /// A directory put first on the next daemon's `PATH` (to stand in for a system tool).
    pub path_first: Option<PathBuf>,
    /// `--datapath` for the next daemon start: `IPVLAN_TEST_DATAPATH` (auto, bpf or user),
    /// else the daemon's default. CI runs the suite once per data path.
    pub datapath: Option<String>,
    /// `backend` for the slaves [`Fx::slave`] adds: `IPVLAN_TEST_BACKEND` (veth or tap), else
    /// the port's default.
    pub backend: Option<String>,
    /// This test's own bpffs (mounted in the host's mount namespace, so pins outlive a daemon
    /// started by `ip netns exec`, which runs in a mount namespace of its own); unmounted on
    /// drop, which frees whatever the daemon left pinned.
    pub bpffs: PathBuf,
    /// More arguments for the next daemon starts (e.g. `--metrics-listen 9477`).
    pub daemon_args: Vec<String>,
}

/// Whether `cmd` is on `PATH` (`command -v`).
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first of `(command, Debian package)` not on `PATH`, as "CMD is missing (Debian
/// package PKG)"; `None` when all are there.
pub fn missing(tools: &[(&str, &str)]) -> Option<String> {
    tools
        .iter()
        .find(|(cmd, _)| !have(cmd))
        .map(|(cmd, pkg)| format!("{cmd} is missing (Debian package {pkg})"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

/// Runs `cmd` with `input` written to its standard input (then closed), and waits for it:
/// its output. Panics if it cannot be started or the input cannot be written.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writing the input");
    child.wait_with_output().expect("wait")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Fx {
    /// Creates `host` and `ext` joined by the m0/e0 veth, and starts the daemon (`bin`) in
    /// `host`. Panics, saying why, where that cannot be done ([`unsupported`]): the tests that
    /// use it are `#[ignore]`d, so only `cargo test -- --include-ignored` gets here.
    pub fn new(bin: impl AsRef<Path>) -> Fx {
        if let Some(why) = unsupported() {
            panic!("the end-to-end fixture needs root, iproute2, nftables and TUN, and cannot run here: {why}");
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("ivt{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        let mut fx = Fx {
            bin: bin.as_ref().to_owned(),
            tag,
            namespaces: Vec::new(),
            socket: dir.join("ipvlan.sock"),
            state_dir: dir.join("state"),
            daemon: None,
            log: dir.join("daemon.log"),
            workers: None,
            open_files: None,
            path_first: None,
            datapath: std::env::var("IPVLAN_TEST_DATAPATH").ok(),
            backend: std::env::var("IPVLAN_TEST_BACKEND").ok(),
            bpffs: dir.join("bpffs"),
            daemon_args: Vec::new(),
        };
        std::fs::create_dir_all(&fx.bpffs).unwrap();
        let o = run(Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&fx.bpffs));
        assert!(o.status.success(), "mounting bpffs: {}", text(&o));
        fx.add_ns("host");
        fx.add_ns("ext");
        let (host, ext) = (fx.ns("host"), fx.ns("ext"));
        fx.ip(&[
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
            "address",
            "02:00:00:00:00:fe",
            "netns",
            &ext,
        ]);
        fx.sh("host", "ip link set m0 up && ip addr add 192.0.2.1/24 dev m0 && ip addr add 2001:db8:1::1/64 dev m0 nodad");
        fx.sh("ext", "ip link set e0 up && ip addr add 192.0.2.254/24 dev e0 && ip addr add 2001:db8:1::fe/64 dev e0 nodad");
        fx.start_daemon();
        fx
    }

    /// A directory of this test's own (removed on drop) for any files it needs.
    pub fn dir(&self) -> PathBuf {
        std::env::temp_dir().join(&self.tag)
    }

    /// The full name of one of this test's namespaces.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    pub fn add_ns(&mut self, short: &str) {
        let name = self.ns(short);
        let o = run(Command::new("ip").args(["netns", "add", &name]));
        assert!(o.status.success(), "ip netns add {name}: {}", text(&o));
        run(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        // A new namespace takes its IPv4 settings from the host's (devconf_inherit_init_net
        // 0): a host that forwards (a Docker or Kubernetes node) must not make every test
        // namespace a router. The tests start from the kernel's defaults.
        let o = run(Command::new("ip").args([
            "netns",
            "exec",
            &name,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=0",
        ]));
        assert!(o.status.success(), "ip_forward=0 in {name}: {}", text(&o));
        self.namespaces.push(name);
    }

    pub fn del_ns(&mut self, short: &str) {
        let name = self.ns(short);
        run(Command::new("ip").args(["netns", "del", &name]));
        self.namespaces.retain(|n| *n != name);
    }

    pub fn ip(&self, args: &[&str]) -> Output {
        let o = run(Command::new("ip").args(args));
        assert!(o.status.success(), "ip {}: {}", args.join(" "), text(&o));
        o
    }

    /// Runs a shell command inside namespace `short`; panics if it fails.
    pub fn sh(&self, short: &str, cmd: &str) -> String {
        let o = self.try_sh(short, cmd);
        assert!(o.status.success(), "[{short}] {cmd}: {}", text(&o));
        text(&o)
    }

    pub fn try_sh(&self, short: &str, cmd: &str) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.ns(short), "sh", "-c", cmd]))
    }

    pub fn start_daemon(&mut self) {
        let ready_before = self.daemon_log().matches(READY).count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("ip");
        if let Some(n) = self.workers {
            cmd.env("IPVLAN_WORKERS", n.to_string());
        }
        if let Some(dir) = &self.path_first {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        if let Some(soft) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls: getrlimit/setrlimit.
            unsafe {
                cmd.pre_exec(move || {
                    let mut r = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    r.rlim_cur = soft.min(r.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["netns", "exec", &self.ns("host")])
            .arg(&self.bin)
            .args(["daemon", "--socket"])
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--bpffs")
            .arg(&self.bpffs)
            .args(
                self.datapath
                    .as_deref()
                    .map(|d| vec!["--datapath", d])
                    .unwrap_or_default(),
            )
            .args(&self.daemon_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        // Ready once it says so (restored slaves served): the socket accepts connections
        // earlier.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.daemon_log().matches(READY).count() > ready_before
                && std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up: {}", self.daemon_log());
    }

    /// Restarts the daemon on the userspace data path, for tests of what only that path has
    /// (workers, TAP queues, the daemon's own forwarding).
    pub fn use_userspace(&mut self) {
        self.stop_daemon(false);
        self.datapath = Some("user".into());
        self.start_daemon();
    }

    /// The data path the daemon gave the port of `m0` (`bpf-tcx`, `bpf-tc`, `user`), as
    /// `link show` reports it for the first slave; `None` without slaves.
    pub fn datapath(&self) -> Option<String> {
        self.links()
            .first()?
            .get("datapath")?
            .as_str()
            .map(str::to_owned)
    }

    /// Stops the daemon: SIGTERM (clean) or SIGKILL.
    pub fn stop_daemon(&mut self, kill: bool) {
        if let Some(mut c) = self.daemon.take() {
            let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
            // SAFETY: signalling the child we spawned, by its PID.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            let _ = c.wait();
        }
    }

    /// The running daemon's PID (`ip netns exec` execs it, so it is the child's).
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI (in `host`, where the daemon is).
    pub fn cli(&self, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.ns("host")])
            .arg(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args))
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "ipvlan {}: {}\n--- daemon log ---\n{}",
            args.join(" "),
            text(&o),
            self.daemon_log()
        );
        text(&o)
    }

    /// Every slave as the daemon's control protocol shows it (`ipvlan::proto::LinkView`,
    /// asked over the socket as the container plugins ask): the protocol's own keys (`name`,
    /// `mode`, `flag`, `stats`…), not the CLI's `-j` output, which has a schema of its own
    /// (tested where the CLI is).
    pub fn links(&self) -> Vec<serde_json::Value> {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.socket.display()));
        s.write_all(br#"{"cmd":"link_show","name":null}"#).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
        assert_eq!(v["status"], "ok", "link show: {v}");
        v["links"].as_array().cloned().unwrap_or_default()
    }

    pub fn link(&self, name: &str) -> Option<serde_json::Value> {
        self.links().into_iter().find(|l| l["name"] == name)
    }

    /// Creates slave `name` on m0 with `args`, moves it into namespace `ns` (created if
    /// needed), brings it up with `v4`/`v6` addresses (prefix given), and waits until the
    /// daemon has learned them.
    pub fn slave(&mut self, name: &str, args: &str, ns: &str, v4: &str, v6: &str) {
        let mut words = vec!["link", "add", "link", "m0", name];
        if let Some(b) = &self.backend {
            words.extend(["backend", b.as_str()]);
        }
        words.extend(["type", "ipvlan"]);
        words.extend(args.split_whitespace());
        self.cli_ok(&words);
        if !self.namespaces.contains(&self.ns(ns)) {
            self.add_ns(ns);
        }
        let target = self.ns(ns);
        self.sh("host", &format!("ip link set dev {name} netns {target}"));
        self.sh(ns, &format!("ip link set dev {name} up"));
        if !v4.is_empty() {
            self.sh(ns, &format!("ip addr add {v4} dev {name}"));
        }
        if !v6.is_empty() {
            self.sh(ns, &format!("ip -6 addr add {v6} dev {name} nodad"));
        }
        for a in [v4, v6].into_iter().filter(|a| !a.is_empty()) {
            let addr = a.split('/').next().unwrap();
            self.wait_learned(name, addr);
        }
    }

    /// Waits until `link show` lists `addr` on slave `name`.
    pub fn wait_learned(&self, name: &str, addr: &str) {
        let ok = wait(Duration::from_secs(5), || {
            self.link(name)
                .is_some_and(|l| l["addresses"].as_array().unwrap().iter().any(|a| a == addr))
        });
        assert!(
            ok,
            "daemon never learned {addr} on {name}: {:?}\n{}",
            self.link(name),
            self.daemon_log()
        );
    }

    /// `ping -c N` from namespace `ns`; true if every reply came back.
    pub fn ping(&self, ns: &str, dst: &str, count: u32) -> bool {
        let v6 = if dst.contains(':') { "-6" } else { "-4" };
        self.try_sh(ns, &format!("ping {v6} -c {count} -i 0.2 -W 1 {dst}"))
            .status
            .success()
    }

    /// Sends `bytes` over TCP from namespace `client` to `ip`:`port`, where a server in
    /// namespace `server` counts what arrives; returns that count as printed.
    pub fn tcp_transfer(
        &self,
        client: &str,
        server: &str,
        ip: &str,
        port: u16,
        bytes: usize,
    ) -> String {
        let family = if ip.contains(':') {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        let srv = self.python_bg(
            server,
            &format!(
                "import socket\ns=socket.socket(socket.{family})\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{ip}',{port}));s.listen(1);s.settimeout(10);c,_=s.accept();n=0\nwhile True:\n d=c.recv(65536)\n if not d: break\n n+=len(d)\nprint(n)"
            ),
            &[],
        );
        self.sh(
            client,
            &format!("python3 -c \"import socket;s=socket.create_connection(('{ip}',{port}),timeout=10);s.sendall(b'z'*{bytes});s.close()\""),
        );
        srv.output()
    }

    /// Starts `python3 -c code args...` in namespace `ns` in the background, its output
    /// captured, and gives it time to bind its sockets.
    pub fn python_bg(&self, ns: &str, code: &str, args: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "python3", "-c", code])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        Background(child)
    }

    /// Runs `python3 -c code args...` in namespace `ns`; panics if it fails; returns its
    /// output, trimmed.
    pub fn python(&self, ns: &str, code: &str, args: &[&str]) -> String {
        let o = run(Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "python3", "-c", code])
            .args(args));
        assert!(o.status.success(), "[{ns}] python: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }

    /// The SNMP counter `field` of protocol `proto` (e.g. Icmp InEchos) in namespace `ns`.
    pub fn snmp(&self, ns: &str, proto: &str, field: &str) -> u64 {
        self.proc_counter(ns, "/proc/net/snmp", proto, field)
    }

    /// The extended counter `field` of `proto` (e.g. TcpExt TCPOFOQueue) in namespace `ns`.
    pub fn netstat(&self, ns: &str, proto: &str, field: &str) -> u64 {
        self.proc_counter(ns, "/proc/net/netstat", proto, field)
    }

    /// A counter from a `/proc/net` table of header/value line pairs.
    fn proc_counter(&self, ns: &str, file: &str, proto: &str, field: &str) -> u64 {
        let out = self.sh(ns, &format!("cat {file}"));
        let lines: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{proto}:")))
            .collect();
        let names: Vec<&str> = lines[0].split_whitespace().collect();
        let values: Vec<&str> = lines[1].split_whitespace().collect();
        let i = names.iter().position(|n| *n == field).unwrap();
        values[i].parse().unwrap()
    }
}

impl Drop for Fx {
    fn drop(&mut self) {
        self.stop_daemon(false);
        for ns in self.namespaces.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ({}) ---\n{}", self.tag, self.daemon_log());
        }
        let _ = Command::new("umount").arg("-l").arg(&self.bpffs).status();
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&self.tag));
    }
}

/// The IPAM section of the CNI tests' network configurations: the reference host-local plugin
/// handing out 192.0.2.100–150 with the external host as gateway, its leases under `data_dir`.
pub fn host_local_ipam(data_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "host-local",
        "subnet": "192.0.2.0/24",
        "rangeStart": "192.0.2.100",
        "rangeEnd": "192.0.2.150",
        "gateway": "192.0.2.254",
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": data_dir,
    })
}

/// A program started by [`Fx::python_bg`].
pub struct Background(Child);

impl Background {
    /// Waits for the program to end; what it printed, trimmed.
    pub fn output(self) -> String {
        let o = self.0.wait_with_output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    }
}

/// Polls `f` every 50 ms until it holds or `limit` passes.
pub fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
