//! End to end: `ipvlan monitor drops` (issue 18 point 3). Drops are provoked with unicast
//! between the two slaves of an l3 `private` port (each one a `private_unicast` drop charged
//! to the sender, `tx`); the monitor's lines, its pcap-ng file read back by tcpdump and by a
//! pcap-ng reader (the reason comments), a stopped monitor that must not hurt forwarding, and
//! the rate limit under a flood. Runs on whatever data path the suite asks for
//! (`IPVLAN_TEST_DATAPATH`, `IPVLAN_TEST_BACKEND`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{text, wait, Fx, BIN};

/// Two l3 private slaves: s1 in ns1 (198.51.100.11), s2 in ns2 (198.51.100.12), each routing
/// everything through its slave. IPv4 only: IPv6 is off in their namespaces, so that no
/// start-up router solicitation or MLD report (dropped by l3 as `l3_multicast`, whenever its
/// timer fires) mixes into the drops the tests count.
fn private_pair() -> Fx {
    let mut fx = Fx::new();
    for n in 1..=2 {
        let ns = format!("ns{n}");
        fx.add_ns(&ns);
        fx.sh(
            &ns,
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        );
        fx.slave(
            &format!("s{n}"),
            "mode l3 private",
            &format!("ns{n}"),
            &format!("198.51.100.1{n}/32"),
            "",
        );
        fx.sh(&format!("ns{n}"), &format!("ip route add default dev s{n}"));
    }
    fx.sh("ext", "ip route add 198.51.100.0/24 via 192.0.2.1");
    fx
}

/// A running `ipvlan monitor drops …`, its output going to files.
struct Monitor {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Monitor {
    fn start(fx: &Fx, tag: &str, args: &[&str]) -> Monitor {
        let out = fx.dir().join(format!("{tag}.out"));
        let err = fx.dir().join(format!("{tag}.err"));
        let child = Command::new("ip")
            .args(["netns", "exec", &fx.ns("host")])
            .arg(BIN)
            .arg("--socket")
            .arg(&fx.socket)
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let m = Monitor {
            child: Some(child),
            out,
            err,
        };
        // Watching once it said so (the daemon accepted it).
        assert!(
            wait(Duration::from_secs(5), || m
                .stderr()
                .contains("watching drops")
                || args.contains(&"-j") && m.daemon_has_it(fx)),
            "the monitor did not start: {}\n{}",
            m.stderr(),
            fx.daemon_log()
        );
        m
    }

