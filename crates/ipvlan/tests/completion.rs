//! `deploy/completion/ipvlan.bash`: sourced in a real bash, its completion function is called
//! as bash calls it (`COMP_WORDS`, `COMP_CWORD`) and `COMPREPLY` is compared. The daemon's
//! slaves come from `ipvlan link show`: from a stand-in that prints what the CLI prints, from
//! this build's CLI with no daemon (nothing, silently), and (root) from a real daemon.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fx;

const BIN: &str = env!("CARGO_BIN_EXE_ipvlan");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/completion/ipvlan.bash")
}

/// A directory of this test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let d =
            std::env::temp_dir().join(format!("ipvlan-completion-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `COMPREPLY` for the command line `words` (the last one is the word being completed), with
/// `words[0]` as the `ipvlan` the function asks for slaves; and what bash wrote on stderr.
fn complete_with(env: &[(&str, &str)], words: &[&str]) -> (Vec<String>, String) {
    complete_in(None, env, words)
}

/// [`complete_with`] in the network namespace `netns` (`ip netns exec`), or here.
fn complete_in(netns: Option<&str>, env: &[(&str, &str)], words: &[&str]) -> (Vec<String>, String) {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let prog = format!(
        "set -u; source \"$1\"; COMP_WORDS=({}); COMP_CWORD={}; _ipvlan; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        quoted.join(" "),
        words.len() - 1
    );
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "bash"]);
            c
        }
        None => Command::new("bash"),
    };
    let o = cmd
        .args(["--norc", "--noprofile", "-c", &prog, "bash"])
        .arg(script())
        .env_remove("IPVLAN_SOCKET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success(), "bash: {o:?}");
    let mut reply: Vec<String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    reply.sort();
    (reply, String::from_utf8(o.stderr).unwrap())
}

