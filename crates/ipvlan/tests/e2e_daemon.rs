//! End to end: daemon restarts and crashes, and what the CLI does with bad input.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{text, wait, Fx};

fn two_slaves(args: &str) -> Fx {
    let mut fx = Fx::new();
    add_two_slaves(&mut fx, args);
    fx
}

/// ipvl0 in ns0 (.11) and ipvl1 in ns1 (.12), IPv4 and IPv6.
fn add_two_slaves(fx: &mut Fx, args: &str) {
    fx.slave("ipvl0", args, "ns0", "192.0.2.11/24", "2001:db8:1::11/64");
    fx.slave("ipvl1", args, "ns1", "192.0.2.12/24", "2001:db8:1::12/64");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn restart_serves_every_slave_again_in_its_namespace() {
    require_env!();
    let mut fx = two_slaves("mode l2 private");
    fx.cli_ok(&["link", "set", "ipvl1", "spoofchk", "on"]);
    let before = fx.links();
    let bpf = fx.datapath().is_some_and(|d| d.starts_with("bpf"));
    fx.stop_daemon(false);
    if bpf {
        assert!(
            fx.ping("ns0", "192.0.2.254", 1),
            "the eBPF data path forwards while the daemon is down"
        );
    } else {
        assert!(!fx.ping("ns0", "192.0.2.254", 1), "no daemon, no traffic");
    }
    fx.start_daemon();
    let back = wait(Duration::from_secs(5), || fx.ping("ns0", "192.0.2.254", 1));
    assert!(back, "{}", fx.daemon_log());
    assert!(fx.ping("ext", "2001:db8:1::12", 1));
    assert!(
        !fx.ping("ns0", "192.0.2.12", 1),
        "still private after the restart"
    );
    let after = fx.links();
    assert_eq!(after.len(), 2);
    for (b, a) in before.iter().zip(&after) {
        for key in [
            "name",
            "master",
            "mode",
            "flag",
            "id",
            "mtu",
            "netns",
            "addresses",
        ] {
            assert_eq!(b[key], a[key], "{key} changed across the restart");
        }
    }
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn kill_9_then_restart_loses_nothing() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    fx.stop_daemon(true);
    let t = std::time::Instant::now();
    fx.start_daemon();
    // Served again within about a second of the restart, a ping round trip included.
    let back = wait(Duration::from_secs(5), || {
        fx.try_sh("ns0", "ping -c 1 -W 0.2 192.0.2.12")
            .status
            .success()
    });
    let took = t.elapsed();
    assert!(back);
    eprintln!("kill -9 -> serving again after {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(fx.links().len(), 2);
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn slaves_deleted_while_the_daemon_is_down_are_dropped() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    fx.stop_daemon(false);
    fx.del_ns("ns0");
    std::thread::sleep(Duration::from_millis(300));
    fx.start_daemon();
    let links = fx.links();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["name"], "ipvl1");
    assert!(fx.daemon_log().contains("no longer exists"));
    assert!(fx.ping("ns1", "192.0.2.254", 1));
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn corrupt_state_is_kept_aside_and_the_daemon_starts() {
    require_env!();
    let mut fx = Fx::new();
    fx.stop_daemon(false);
    std::fs::create_dir_all(&fx.state_dir).unwrap();
    std::fs::write(fx.state_dir.join("state.json"), b"{ not json").unwrap();
    fx.start_daemon();
    assert!(fx.daemon_log().contains("corrupt"));
    let kept = std::fs::read_dir(&fx.state_dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(kept);
    assert!(fx.links().is_empty());
}

/// Runs the CLI and returns (exit code, combined output).
fn cli(fx: &Fx, args: &str) -> (i32, String) {
    let o = fx.cli(&args.split_whitespace().collect::<Vec<_>>());
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn bad_input_gets_clear_errors_and_creates_nothing() {
    require_env!();
    let fx = Fx::new();
    let cases: &[(&str, i32, &str)] = &[
        (
            "link add link m0 s1 type ipvlan mode l4",
            1,
            "argument of \"mode\" must be either \"l2\", \"l3\" or \"l3s\"",
        ),
        (
            "link add link m0 s1 type ipvlan mode L2",
            1,
            "argument of \"mode\"",
        ),
        (
            "link add link m0 s1 type ipvlan mode l2 private vepa",
            1,
            "ipvlan: unknown option \"vepa\"?",
        ),
        (
            "link add link m0 s1 type ipvlan bridge bridge",
            1,
            "unknown option \"bridge\"",
        ),
        (
            "link add link m0 s1 type ipvlan mode",
            255,
            "Command line is not complete",
        ),
        ("link add s1 type ipvlan mode l2", 2, "needs its master"),
        ("link add link m0 s1", 255, "\"type\" argument is required"),
        (
            "link add link nosuch s1 type ipvlan",
            2,
            "Cannot find device \"nosuch\"",
        ),
        (
            "link add link lo s1 type ipvlan",
            2,
            "loopback or non-Ethernet",
        ),
        ("link add link m0 m0 type ipvlan", 2, "already exists"),
        (
            "link add link m0 this-name-is-too-long type ipvlan",
            1,
            "longer than 15 bytes",
        ),
        (
            "link add link m0 s1 mtu 67 type ipvlan",
            2,
            "between 68 and 65535",
        ),
        ("link del nosuch", 2, "Cannot find device \"nosuch\""),
        (
            "link set dev nosuch type ipvlan mode l2",
            2,
            "Cannot find device",
        ),
        ("link frobnicate", 255, "Command \"frobnicate\" is unknown"),
        ("frob", 255, "Object \"frob\" is unknown"),
    ];
    for (args, code, needle) in cases {
        let (got, out) = cli(&fx, args);
        assert_eq!(got, *code, "`ipvlan {args}` exit code; output: {out}");
        assert!(
            out.contains(needle),
            "`ipvlan {args}`: expected {needle:?} in {out:?}"
        );
    }
    assert!(fx.links().is_empty(), "nothing was created");
    assert!(
        !fx.sh("host", "ip link show").contains("s1"),
        "no device left behind"
    );
    assert!(
        !fx.sh("host", "nft list ruleset").contains("ipvlan_rs"),
        "no steal table left"
    );
    // A bridge port is busy (R-CRT-4).
    fx.sh(
        "host",
        "ip link add br9 type bridge && ip link set m0 master br9",
    );
    let (code, out) = cli(&fx, "link add link m0 s1 type ipvlan");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("busy"), "{out}");
    // Taken names: the second add with the same name fails, the first slave is untouched.
    fx.sh("host", "ip link set m0 nomaster");
    fx.cli_ok(&[
        "link", "add", "link", "m0", "s1", "type", "ipvlan", "mode", "l2",
    ]);
    let (code, out) = cli(&fx, "link add link m0 s1 type ipvlan mode l3");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(fx.link("s1").unwrap()["mode"], "l2");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_slave_without_mode_keeps_the_port_mode_and_says_so() {
    require_env!();
    let fx = Fx::new();
    fx.cli_ok(&[
        "link", "add", "link", "m0", "s1", "type", "ipvlan", "mode", "l2", "private",
    ]);
    let out = fx.cli_ok(&["link", "add", "link", "m0", "s2", "type", "ipvlan"]);
    assert!(out.contains("no mode given"), "{out}");
    assert_eq!(fx.link("s1").unwrap()["mode"], "l2");
    assert_eq!(fx.link("s2").unwrap()["flag"], "private");
    // Given explicitly, a mode changes the whole port, and the CLI names every slave.
    let out = fx.cli_ok(&[
        "link", "add", "link", "m0", "s3", "type", "ipvlan", "mode", "l3",
    ]);
    assert!(out.contains("every slave"), "{out}");
    assert!(out.contains("s1") && out.contains("s2"), "{out}");
    for s in ["s1", "s2", "s3"] {
        assert_eq!(fx.link(s).unwrap()["mode"], "l3");
    }
    // The guard can be asked for at creation.
    fx.cli_ok(&[
        "link", "add", "link", "m0", "s5", "spoofchk", "on", "type", "ipvlan", "mode", "l3",
    ]);
    assert_eq!(fx.link("s5").unwrap()["spoofchk"], true);
    assert_eq!(fx.link("s1").unwrap()["spoofchk"], false);
    // A slave given as the master attaches to the real master (R-CRT-2).
    fx.cli_ok(&[
        "link", "add", "link", "s1", "s4", "type", "ipvlan", "mode", "l3",
    ]);
    assert_eq!(fx.link("s4").unwrap()["master"], "m0");
    // JSON and details look like iproute2's.
    let d = fx.cli_ok(&["-d", "link", "show", "s4"]);
    assert!(d.contains("ipvlan  mode l3 bridge"), "{d}");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn namespace_deleted_after_a_restart_still_removes_its_slave() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    fx.stop_daemon(false);
    fx.start_daemon();
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.12",
        1
    )));
    // After the restart the daemon re-attached from inside ns0; deleting ns0 must still
    // delete the slave (R-LIFE-5).
    fx.del_ns("ns0");
    let gone = wait(Duration::from_secs(6), || fx.link("ipvl0").is_none());
    assert!(gone, "{:?}\n{}", fx.links(), fx.daemon_log());
    assert!(fx.ping("ns1", "192.0.2.254", 1));
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn the_readme_demo_passes_and_cleans_up() {
    require_env!();
    let out = std::process::Command::new(common::BIN)
        .arg("demo")
        .output()
        .unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("All checks passed"), "{text}");
    assert_eq!(text.matches("ok   ").count(), 7, "{text}");
    let tag = format!(
        "ipvdemo{}",
        text.split("ipvdemo")
            .nth(1)
            .unwrap_or("")
            .split('-')
            .next()
            .unwrap_or("")
    );
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&tag),
        "demo left {tag} behind"
    );
}