    fn daemon_has_it(&self, fx: &Fx) -> bool {
        fx.daemon_log().contains("drop monitor started")
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id();
        // SAFETY: signalling the child this test spawned, by its PID.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    /// Ctrl-C: it must end by itself, cleanly (exit 0).
    fn interrupt(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGINT);
        let mut c = self.child.take().unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > Duration::from_secs(5) {
                let _ = c.kill();
                panic!("the monitor did not end on SIGINT: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The EPB comments of a pcap-ng file, in order.
fn pcap_comments(path: &Path) -> Vec<String> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    let data = std::fs::read(path).unwrap();
    let mut r = pcap_file::pcapng::PcapNgReader::new(&data[..]).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(e) = b.unwrap() {
            for o in e.options {
                if let EnhancedPacketOption::Comment(c) = o {
                    out.push(c.into_owned());
                }
            }
        }
    }
    out
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, tcpdump"]
fn drops_are_shown_with_their_reason_and_written_as_pcap() {
    require_env!();
    let fx = private_pair();
    let pcap = fx.dir().join("drops.pcapng");
    let mut human = Monitor::start(
        &fx,
        "human",
        &[
            "monitor",
            "drops",
            "dev",
            "s1",
            "--pcap",
            pcap.to_str().unwrap(),
        ],
    );
    let mut json = Monitor::start(&fx, "json", &["-j", "monitor", "drops"]);
    let mut other = Monitor::start(&fx, "other", &["monitor", "drops", "dev", "s2"]);

    const N: usize = 5;
    assert!(
        !fx.ping("ns1", "198.51.100.12", N as u32),
        "private: no unicast between slaves"
    );
    let shown = |m: &Monitor| {
        m.stdout()
            .lines()
            .filter(|l| l.contains("private_unicast"))
            .count()
    };
    assert!(
        wait(Duration::from_secs(5), || shown(&human) >= N
            && shown(&json) >= N),
        "human:\n{}\njson:\n{}\n{}",
        human.stdout(),
        json.stdout(),
        fx.daemon_log()
    );
    let datapath = fx.datapath().unwrap();
    // The data path asked for is the one watched.
    match fx.datapath.as_deref() {
        Some("bpf-tc") => assert_eq!(datapath, "bpf-tc"),
        Some("user") => assert_eq!(datapath, "user"),
        _ => {}
    }
    eprintln!("data path: {datapath}");
    assert!(human.interrupt().success(), "Ctrl-C ends it cleanly");
    assert!(json.interrupt().success());
    assert!(other.interrupt().success());

    // Human: one line per drop: time, dev, direction, reason, what the frame is.
    let lines: Vec<String> = human.stdout().lines().map(String::from).collect();
    assert_eq!(lines.len(), N, "{lines:?} ({datapath})");
    for l in &lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        assert!(w[0].len() == 15 && w[0].as_bytes()[2] == b':', "time: {l}");
        assert_eq!(&w[1..4], ["s1", "tx", "private_unicast"], "{l}");
        assert!(
            l.contains("IP 198.51.100.11 > 198.51.100.12: ICMP echo request, length 98"),
            "{l}"
        );
    }
    assert!(
        human.stderr().contains(&format!("{N} drops shown")),
        "{}",
        human.stderr()
    );
    // JSON lines.
    let drops: Vec<serde_json::Value> = json
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["reason"] == "private_unicast")
        .collect();
    assert_eq!(drops.len(), N, "{}", json.stdout());
    for d in &drops {
        assert_eq!(d["dev"], "s1");
        assert_eq!(d["master"], "m0");
        assert_eq!(d["direction"], "tx");
        assert_eq!(d["len"], 98);
        assert!(d["time_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
    }
    // The filter: nothing of s1's reaches the s2 monitor (s2's own start-up IPv6 multicast,
    // dropped by l3 as l3_multicast, may: it is s2's).
    for line in other.stdout().lines() {
        let dev = line.split_whitespace().nth(1);
        assert!(
            dev == Some("s2") && !line.contains("private_unicast"),
            "not s2's: {line}\n{}",
            other.stderr()
        );
    }

    // tcpdump reads the file: the echo requests, addresses and all.
    let o = Command::new("tcpdump")
        .args(["-r"])
        .arg(&pcap)
        .arg("-nn")
        .output()
        .expect("tcpdump (Debian package tcpdump)");
    assert!(o.status.success(), "tcpdump: {}", text(&o));
    let read = String::from_utf8_lossy(&o.stdout);
    let echoes = read
        .lines()
        .filter(|l| l.contains("IP 198.51.100.11 > 198.51.100.12: ICMP echo request"))
        .count();
    assert_eq!(echoes, N, "{read}");
    // Each packet's comment is its reason.
    let comments = pcap_comments(&pcap);
    assert_eq!(
        comments,
        vec!["private_unicast (tx s1 on m0)".to_string(); N],
        "{datapath}"
    );
    // The last watcher gone, the daemon turned copying off.
    assert!(
        wait(Duration::from_secs(5), || fx
            .daemon_log()
            .contains("drop monitor ended watchers=0")),
        "{}",
        fx.daemon_log()
    );
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn monitor_refuses_an_unknown_device_and_answers_help() {
    require_env!();
    let fx = private_pair();
    let o = fx.cli(&["monitor", "drops", "dev", "nosuch0"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nosuch0"), "{}", text(&o));
    let o = fx.cli(&["monitor", "drops", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("Usage: ipvlan [ -j ] monitor drops"));
    // A master names its port: accepted.
    let mut m = Monitor::start(&fx, "master", &["monitor", "drops", "dev", "m0"]);
    assert!(!fx.ping("ns1", "198.51.100.12", 1));
    assert!(wait(Duration::from_secs(5), || m
        .stdout()
        .contains("s1 tx private_unicast")));
    assert!(m.interrupt().success());
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_stopped_monitor_does_not_hurt_forwarding() {
    require_env!();
    let fx = private_pair();
    let m = Monitor::start(&fx, "stopped", &["-j", "monitor", "drops"]);
    m.signal(libc::SIGSTOP);
    // Drops keep coming while it reads nothing, for longer than a write may wait.
    let flood = Command::new("ip")
        .args(["netns", "exec", &fx.ns("ns1")])
        .args(["ping", "-q", "-i", "0.002", "-w", "6", "198.51.100.12"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        assert!(
            fx.ping("ns1", "192.0.2.254", 1),
            "forwarding while a monitor is stopped"
        );
        let c = Instant::now();
        fx.cli_ok(&["link", "show", "s1"]);
        assert!(
            c.elapsed() < Duration::from_secs(2),
            "the daemon answers at once"
        );
    }
    let _ = flood.wait_with_output();
    // The stuck client was let go while still stopped: its socket filled, a write waited
    // longer than the daemon allows.
    assert!(
        wait(Duration::from_secs(8), || fx
            .daemon_log()
            .contains("drop monitor ended watchers=0")),
        "{}",
        fx.daemon_log()
    );
    drop(m);
    assert!(fx.ping("ns1", "192.0.2.254", 1));
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn copies_are_rate_limited_under_a_flood() {
    require_env!();
    let fx = private_pair();
    let mut m = Monitor::start(&fx, "flood", &["monitor", "drops"]);
    let t = Instant::now();
    // As fast as it goes (`ping -f` waits 10 ms for a reply that never comes: 100 a second,
    // under the budget): 2000 datagrams, each a private_unicast drop.
    fx.python(
        "ns1",
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for i in range(2000):\n\
         \x20s.sendto(b'x'*32,('198.51.100.12',9))",
        &[],
    );
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(1500)); // the next report of what was not copied
    assert!(m.interrupt().success());
    let shown = m.stdout().lines().count() as u64;
    // The budget: 200 copies a second (per CPU on the eBPF path).
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let bound = 200 * cpus * (took.as_secs() + 3);
    assert!(shown > 0, "{}", m.stderr());
    assert!(shown <= bound.min(1999), "{shown} copies in {took:?}");
    let err = m.stderr();
    assert!(
        err.contains("not copied (at most 200 a second)"),
        "what was not copied is reported: {err}"
    );
}

/// A monitor of a slave that is then deleted ends, saying so (exit 2, as for a device that
/// never was), as tcpdump ends when its interface goes; one of every drop runs on.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn a_monitor_of_a_deleted_slave_ends_and_says_why() {
    require_env!();
    let fx = private_pair();
    let mut of_s2 = Monitor::start(&fx, "of-s2", &["monitor", "drops", "dev", "s2"]);
    let mut of_all = Monitor::start(&fx, "all", &["monitor", "drops"]);
    let json = Monitor::start(&fx, "json", &["-j", "monitor", "drops", "dev", "s2"]);
    fx.cli_ok(&["link", "del", "s2"]);
    let mut c = of_s2.child.take().unwrap();
    let ended = wait(Duration::from_secs(5), || c.try_wait().unwrap().is_some());
    if !ended {
        let _ = c.kill();
    }
    assert!(ended, "still watching a deleted slave: {}", of_s2.stderr());
    assert_eq!(c.wait().unwrap().code(), Some(2), "{}", of_s2.stderr());
    assert!(of_s2.stderr().contains("s2 is gone"), "{}", of_s2.stderr());
    // Under -j the reason is a JSON error line on stderr, and nothing else is there.
    let mut j = json;
    let mut c = j.child.take().unwrap();
    assert!(wait(Duration::from_secs(5), || c
        .try_wait()
        .unwrap()
        .is_some()));
    let err = j.stderr();
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["kind"], "not_found", "{err}");
    for l in err.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
    }
    // The monitor of every drop is untouched.
    assert!(of_all.child.as_mut().unwrap().try_wait().unwrap().is_none());
    assert!(of_all.interrupt().success());
}

/// Under `-j` the monitor's stderr is JSON lines only (the daemon's notes too); a `--pcap`
/// file that cannot be written is an error of kind `system`, not `unreachable`; a refused
/// monitor leaves no capture file behind; a monitor started in the background by a script
/// (SIGINT ignored, as shells start `cmd &`) still ends cleanly on SIGINT.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn monitor_errors_and_notes_under_json_and_a_background_monitor_ends_on_sigint() {
    require_env!();
    let fx = private_pair();
    let mut m = Monitor::start(&fx, "json-notes", &["-j", "monitor", "drops"]);
    assert!(!fx.ping("ns1", "198.51.100.12", 1));
    assert!(wait(Duration::from_secs(5), || m
        .stdout()
        .contains("private_unicast")));
    assert!(m.interrupt().success());
    let err = m.stderr();
    assert!(err.contains("\"note\""), "{err}");
    for l in err.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
    }

    let o = fx.cli(&[
        "-j",
        "monitor",
        "drops",
        "--pcap",
        "/nonexistent-dir/x.pcapng",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // The daemon's note (it accepted), then the error: JSON lines.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let e = lines.last().unwrap();
    assert_eq!(e["error"]["kind"], "system", "{e}");

    let refused = fx.dir().join("refused.pcapng");
    let o = fx.cli(&["monitor", "drops", "dev", "nosuch0", "--pcap"]);
    assert_eq!(
        o.status.code(),
        Some(255),
        "--pcap needs a file: {}",
        text(&o)
    );
    let o = fx.cli(&[
        "monitor",
        "drops",
        "dev",
        "nosuch0",
        "--pcap",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        !refused.exists(),
        "a refused monitor created {}",
        refused.display()
    );

    // As `sh -c 'ipvlan monitor drops & …'` starts it: SIGINT ignored on entry.
    let out = fx.dir().join("bg.out");
    let script = format!(
        "ip netns exec {} {BIN} --socket {} monitor drops >{} 2>&1 & echo $!; wait",
        fx.ns("host"),
        fx.socket.display(),
        out.display()
    );
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pid = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(sh.stdout.take().unwrap())
        .read_line(&mut pid)
        .unwrap();
    let pid: i32 = pid.trim().parse().unwrap();
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        wait(Duration::from_secs(5), || read().contains("watching drops")),
        "{}",
        read()
    );
    // SAFETY: signalling the monitor this test started (through its shell), by its PID.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let ended = wait(Duration::from_secs(5), || sh.try_wait().unwrap().is_some());
    if !ended {
        // SAFETY: as above; it did not end, so it is still ours to kill.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = sh.wait();
    }
    assert!(ended, "a background monitor ignored SIGINT: {}", read());
    assert!(read().contains("drops shown"), "{}", read());
}