fn complete(words: &[&str]) -> Vec<String> {
    let (reply, stderr) = complete_with(&[], words);
    assert!(stderr.is_empty(), "{words:?}: stderr {stderr}");
    reply
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_script_is_valid_bash() {
    let o = Command::new("bash")
        .arg("-n")
        .arg(script())
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn objects_options_commands_and_keywords() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["ipvlan", ""],
            &[
                "link", "address", "metrics", "monitor", "daemon", "demo", "matrix", "help",
            ],
        ),
        (&["ipvlan", "m"], &["metrics", "monitor", "matrix"]),
        (&["ipvlan", "-d", "-s", "l"], &["link"]),
        (&["ipvlan", "--socket", "/nowhere", "li"], &["link"]),
        (
            &["ipvlan", "-"],
            &[
                "-d",
                "-details",
                "-s",
                "-statistics",
                "-j",
                "-json",
                "-p",
                "-pretty",
                "-br",
                "-brief",
                "--socket",
                "-V",
                "-Version",
                "-h",
                "-help",
            ],
        ),
        (&["ipvlan", "-b"], &["-br", "-brief"]),
        (
            &["ipvlan", "link", ""],
            &["add", "delete", "set", "show", "help"],
        ),
        (&["ipvlan", "link", "s"], &["set", "show"]),
        (
            &["ipvlan", "link", "add", ""],
            &[
                "link",
                "name",
                "mtu",
                "spoofchk",
                "backend",
                "hostreach",
                "type",
                "help",
            ],
        ),
        // Keywords already given are not offered again.
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "mtu", "1400", "",
            ],
            &["name", "spoofchk", "backend", "hostreach", "type", "help"],
        ),
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "spoofchk", "",
            ],
            &["on", "off"],
        ),
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "backend", "",
            ],
            &["veth", "tap"],
        ),
        (
            &["ipvlan", "link", "add", "link", "m0", "ipvl0", "type", ""],
            &["ipvlan", "ipvtap"],
        ),
        // An ipvtap's owner, at add only.
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "vmtap0", "type", "ipvtap", "",
            ],
            &["mode", "bridge", "private", "vepa", "help", "user", "group"],
        ),
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "vmtap0", "type", "ipvtap", "user", "",
            ],
            &[],
        ),
        (
            &[
                "ipvlan", "link", "set", "vmtap0", "type", "ipvtap", "private", "",
            ],
            &["mode", "help"],
        ),
        (&["ipvlan", "a"], &["address"]),
        (&["ipvlan", "address", ""], &["add", "del", "help"]),
        (&["ipvlan", "address", "add", "192.0.2.50/24", ""], &["dev"]),
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "type", "ipvlan", "",
            ],
            &["mode", "bridge", "private", "vepa", "help"],
        ),
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "type", "ipvlan", "mode", "",
            ],
            &["l2", "l3", "l3s"],
        ),
        // One flag only (iproute2 refuses a second).
        (
            &[
                "ipvlan", "link", "add", "link", "m0", "ipvl0", "type", "ipvlan", "private", "",
            ],
            &["mode", "help"],
        ),
        (
            &["ipvlan", "link", "set", "dev", "ipvl0", ""],
            &["spoofchk", "router", "hostreach", "type"],
        ),
        (
            &["ipvlan", "link", "set", "dev", "ipvl0", "router", ""],
            &["on", "off"],
        ),
        (
            &[
                "ipvlan", "link", "set", "ipvl0", "type", "ipvlan", "mode", "l3", "",
            ],
            &["mode", "bridge", "private", "vepa", "help"],
        ),
        (&["ipvlan", "monitor", ""], &["drops", "help"]),
        (
            &["ipvlan", "monitor", "drops", ""],
            &["dev", "--pcap", "help"],
        ),
        (
            &["ipvlan", "daemon", ""],
            &[
                "--socket",
                "--state-dir",
                "--datapath",
                "--bpffs",
                "--metrics-listen",
                "help",
            ],
        ),
        (
            &["ipvlan", "daemon", "--datapath", ""],
            &["auto", "bpf", "bpf-tc", "user"],
        ),
        (
            &["ipvlan", "daemon", "--datapath", "bpf"],
            &["bpf", "bpf-tc"],
        ),
        (&["ipvlan", "metrics", ""], &["--openmetrics", "help"]),
        (&["ipvlan", "matrix", ""], &["help"]),
    ];
    for (words, want) in cases {
        assert_eq!(complete(words), sorted(want), "{words:?}");
    }
}

/// What the daemon makes in the master's namespace and refuses as a master: veth host ends
/// (`ipvh<master ifindex>-<id>`) and l3s sinks (`ipvls<ifindex>`).
fn daemon_made(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let host_end = name
        .strip_prefix("ipvh")
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(m, i)| digits(m) && digits(i));
    host_end || name.strip_prefix("ipvls").is_some_and(digits)
}

/// `link DEVICE` completes the interfaces of this namespace, as /sys/class/net lists them
/// (but those the daemon made itself).
#[test]
fn link_device_completes_interface_names() {
    let mut ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !daemon_made(n))
        .collect();
    ifaces.sort();
    assert!(ifaces.contains(&"lo".to_string()));
    assert_eq!(complete(&["ipvlan", "link", "add", "link", ""]), ifaces);
    assert_eq!(complete(&["ipvlan", "link", "add", "link", "l"]), ["lo"]);
}