/// Python: send `n` bytes of JSON-ish garbage to the socket and print the reply.
const RAW_REQUEST: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() * int(sys.argv[3])); s.shutdown(socket.SHUT_WR)
print(s.recv(4096).decode())
"#;

fn raw_request(fx: &Fx, body: &str, repeat: usize) -> String {
    let o = std::process::Command::new("python3")
        .args(["-c", RAW_REQUEST])
        .arg(&fx.socket)
        .args([body, &repeat.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn control_socket_refuses_bad_requests_and_strangers() {
    require_env!();
    let fx = Fx::new();
    fx.cli_ok(&[
        "link", "add", "link", "m0", "s1", "type", "ipvlan", "mode", "l2",
    ]);
    let mode = std::fs::metadata(&fx.socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600, "root-only socket");
    assert!(raw_request(&fx, "{not json", 1).contains("malformed request"));
    assert!(raw_request(&fx, r#"{"cmd":"frobnicate"}"#, 1).contains("malformed request"));
    assert!(raw_request(&fx, "x", 100_000).contains("larger than"));
    // A non-root peer, even through a socket opened up to everyone, is refused (SO_PEERCRED).
    if std::path::Path::new("/usr/bin/setpriv").exists() {
        std::fs::set_permissions(&fx.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let o = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                common::BIN,
                "--socket",
            ])
            .arg(&fx.socket)
            .args(["link", "show"])
            .output()
            .unwrap();
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        assert!(
            out.contains("permission denied: uid 65534 is not root"),
            "{out}"
        );
    }
    // None of it disturbed the daemon.
    assert_eq!(fx.links().len(), 1);
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn sigterm_under_heavy_traffic_then_restart() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    // A TCP stream from ns0 to ns1 and a UDP flood to the outside, both running while the
    // daemon is told to stop.
    let sink = fx.python_bg(
        "ns1",
        "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('192.0.2.12',5040));s.listen(1);s.settimeout(10);c,_=s.accept();c.settimeout(3)\ntry:\n while c.recv(65536): pass\nexcept Exception: pass",
        &[],
    );
    let load = fx.python_bg(
        "ns0",
        "import socket,time\nt=time.time();s=socket.create_connection(('192.0.2.12',5040),timeout=5);s.settimeout(1)\nu=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nwhile time.time()-t<3:\n try:\n  s.send(b'q'*65536); u.sendto(b'w'*1000,('192.0.2.254',9))\n except Exception: pass",
        &[],
    );
    std::thread::sleep(Duration::from_millis(800));
    let t = std::time::Instant::now();
    fx.stop_daemon(false);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "SIGTERM under load took {:?}",
        t.elapsed()
    );
    let log = fx.daemon_log();
    assert!(log.contains("shutting down"));
    // Written to a file: plain text, no terminal colour codes.
    assert!(!log.contains('\x1b'), "{log}");
    load.output();
    sink.output();
    fx.start_daemon();
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.12",
        1
    )));
    assert_eq!(fx.links().len(), 2, "nothing lost");
}

/// `syscw` (write calls) of each data-plane worker thread of process `pid`, by thread name.
fn worker_writes(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = t.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("ipvlan-dp") {
            continue;
        }
        let io = std::fs::read_to_string(dir.join("io")).unwrap();
        let w = io
            .lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        out.insert(comm.trim().to_owned(), w);
    }
    out
}

fn tx_queues(fx: &Fx, ns: &str, dev: &str) -> usize {
    fx.sh(ns, &format!("ls /sys/class/net/{dev}/queues"))
        .split_whitespace()
        .filter(|q| q.starts_with("tx-"))
        .count()
}

/// Bytes sent through each transmit queue of `dev` (the classes of its `mq` qdisc; a TAP has
/// one for each queue it could have, the attached ones first).
fn tx_queue_bytes(fx: &Fx, ns: &str, dev: &str) -> Vec<u64> {
    let out = fx.sh(ns, &format!("tc -s class show dev {dev}"));
    let mut bytes = Vec::new();
    let mut in_mq = false;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["class", "mq", ..] => in_mq = true,
            ["class", ..] => in_mq = false,
            ["Sent", n, "bytes", ..] if in_mq => bytes.push(n.parse().unwrap_or(0)),
            _ => {}
        }
    }
    bytes
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn flows_spread_over_the_workers_and_stay_in_order() {
    require_env!();
    let mut fx = Fx::new();
    fx.stop_daemon(false);
    fx.workers = Some(3);
    fx.datapath = Some("user".into()); // workers and TAP queues: the userspace path's
    fx.backend = Some("tap".into());
    fx.start_daemon();
    add_two_slaves(&mut fx, "mode l2");
    // A queue per worker, each flow kept on one by the steering program; `-d` says so.
    assert_eq!(tx_queues(&fx, "ns0", "ipvl0"), 3);
    let details = fx.cli_ok(&["-d", "link", "show", "ipvl0"]);
    assert!(
        details.contains("queues 3 (flows steered over the workers)"),
        "{details}"
    );
    let before = worker_writes(fx.daemon_pid());
    assert_eq!(before.len(), 3, "{before:?}");
    let ofo = fx.netstat("ns1", "TcpExt", "TCPOFOQueue");
    // Eight concurrent TCP flows ns0 -> ns1, 4 MiB each: every byte arrives, in order, and
    // more than one worker carries them (the data is read from ipvl0, the ACKs from ipvl1).
    let server = fx.python_bg(
        "ns1",
        "import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('192.0.2.12',5050));s.listen(16);s.settimeout(10)\ntot=[];ts=[]\ndef h(c):\n n=0\n while True:\n  d=c.recv(65536)\n  if not d: break\n  n+=len(d)\n tot.append(n)\nfor i in range(8):\n c,_=s.accept();t=threading.Thread(target=h,args=(c,));t.start();ts.append(t)\nfor t in ts: t.join()\nprint(sum(tot))",
        &[],
    );
    fx.sh(
        "ns0",
        "python3 -c \"import socket,threading\ndef c():\n s=socket.create_connection(('192.0.2.12',5050),timeout=10);s.sendall(b'z'*4194304);s.close()\nts=[threading.Thread(target=c) for i in range(8)]\n[t.start() for t in ts];[t.join() for t in ts]\"",
    );
    assert_eq!(server.output(), (8 * 4194304).to_string());
    let per_queue = tx_queue_bytes(&fx, "ns0", "ipvl0");
    assert!(
        per_queue.iter().skip(3).all(|&b| b == 0),
        "only attached queues carry frames"
    );
    assert!(
        per_queue.iter().filter(|&&b| b >= 4194304).count() >= 2,
        "the flows left ipvl0 through more than one queue: {per_queue:?}"
    );
    // Each direction of a flow stays on one worker: nothing arrives out of order.
    assert_eq!(
        fx.netstat("ns1", "TcpExt", "TCPOFOQueue"),
        ofo,
        "segments reordered"
    );
    let after = worker_writes(fx.daemon_pid());
    let busy = after
        .iter()
        .filter(|(k, v)| **v >= before[*k] + 100)
        .count();
    assert!(
        busy >= 2,
        "flows spread over the workers: {before:?} -> {after:?}"
    );

    // Restarted with another worker count, the devices are served again.
    fx.stop_daemon(false);
    fx.workers = Some(2);
    fx.start_daemon();
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.12",
        1
    )));
    assert_eq!(tx_queues(&fx, "ns0", "ipvl0"), 2);
    let got = fx.tcp_transfer("ns0", "ns1", "192.0.2.12", 5051, 4 << 20);
    assert_eq!(got, (4 << 20).to_string());
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_single_queue_slave_from_an_older_version_is_served_after_an_upgrade() {
    require_env!();
    let mut fx = Fx::new();
    fx.use_userspace(); // older versions had TAP slaves only
    fx.backend = Some("tap".into());
    add_two_slaves(&mut fx, "mode l2");
    let alias = fx.sh("ns0", "cat /sys/class/net/ipvl0/ifalias");
    fx.stop_daemon(false);
    // What earlier versions left behind: the same device, not multiqueue-capable.
    fx.sh(
        "ns0",
        &format!(
            "ip link del ipvl0 && ip tuntap add dev ipvl0 mode tap vnet_hdr && \
             ip link set ipvl0 address 02:00:00:00:00:01 alias '{}' up && \
             ip addr add 192.0.2.11/24 dev ipvl0",
            alias.trim()
        ),
    );
    assert_eq!(tx_queues(&fx, "ns0", "ipvl0"), 1);
    fx.start_daemon();
    let back = wait(Duration::from_secs(5), || fx.ping("ns0", "192.0.2.12", 1));
    assert!(back, "{}", fx.daemon_log());
    assert_eq!(tx_queues(&fx, "ns0", "ipvl0"), 1, "attached as it was made");
    let got = fx.tcp_transfer("ns0", "ns1", "192.0.2.12", 5052, 4 << 20);
    assert_eq!(got, (4 << 20).to_string());
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn many_slaves_with_a_queue_per_worker_fit_the_usual_open_file_limit() {
    require_env!();
    let mut fx = Fx::new();
    fx.stop_daemon(false);
    // 4 workers: a descriptor per queue is 4 per slave, 1040 for 260 slaves, past the soft
    // limit of 1024 most services and shells start with; the daemon raises it.
    fx.workers = Some(4);
    fx.open_files = Some(1024);
    fx.start_daemon();
    for i in 0..260 {
        let name = format!("fd{i}");
        fx.cli_ok(&["link", "add", "link", "m0", &name, "type", "ipvlan"]);
    }
    assert_eq!(fx.links().len(), 260);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", fx.daemon_pid())).unwrap();
    let soft: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_ne!(soft[3], "1024", "{limits}");
}

/// A state file that cannot be written: `link add` and `link del` still work but say their
/// change will not survive a restart; no temporary file is left; and after a restart every
/// slave that exists is served anyway (found by its alias), the one created meanwhile too.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn state_errors_reach_the_user_and_a_restart_serves_every_slave() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    // The state file becomes a directory: every write of it fails.
    let file = fx.state_dir.join("state.json");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let o = fx.cli(&[
        "link", "add", "link", "m0", "name", "ipvl2", "type", "ipvlan", "mode", "l2",
    ]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(0), "{said}");
    assert!(
        said.contains("warning:") && said.contains("will not survive a daemon restart"),
        "{said}"
    );
    // Restart with a state file that lists only two of the three slaves; the failed writes
    // (retried meanwhile) left no temporary file behind.
    fx.stop_daemon(false);
    let leftovers: Vec<String> = std::fs::read_dir(&fx.state_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir(&file).unwrap();
    fx.start_daemon();
    for name in ["ipvl0", "ipvl1", "ipvl2"] {
        assert!(
            wait(Duration::from_secs(5), || fx.link(name).is_some()),
            "{name} served after the restart: {:?}",
            fx.links()
        );
    }
    assert!(fx.daemon_log().contains("found by its alias"));
    assert!(fx.ping("ns0", "192.0.2.12", 1), "traffic flows");
}

/// A corrupt state file is kept aside, and the slaves that exist are served all the same.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_corrupt_state_file_loses_no_slave() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    fx.stop_daemon(false);
    std::fs::write(fx.state_dir.join("state.json"), b"{ not json").unwrap();
    fx.start_daemon();
    assert!(fx.daemon_log().contains("corrupt"));
    for name in ["ipvl0", "ipvl1"] {
        assert!(
            wait(Duration::from_secs(5), || fx.link(name).is_some()),
            "{name}: {:?}",
            fx.links()
        );
    }
    // Its port came back in the default mode; setting it again makes it work as before.
    fx.cli_ok(&[
        "link", "set", "dev", "ipvl0", "type", "ipvlan", "mode", "l2",
    ]);
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.12",
        1
    )));
}