/// Slave names come from `ipvlan link show` (the first word of each `IDX: NAME@MASTER:`
/// line), through the `--socket` given on the line.
#[test]
fn slave_names_come_from_link_show() {
    let dir = TempDir::new("fake");
    let fake = dir.0.join("ipvlan");
    let args_log = dir.0.join("args");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\ncat <<'END'\n\
7: ipvl0@m0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP netns ns0\n    \
link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n    \
ipvlan  mode l2 bridge dev_id 0x1 spoofchk off\n    addresses 192.0.2.11\n\
9: ipvl1 (now eth0)@m0: <BROADCAST,MULTICAST> mtu 1500 state DOWN\n    \
link/ether 02:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff\nEND\n",
            args_log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = fake.to_str().unwrap();
    for words in [
        vec![f, "link", "del", ""],
        vec![f, "link", "show", ""],
        vec![f, "link", "set", ""],
    ] {
        assert_eq!(
            complete(&words),
            ["dev", "help", "ipvl0", "ipvl1"],
            "{words:?}"
        );
    }
    for words in [
        vec![f, "link", "delete", "dev", ""],
        vec![f, "link", "set", "dev", ""],
        vec![f, "-d", "link", "show", "dev", "ipvl"],
    ] {
        assert_eq!(complete(&words), ["ipvl0", "ipvl1"], "{words:?}");
    }
    // monitor drops dev: slaves and masters.
    let r = complete(&[f, "monitor", "drops", "dev", ""]);
    assert!(
        r.contains(&"ipvl0".to_string()) && r.contains(&"lo".to_string()),
        "{r:?}"
    );
    // The socket typed on the line is the one asked.
    std::fs::remove_file(&args_log).unwrap();
    complete(&[f, "--socket", "/run/other.sock", "link", "del", ""]);
    assert_eq!(
        std::fs::read_to_string(&args_log).unwrap().trim(),
        "--socket /run/other.sock link show"
    );
}

/// With no daemon to ask (this build's CLI, a socket that does not exist): no slave names,
/// and nothing on the terminal.
#[test]
fn no_daemon_no_slave_names_and_no_noise() {
    let dir = TempDir::new("none");
    let sock = dir.0.join("none.sock");
    let (reply, stderr) = complete_with(
        &[("IPVLAN_SOCKET", sock.to_str().unwrap())],
        &[BIN, "link", "del", ""],
    );
    assert_eq!(reply, ["dev", "help"]);
    assert!(stderr.is_empty(), "{stderr}");
    let (reply, stderr) = complete_with(
        &[],
        &[
            BIN,
            "--socket",
            sock.to_str().unwrap(),
            "link",
            "set",
            "dev",
            "",
        ],
    );
    assert!(reply.is_empty(), "{reply:?}");
    assert!(stderr.is_empty(), "{stderr}");
}

/// A real daemon's slaves, through `IPVLAN_SOCKET`.
#[test]
#[ignore = "needs root, iproute2, nftables, TUN"]
fn slave_names_from_a_real_daemon() {
    require_env!();
    let fx = Fx::new();
    fx.cli_ok(&[
        "link", "add", "link", "m0", "ipvl0", "type", "ipvlan", "mode", "l2",
    ]);
    fx.cli_ok(&[
        "link", "add", "link", "m0", "ipvl1", "type", "ipvlan", "mode", "l2",
    ]);
    let sock = fx.socket.to_str().unwrap().to_owned();
    let (reply, stderr) = complete_with(
        &[("IPVLAN_SOCKET", &sock)],
        &[BIN, "link", "del", "dev", ""],
    );
    assert_eq!(reply, ["ipvl0", "ipvl1"], "{stderr}");
    let (reply, _) = complete_with(&[], &[BIN, "--socket", &sock, "link", "set", "ipvl"]);
    assert_eq!(reply, ["ipvl0", "ipvl1"]);
    // In the daemon's namespace: the veth host ends (`ipvh…`, which the daemon refuses as
    // masters) are no masters to offer, nor devices to watch; the slaves and m0 are.
    let host = fx.ns("host");
    let (reply, stderr) = complete_in(Some(&host), &[], &[BIN, "link", "add", "link", ""]);
    assert!(reply.contains(&"m0".to_string()), "{reply:?} {stderr}");
    assert!(reply.iter().all(|n| !daemon_made(n)), "{reply:?}");
    let (reply, _) = complete_in(
        Some(&host),
        &[],
        &[BIN, "--socket", &sock, "monitor", "drops", "dev", ""],
    );
    assert!(reply.contains(&"ipvl0".to_string()), "{reply:?}");
    assert!(reply.iter().all(|n| !daemon_made(n)), "{reply:?}");
}