/// A refused request changes nothing: a TAP slave or an l3s slave refused on an eBPF port, and
/// a veth slave's host end refused as a master, leave the port's slaves forwarding (each once
/// tore the eBPF port's programs down).
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn refused_requests_leave_the_port_forwarding() {
    require_env!();
    let fx = two_slaves("mode l2");
    let refused = |args: &[&str], why: &str| {
        let o = fx.cli(args);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(why), "{}", text(&o));
        assert!(
            fx.ping("ns0", "192.0.2.12", 1),
            "still forwarding after {args:?}\n{}",
            fx.daemon_log()
        );
    };
    if fx.datapath().is_some_and(|d| d.starts_with("bpf")) {
        refused(
            &[
                "link", "add", "link", "m0", "x1", "backend", "tap", "type", "ipvlan", "mode", "l2",
            ],
            "veth slaves only",
        );
        refused(
            &[
                "link", "add", "link", "m0", "x2", "type", "ipvlan", "mode", "l3s",
            ],
            "no l3s",
        );
    }
    if let Some(host_end) = fx.link("ipvl0").unwrap()["host_end"].as_str() {
        refused(
            &[
                "link", "add", "link", host_end, "x3", "type", "ipvlan", "mode", "l2",
            ],
            "host end",
        );
    }
    assert_eq!(fx.links().len(), 2, "nothing was added");
}

/// A restart with another `--datapath` moves the ports with it and loses nothing: veth slaves of
/// an eBPF port are served by the userspace workers after a restart with `--datapath user` (the
/// programs and their pins removed first, so the two never switch side by side), and by eBPF
/// again after a restart with the default.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_restart_with_another_data_path_moves_the_ports() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    if !fx.datapath().is_some_and(|d| d.starts_with("bpf")) {
        return; // the eBPF path is not the default here (IPVLAN_TEST_DATAPATH)
    }
    let pins = |fx: &Fx| {
        std::fs::read_dir(fx.bpffs.join("ipvlan-rs"))
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|i| std::fs::read_dir(i.path()).into_iter().flatten().flatten())
            .count()
    };
    assert_eq!(pins(&fx), 1, "one port pinned");
    for (datapath, want) in [(Some("user"), "user"), (None, "bpf")] {
        fx.stop_daemon(false);
        fx.datapath = datapath.map(str::to_owned);
        fx.start_daemon();
        assert!(
            wait(Duration::from_secs(5), || fx.ping("ns0", "192.0.2.12", 1)),
            "slave↔slave after the restart on {want}\n{}",
            fx.daemon_log()
        );
        assert!(fx.ping("ns1", "192.0.2.254", 1), "to the wire on {want}");
        let links = fx.links();
        assert_eq!(links.len(), 2);
        for l in &links {
            assert!(l["datapath"].as_str().unwrap().starts_with(want), "{l}");
            assert_eq!(l["backend"], "veth");
        }
        assert_eq!(
            pins(&fx),
            usize::from(want == "bpf"),
            "pins follow the data path"
        );
    }
}

/// The attachment a container plugin sends for container `cid`'s `eth0` on network `net1`.
fn container(cid: &str) -> ipvlan::proto::Attachment {
    ipvlan::proto::Attachment {
        network: "net1".into(),
        container_id: cid.into(),
        ifname: "eth0".into(),
    }
}

/// `ipvl0` made for container `cid` (in ns0, 192.0.2.11, 2001:db8:1::11) and `ipvl1` made by
/// the user (in ns1, 192.0.2.12, 2001:db8:1::12), both l2.
fn container_and_plain_slave(fx: &mut Fx, cid: &str) {
    add_for_container(
        fx,
        "ipvl0",
        container(cid),
        "ns0",
        "192.0.2.11/24",
        "2001:db8:1::11/64",
    );
    fx.slave(
        "ipvl1",
        "mode l2",
        "ns1",
        "192.0.2.12/24",
        "2001:db8:1::12/64",
    );
}

/// What a container plugin does at ADD, through the daemon: `link add` of slave `name` on m0
/// in l2 for `attachment` (a raw request: the CLI has no word for it), then the slave moves
/// into namespace `ns` (created), is renamed `eth0`, comes up and gets `v4` and `v6`, which the
/// daemon learns.
fn add_for_container(
    fx: &mut Fx,
    name: &str,
    attachment: ipvlan::proto::Attachment,
    ns: &str,
    v4: &str,
    v6: &str,
) {
    use ipvlan::proto::{BackendKind, LinkAdd, Mode, Request, Response};
    let req = Request::LinkAdd(LinkAdd {
        master: "m0".into(),
        name: name.into(),
        mode: Some(Mode::L2),
        flag: None,
        mtu: None,
        spoofchk: None,
        backend: fx.backend.as_deref().and_then(BackendKind::parse),
        attachment: Some(attachment),
        hostreach: None,
        tap_owner: None,
    });
    let resp = ipvlan::client::call(&fx.socket, &req).unwrap();
    assert!(
        matches!(resp, Response::Ok { .. }),
        "{resp:?}\n{}",
        fx.daemon_log()
    );
    fx.add_ns(ns);
    let target = fx.ns(ns);
    fx.sh("host", &format!("ip link set dev {name} netns {target}"));
    fx.sh(
        ns,
        &format!(
            "ip link set dev {name} name eth0 && ip link set eth0 up && \
             ip addr add {v4} dev eth0 && ip -6 addr add {v6} dev eth0 nodad"
        ),
    );
    for a in [v4, v6] {
        fx.wait_learned(name, a.split('/').next().unwrap());
    }
}

/// The daemon log's lines that mention slave `name` and `what`.
fn log_lines(fx: &Fx, name: &str, what: &str) -> Vec<String> {
    let slave = format!("slave={name}");
    fx.daemon_log()
        .lines()
        .filter(|l| l.contains(&slave) && l.contains(what))
        .map(str::to_owned)
        .collect()
}

/// R-MTU-2: a slave MTU above the master's is accepted, as the kernel accepts it, and the user
/// is told what it means; so is an MTU raised above the master's later with `ip link set`.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_slave_mtu_above_the_masters_is_accepted_and_said() {
    require_env!();
    let fx = Fx::new();
    let mut words = vec!["link", "add", "link", "m0", "name", "s9", "mtu", "9000"];
    if let Some(b) = &fx.backend {
        words.extend(["backend", b.as_str()]);
    }
    words.extend(["type", "ipvlan", "mode", "l2"]);
    let out = fx.cli_ok(&words);
    let note = "note: mtu 9000 is above master m0's 1500: in l2 mode frames larger than 1500 \
                bytes reach the other slaves but will not leave through m0";
    assert!(out.contains(note), "{out}");
    assert!(out.contains("(R-MTU-2)"), "{out}");
    assert_eq!(fx.link("s9").unwrap()["mtu"], 9000);
    assert_eq!(
        fx.sh("host", "cat /sys/class/net/s9/mtu").trim(),
        "9000",
        "the device has it"
    );
    let warned = log_lines(&fx, "s9", "mtu 9000 is above master m0's 1500");
    assert!(
        warned.iter().any(|l| l.contains(" WARN ")),
        "{}",
        fx.daemon_log()
    );
    // Raised later, by the kernel's own tool: accepted, followed, and logged.
    fx.sh("host", "ip link set dev s9 mtu 8000");
    let followed = wait(Duration::from_secs(5), || {
        fx.link("s9").unwrap()["mtu"] == 8000
    });
    assert!(followed, "{:?}", fx.link("s9"));
    let logged = wait(Duration::from_secs(5), || {
        log_lines(&fx, "s9", "mtu 8000 is above master m0's 1500")
            .iter()
            .any(|l| l.contains(" WARN "))
    });
    assert!(logged, "{}", fx.daemon_log());
    // Within the master's, nothing is said.
    let out = fx.cli_ok(&[
        "link", "add", "link", "m0", "name", "s8", "mtu", "1400", "type", "ipvlan",
    ]);
    assert!(!out.contains("above master"), "{out}");
}

/// A container's end — its runtime deletes the namespace with the slave in it — is no fault:
/// the slave goes from `link show`, and the log says so at INFO with the container's
/// attachment. A slave the user made whose namespace is deleted is still a warning.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_container_exit_removes_its_slave_quietly() {
    require_env!();
    let mut fx = Fx::new();
    let cid = "5e1f0c0ffee0aa01";
    container_and_plain_slave(&mut fx, cid);
    fx.del_ns("ns0");
    fx.del_ns("ns1");
    let gone = wait(Duration::from_secs(10), || fx.links().is_empty());
    assert!(gone, "{:?}\n{}", fx.links(), fx.daemon_log());
    let info = log_lines(&fx, "ipvl0", "container gone: slave removed");
    assert_eq!(info.len(), 1, "{}", fx.daemon_log());
    for want in [
        " INFO ",
        "network=net1",
        &format!("container={cid}"),
        "ifname=eth0",
    ] {
        assert!(info[0].contains(want), "{want} in {}", info[0]);
    }
    let warned = log_lines(&fx, "ipvl0", " WARN ");
    assert!(warned.is_empty(), "{warned:?}");
    let plain = log_lines(&fx, "ipvl1", " WARN ");
    assert!(
        plain
            .iter()
            .any(|l| l.contains("is gone") || l.contains("namespace was deleted")),
        "{}",
        fx.daemon_log()
    );
}

/// The plugin's DEL while the daemon is down deletes CNI_IFNAME in CNI_NETNS itself. The
/// daemon's next start drops the slave — no device made again, no address kept — and says so
/// at INFO; a new slave takes the same addresses. Before that: the attachment is shown, saved
/// and kept across a restart.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_container_slave_deleted_while_the_daemon_is_down_is_dropped_with_its_addresses() {
    require_env!();
    let mut fx = Fx::new();
    let cid = "7a11c0ffee0aa02";
    container_and_plain_slave(&mut fx, cid);
    let want = serde_json::json!({"network": "net1", "containerID": cid, "ifname": "eth0"});
    assert_eq!(fx.link("ipvl0").unwrap()["attachment"], want);
    assert!(fx.link("ipvl1").unwrap().get("attachment").is_none());
    let shown = fx.cli_ok(&["-d", "link", "show", "ipvl0"]);
    assert!(
        shown.contains(&format!(" attachment net1/{cid}/eth0")),
        "{shown}"
    );
    let state_file = fx.state_dir.join("state.json");
    let state = || std::fs::read_to_string(&state_file).unwrap();
    assert!(state().contains(cid), "{}", state());
    // Kept across a restart.
    fx.stop_daemon(false);
    fx.start_daemon();
    assert_eq!(fx.link("ipvl0").unwrap()["attachment"], want);
    assert!(fx.ping("ns0", "192.0.2.254", 1), "{}", fx.daemon_log());

    fx.stop_daemon(false);
    fx.ip(&["-n", &fx.ns("ns0"), "link", "del", "eth0"]);
    fx.start_daemon();
    assert!(fx.link("ipvl0").is_none(), "{:?}", fx.links());
    assert!(fx.link("ipvl1").is_some(), "{:?}", fx.links());
    let st = state();
    assert!(!st.contains("ipvl0") && !st.contains(cid), "{st}");
    let dropped = log_lines(&fx, "ipvl0", "container gone while the daemon was down");
    assert!(
        dropped.iter().any(|l| l.contains(" INFO ")
            && l.contains(&format!("container={cid}"))
            && l.contains("network=net1")
            && l.contains("ifname=eth0")),
        "{}",
        fx.daemon_log()
    );
    assert!(
        log_lines(&fx, "ipvl0", " WARN ").is_empty(),
        "{}",
        fx.daemon_log()
    );
    // Not made again: the container's namespace has only its loopback.
    let left = fx.sh("ns0", "ip -o link show");
    assert_eq!(left.lines().count(), 1, "{left}");
    // Its addresses are free: a new slave takes them, unopposed, and is served.
    fx.slave(
        "ipvl2",
        "mode l2",
        "ns2",
        "192.0.2.11/24",
        "2001:db8:1::11/64",
    );
    let l = fx.link("ipvl2").unwrap();
    assert_eq!(l["conflicts"], serde_json::json!([]), "{l}");
    assert!(fx.ping("ns2", "192.0.2.254", 1), "{}", fx.daemon_log());
    assert!(fx.ping("ext", "192.0.2.11", 1), "{}", fx.daemon_log());
    assert!(fx.ping("ext", "2001:db8:1::11", 1), "{}", fx.daemon_log());
    assert!(fx.ping("ns1", "192.0.2.11", 1), "{}", fx.daemon_log());
}

/// `ipvlan -j -d -s link show` of live slaves is the README's schema (version 1): iproute2's
/// keys agreeing with what `ip -j link show` says of the same device, the `ipvlan_rs` object,
/// the ports; `-p` is the same document indented; `-br` one line per slave; an error under
/// `-j` is one JSON line on stderr with nothing on stdout.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn json_link_show_is_the_documented_schema_and_errors_are_json() {
    require_env!();
    let fx = two_slaves("mode l2 private");
    // The daemon's first line says which version runs.
    let log = fx.daemon_log();
    let first = log.lines().next().unwrap_or_default();
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(first.contains(&version), "{first}");
    let o = fx.cli(&["-j", "-d", "-s", "link", "show"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert!(doc["ports"].is_array(), "-s lists the ports: {doc}");
    let links = doc["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{doc}");
    for (l, (name, ns, addr)) in links.iter().zip([
        ("ipvl0", fx.ns("ns0"), "192.0.2.11"),
        ("ipvl1", fx.ns("ns1"), "192.0.2.12"),
    ]) {
        assert_eq!(l["ifname"], name, "{l}");
        assert_eq!(l["link"], "m0", "{l}");
        assert_eq!(l["operstate"], "UP", "{l}");
        assert_eq!(l["address"], "02:00:00:00:00:01", "{l}");
        assert!(l["flags"].as_array().unwrap().contains(&"UP".into()), "{l}");
        assert_eq!(l["linkinfo"]["info_kind"], "ipvlan", "{l}");
        assert_eq!(l["linkinfo"]["info_data"]["mode"], "l2", "{l}");
        assert_eq!(l["linkinfo"]["info_data"]["private"], true, "{l}");
        for dir in ["rx", "tx"] {
            for key in ["bytes", "packets", "dropped"] {
                assert!(l["stats64"][dir][key].is_u64(), "stats64.{dir}.{key}: {l}");
            }
        }
        let ours = &l["ipvlan_rs"];
        assert_eq!(ours["name"], name, "{l}");
        assert_eq!(ours["netns"], ns.as_str(), "{l}");
        assert!(ours["id"].is_u64() && ours["spoofchk"].is_boolean(), "{l}");
        assert!(
            ours["backend"].is_string() && ours["datapath"].is_string(),
            "{l}"
        );
        assert!(
            ours["addresses"].as_array().unwrap().contains(&addr.into()),
            "{l}"
        );
        assert!(
            ours["drops"].is_array() && ours["address_conflicts"].is_u64(),
            "{l}"
        );
        // Where the names overlap, the kernel says the same of the device (`operstate` is
        // what a kernel ipvlan slave would have: a TAP itself reports UNKNOWN).
        let short = if name == "ipvl0" { "ns0" } else { "ns1" };
        let ip: serde_json::Value =
            serde_json::from_str(&fx.sh(short, &format!("ip -j link show {name}"))).unwrap();
        for key in ["ifindex", "ifname", "mtu", "address", "flags"] {
            assert_eq!(ip[0][key], l[key], "{key}: ip says {}, ipvlan {l}", ip[0]);
        }
    }
    // -p: the same document, indented.
    let pretty = fx.cli(&["-j", "-p", "-d", "-s", "link", "show"]);
    let pretty_doc: serde_json::Value = serde_json::from_slice(&pretty.stdout).unwrap();
    assert!(String::from_utf8_lossy(&pretty.stdout).contains("\n  \"links\": ["));
    assert_eq!(pretty_doc["links"].as_array().map(Vec::len), Some(2));
    // -br: NAME@MASTER STATE MAC <FLAGS>, as `ip -br link`.
    let brief = fx.cli_ok(&["-br", "link", "show"]);
    let lines: Vec<&str> = brief.lines().collect();
    assert_eq!(lines.len(), 2, "{brief}");
    for (line, name) in lines.iter().zip(["ipvl0", "ipvl1"]) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[0], format!("{name}@m0"), "{line}");
        assert_eq!(cols[1..3], ["UP", "02:00:00:00:00:01"], "{line}");
        assert!(
            cols[3].starts_with('<') && cols[3].contains("LOWER_UP"),
            "{line}"
        );
    }
    // An error under -j.
    let o = fx.cli(&["-j", "link", "show", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(o.stdout.is_empty(), "{}", text(&o));
    let err: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(err["schema_version"], 1, "{err}");
    assert_eq!(err["error"]["kind"], "not_found", "{err}");
    assert_eq!(err["error"]["exit_code"], 2, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("nosuch"),
        "{err}"
    );
}

/// `ip -d link show` of slave `name` in namespace `ns`: its `alias …` line.
fn alias_line(fx: &Fx, ns: &str, name: &str) -> String {
    fx.sh(ns, &format!("ip -d link show {name}"))
        .lines()
        .find_map(|l| l.trim().strip_prefix("alias ").map(str::to_owned))
        .unwrap_or_default()
}

/// A slave's ifalias says what it is (`ip -d link` in its namespace), and follows the port's
/// mode and flag and the master's name; its identity in parentheses stays.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_slave_alias_says_what_it_is_and_follows_mode_and_master_name() {
    require_env!();
    let fx = two_slaves("mode l2");
    let first = alias_line(&fx, "ns0", "ipvl0");
    assert!(
        first.starts_with("ipvlan-rs l2 bridge on m0 id ") && first.contains(" (ipvlan-rs:"),
        "{first}"
    );
    let identity = first.rsplit_once('(').unwrap().1.to_owned();
    fx.cli_ok(&[
        "link", "set", "ipvl0", "type", "ipvlan", "mode", "l3", "private",
    ]);
    for (ns, name) in [("ns0", "ipvl0"), ("ns1", "ipvl1")] {
        let a = alias_line(&fx, ns, name);
        assert!(
            a.starts_with("ipvlan-rs l3 private on m0 id "),
            "{name}: {a}"
        );
    }
    assert!(alias_line(&fx, "ns0", "ipvl0").ends_with(&format!("({identity}")));
    // Back to l2 (bridge: R-CLI-2), then the master renamed: the aliases name it.
    fx.cli_ok(&["link", "set", "ipvl1", "type", "ipvlan", "mode", "l2"]);
    assert!(alias_line(&fx, "ns0", "ipvl0").starts_with("ipvlan-rs l2 bridge on m0 id "));
    fx.sh(
        "host",
        "ip link set m0 down && ip link set m0 name mren0 && ip link set mren0 up",
    );
    let renamed = wait(Duration::from_secs(5), || {
        alias_line(&fx, "ns1", "ipvl1").starts_with("ipvlan-rs l2 bridge on mren0 id ")
    });
    let now = alias_line(&fx, "ns1", "ipvl1");
    fx.sh(
        "host",
        "ip link set mren0 down && ip link set mren0 name m0 && ip link set m0 up",
    );
    assert!(renamed, "{now}\n{}", fx.daemon_log());
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.254",
        1
    )));
}

/// A slave whose device carries the alias older versions set (the bare identity,
/// `ipvlan-rs:<instance>:<master ifindex>:<id>`) is found and served after an upgrade, with
/// the state file and without it, and gets the labelled alias.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_slave_with_an_older_versions_alias_is_served_and_relabelled_after_an_upgrade() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    for lose_state in [false, true] {
        let label = alias_line(&fx, "ns0", "ipvl0");
        let identity = label
            .rsplit_once('(')
            .and_then(|(_, i)| i.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no identity in {label:?}"))
            .to_owned();
        fx.stop_daemon(false);
        fx.sh("ns0", &format!("ip link set ipvl0 alias '{identity}'"));
        if lose_state {
            std::fs::remove_file(fx.state_dir.join("state.json")).unwrap();
        }
        fx.start_daemon();
        let back = wait(Duration::from_secs(5), || fx.ping("ns0", "192.0.2.12", 1));
        assert!(back, "lose_state {lose_state}: {}", fx.daemon_log());
        assert_eq!(fx.links().len(), 2, "lose_state {lose_state}");
        let relabelled = alias_line(&fx, "ns0", "ipvl0");
        assert!(
            relabelled.starts_with("ipvlan-rs l") && relabelled.ends_with(&format!("({identity})")),
            "lose_state {lose_state}: {relabelled}"
        );
    }
}

/// A user's `ip link set SLAVE alias …` does not lose the slave: the alias carries the
/// slave's identity, by which a restarted daemon finds it. A running daemon puts its alias
/// back at once; one changed while the daemon was down is found anyway (veth slaves: by their
/// host end) and relabelled.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_slave_whose_alias_a_user_changed_is_not_lost() {
    require_env!();
    let mut fx = two_slaves("mode l2");
    let label = alias_line(&fx, "ns0", "ipvl0");
    fx.sh("ns0", "ip link set ipvl0 alias 'my uplink'");
    let restored = wait(Duration::from_secs(5), || {
        alias_line(&fx, "ns0", "ipvl0") == label
    });
    assert!(
        restored,
        "alias now {:?}\n{}",
        alias_line(&fx, "ns0", "ipvl0"),
        fx.daemon_log()
    );
    fx.sh("ns1", "ip link set ipvl1 alias ''");
    let restored = wait(Duration::from_secs(5), || {
        alias_line(&fx, "ns1", "ipvl1").starts_with("ipvlan-rs l2 bridge on m0 id ")
    });
    assert!(restored, "{}", fx.daemon_log());
    fx.stop_daemon(false);
    fx.start_daemon();
    assert_eq!(fx.links().len(), 2, "{}", fx.daemon_log());
    assert!(wait(Duration::from_secs(5), || fx.ping(
        "ns0",
        "192.0.2.12",
        1
    )));

    // Changed while the daemon is down: a veth slave is found by its host end.
    let veth = fx.links()[0]["backend"] == "veth";
    fx.stop_daemon(false);
    fx.sh("ns0", "ip link set ipvl0 alias 'changed while down'");
    fx.start_daemon();
    if veth {
        assert_eq!(fx.links().len(), 2, "{}", fx.daemon_log());
        assert_eq!(alias_line(&fx, "ns0", "ipvl0"), label);
        assert!(wait(Duration::from_secs(5), || fx.ping(
            "ns0",
            "192.0.2.12",
            1
        )));
    }
}

/// The binary itself (no root, no daemon): help and the version on stdout with exit 0, before
/// anything acts; an error under `-j` as JSON on stderr with iproute2's exit code.
#[test]
fn help_and_version_go_to_stdout_and_exit_0() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(common::BIN)
            .args(args)
            .env("IPVLAN_SOCKET", "/nonexistent/ipvlan.sock")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let version = format!("ipvlan utility, ipvlan-rs {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(run(&["-V"]), (Some(0), version.clone(), String::new()));
    assert_eq!(run(&["-Version"]), (Some(0), version, String::new()));
    for (args, starts) in [
        (&["demo", "--help"][..], "Usage: ipvlan demo"),
        (&["daemon", "--help"], "Usage: ipvlan daemon"),
        (&["matrix", "-h"], "Usage: ipvlan matrix"),
        (&["bench-forward", "help"], "Usage: ipvlan bench-forward"),
        (&["link", "help"], "Usage: ipvlan link add"),
        (&["link", "add", "--help"], "Usage: ipvlan link add"),
        (&["link", "set", "-h"], "Usage: ipvlan link add"),
        (&["link", "del", "help"], "Usage: ipvlan link add"),
        (&["link", "show", "--help"], "Usage: ipvlan link add"),
        (
            &["link", "add", "type", "ipvlan", "help"],
            "Usage: ... ipvlan [ mode MODE ] [ FLAGS ]\n\nMODE: l3 | l3s | l2\n",
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "`ipvlan {}`: {out}{err}", args.join(" "));
        assert!(
            out.starts_with(starts),
            "`ipvlan {}`: {out}",
            args.join(" ")
        );
        assert!(err.is_empty(), "`ipvlan {}`: {err}", args.join(" "));
    }
    let (code, out, err) = run(&["-j", "frob"]);
    assert_eq!((code, out.as_str()), (Some(255), ""));
    let e: serde_json::Value = serde_json::from_str(&err).unwrap();
    assert_eq!(e["error"]["kind"], "usage", "{err}");
    assert_eq!(e["error"]["exit_code"], 255, "{err}");
    // Under -j stderr holds JSON lines only, whatever the command: the CLI's own notes, and
    // the errors of `metrics` and `monitor` too.
    let json_lines = |err: &str| -> Vec<serde_json::Value> {
        err.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    };
    for (args, kind, exit) in [
        (
            &[
                "-j",
                "link",
                "add",
                "link",
                "m0",
                "s1",
                "address",
                "02:00:00:00:00:09",
                "type",
                "ipvlan",
            ][..],
            "unreachable",
            1,
        ),
        (&["-j", "metrics"], "unreachable", 1),
        (&["-j", "metrics", "--frob"], "usage", 255),
        (&["-j", "monitor", "drops"], "unreachable", 1),
    ] {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (Some(exit), ""), "{args:?}: {err}");
        let lines = json_lines(&err);
        let e = lines.last().unwrap();
        assert_eq!(e["error"]["kind"], kind, "{args:?}: {err}");
        if args.contains(&"address") {
            assert_eq!(lines[0]["note"]["level"], "note", "{err}");
        }
    }
}
