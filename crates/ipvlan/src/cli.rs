//! The command line: iproute2's grammar and habits (`ipvlan [-d] [-s] [-j] link add link eth0
//! ipvl0 type ipvlan mode l2`), talking to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use ipvlan_core::{IfName, LinkArgsError, LinkTypeArgs};

use crate::proto::{
    BackendKind, LinkAdd, LinkDel, LinkSet, LinkShow, LinkView, Request, Response, DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
};
use crate::tools::{bench_forward, demo, matrix};
use crate::{client, daemon};

pub const USAGE: &str = "\
Usage: ipvlan [ OPTIONS ] OBJECT { COMMAND | help }
       ipvlan daemon [ --socket PATH ] [ --state-dir DIR ]
                     [ --datapath { auto | bpf | bpf-tc | user } ] [ --bpffs DIR ]
       ipvlan [ -j ] monitor drops [ dev NAME ] [ --pcap FILE ]
       ipvlan demo
       ipvlan matrix
where  OBJECT := link
       OPTIONS := { -d[etails] | -s[tatistics] | -j[son] | --socket PATH }

Usage: ipvlan link add link DEVICE [ name ] NAME [ mtu MTU ] [ spoofchk { on | off } ]
                 [ backend { veth | tap } ] type ipvlan [ mode MODE ] [ FLAGS ]
       ipvlan link delete [ dev ] NAME
       ipvlan link set [ dev ] NAME [ spoofchk { on | off } ] [ router { on | off } ]
                       [ type ipvlan [ mode MODE ] [ FLAGS ] ]
       ipvlan [ -d ] [ -s ] [ -j ] link show [ [ dev ] NAME ]
MODE: l3 | l3s | l2
FLAGS: bridge | private | vepa

The control socket is --socket PATH, else $IPVLAN_SOCKET, else /run/ipvlan/ipvlan.sock.";

const DAEMON_USAGE: &str = "\
Usage: ipvlan daemon [ --socket PATH ] [ --state-dir DIR ]
                     [ --datapath { auto | bpf | bpf-tc | user } ] [ --bpffs DIR ]
  --socket PATH    the control socket (default /run/ipvlan/ipvlan.sock, or $IPVLAN_SOCKET)
  --state-dir DIR  the saved configuration (default /var/lib/ipvlan)
  --datapath       what switches new ports' frames: auto (default) = eBPF programs in the
                   kernel where it can load and attach them (veth slaves; tcx on the master
                   from Linux 6.6), else the daemon's userspace workers; bpf = eBPF or refuse
                   to start; bpf-tc = eBPF attached as clsact filters everywhere; user = the
                   userspace workers (TAP slaves, or veth where there is no /dev/net/tun).
                   A port that starts in l3s always gets the userspace workers.
  --bpffs DIR      where bpffs is mounted, or is to be (default /sys/fs/bpf); the eBPF
                   ports pin their programs under DIR/ipvlan-rs, so they forward on while
                   the daemon is down. Under `ip netns exec` (a mount namespace of its own)
                   give a bpffs mounted outside it.";

/// Exit codes as iproute2 uses them: 255 for command-line errors, 2 when the request is refused.
const EXIT_USAGE: u8 = 255;
const EXIT_BAD_ARG: u8 = 1;
const EXIT_REFUSED: u8 = 2;

#[derive(Debug, Default)]
struct Options {
    details: bool,
    stats: bool,
    json: bool,
    socket: Option<PathBuf>,
}

/// A command-line error: message and exit code.
struct CliError(String, u8);

fn usage_error(msg: impl Into<String>) -> CliError {
    CliError(msg.into(), EXIT_USAGE)
}

fn matches(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

pub fn main(args: Vec<String>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(CliError(msg, code)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, CliError> {
    let mut opts = Options::default();
    let mut words = args.into_iter().peekable();
    while let Some(w) = words.peek().cloned() {
        if !w.starts_with('-') {
            break;
        }
        words.next();
        match w.trim_start_matches('-') {
            "d" | "details" => opts.details = true,
            "s" | "stats" | "statistics" => opts.stats = true,
            "j" | "json" => opts.json = true,
            "socket" => {
                opts.socket = Some(
                    words
                        .next()
                        .ok_or_else(|| usage_error("--socket needs a path"))?
                        .into(),
                )
            }
            "h" | "help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            _ => {
                return Err(usage_error(format!(
                    "Option \"{w}\" is unknown, try \"ipvlan -help\"."
                )))
            }
        }
    }
    let rest: Vec<String> = words.collect();
    let Some(object) = rest.first() else {
        return Err(usage_error(USAGE));
    };
    let socket = opts
        .socket
        .clone()
        .or_else(|| std::env::var_os("IPVLAN_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    match object.as_str() {
        "daemon" => run_daemon(&rest[1..], socket),
        "demo" => Ok(demo::main()),
        "bench-forward" => Ok(bench_forward::main(&rest[1..])),
        "matrix" => match matrix::render() {
            Ok(t) => {
                print!("{t}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(CliError(format!("ipvlan: {e}"), EXIT_REFUSED)),
        },
        "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        o if matches(o, "monitor") => run_monitor(&rest[1..], &socket, opts.json),
        o if matches(o, "link") => {
            let req = parse_link(&rest[1..])?;
            send(&socket, &req, &opts)
        }
        other => Err(usage_error(format!(
            "Object \"{other}\" is unknown, try \"ipvlan help\"."
        ))),
    }
}

/// `monitor …` (`crate::monitor::client`).
fn run_monitor(
    words: &[String],
    socket: &std::path::Path,
    json: bool,
) -> Result<ExitCode, CliError> {
    use crate::monitor::client;
    match client::parse(words).map_err(usage_error)? {
        client::Parsed::Help => {
            println!("{}", client::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        client::Parsed::Run(args) => match client::run(socket, &args, json) {
            Ok(Ok(())) => Ok(ExitCode::SUCCESS),
            Ok(Err(refused)) => Err(CliError(format!("ipvlan: {refused}"), EXIT_REFUSED)),
            Err(e) => Err(CliError(format!("ipvlan: {e:#}"), EXIT_BAD_ARG)),
        },
    }
}

fn run_daemon(args: &[String], mut socket: PathBuf) -> Result<ExitCode, CliError> {
    let mut state_dir = PathBuf::from(DEFAULT_STATE_DIR);
    let mut datapath = daemon::DatapathChoice::Auto;
    let mut bpffs = PathBuf::from(crate::datapath::DEFAULT_BPFFS);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => {
                socket = it
                    .next()
                    .ok_or_else(|| usage_error("--socket needs a path"))?
                    .into()
            }
            "--state-dir" => {
                state_dir = it
                    .next()
                    .ok_or_else(|| usage_error("--state-dir needs a directory"))?
                    .into()
            }
            "--datapath" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage_error("--datapath needs auto, bpf, bpf-tc or user"))?;
                datapath = daemon::DatapathChoice::parse(v).ok_or_else(|| {
                    usage_error(format!(
                        "--datapath: \"{v}\" is not one of auto, bpf, bpf-tc, user"
                    ))
                })?;
            }
            "--bpffs" => {
                bpffs = it
                    .next()
                    .ok_or_else(|| usage_error("--bpffs needs a directory"))?
                    .into()
            }
            "-h" | "--help" | "help" => {
                println!("{DAEMON_USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(usage_error(format!("daemon: unknown option \"{other}\""))),
        }
    }
    crate::logging::init();
    match daemon::run(daemon::Config {
        socket,
        state_dir,
        datapath,
        bpffs,
    }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError(format!("ipvlan daemon: {e:#}"), 1)),
    }
}

/// Parses the words after `link`.
fn parse_link(words: &[String]) -> Result<Request, CliError> {
    let Some(cmd) = words.first() else {
        return Ok(Request::LinkShow(LinkShow { name: None }));
    };
    let rest = &words[1..];
    match cmd.as_str() {
        c if matches(c, "add") => parse_add(rest),
        c if matches(c, "delete") || c == "del" => {
            let name = match rest {
                [d, n] if d == "dev" => n,
                [n] => n,
                [] => {
                    return Err(usage_error(
                        "Not enough information: \"dev\" argument is required.",
                    ))
                }
                _ => {
                    return Err(usage_error(format!(
                        "Garbage instead of arguments \"{}\". Try \"ipvlan link help\".",
                        rest.join(" ")
                    )))
                }
            };
            Ok(Request::LinkDel(LinkDel { name: name.clone() }))
        }
        c if matches(c, "set") => parse_set(rest),
        c if matches(c, "show") || matches(c, "list") || c == "ls" => {
            let name = match rest {
                [] => None,
                [d, n] if d == "dev" => Some(n.clone()),
                [n] => Some(n.clone()),
                _ => {
                    return Err(usage_error(format!(
                        "Garbage instead of arguments \"{}\". Try \"ipvlan link help\".",
                        rest.join(" ")
                    )))
                }
            };
            Ok(Request::LinkShow(LinkShow { name }))
        }
        "help" => Err(CliError(USAGE.into(), EXIT_USAGE)),
        other => Err(usage_error(format!(
            "Command \"{other}\" is unknown, try \"ipvlan link help\"."
        ))),
    }
}

/// Splits `… type ipvlan ARGS` into the words before `type` and the ipvlan arguments.
fn split_type(words: &[String]) -> Result<(&[String], Option<LinkTypeArgs>), CliError> {
    let Some(pos) = words.iter().position(|w| w == "type") else {
        return Ok((words, None));
    };
    let kind = words
        .get(pos + 1)
        .ok_or_else(|| usage_error("Command line is not complete. Try option \"help\""))?;
    match kind.as_str() {
        "ipvlan" => {}
        "ipvtap" => {
            return Err(CliError(
                "ipvlan: type ipvtap is not supported yet; use type ipvlan".into(),
                EXIT_BAD_ARG,
            ))
        }
        other => {
            return Err(CliError(
                format!("ipvlan: this tool only creates ipvlan links, not \"{other}\""),
                EXIT_BAD_ARG,
            ))
        }
    }
    let args = LinkTypeArgs::parse(&words[pos + 2..]).map_err(|e| {
        let code = match e {
            LinkArgsError::Incomplete | LinkArgsError::Help => EXIT_USAGE,
            _ => EXIT_BAD_ARG,
        };
        CliError(e.to_string(), code)
    })?;
    Ok((&words[..pos], Some(args)))
}

fn parse_add(words: &[String]) -> Result<Request, CliError> {
    let (head, args) = split_type(words)?;
    let args =
        args.ok_or_else(|| usage_error("Not enough information: \"type\" argument is required"))?;
    let (mut master, mut name, mut mtu, mut spoofchk) = (None, None, None, None);
    let mut backend = None;
    let mut it = head.iter();
    while let Some(w) = it.next() {
        let mut value = |what: &str| {
            it.next().cloned().ok_or_else(|| {
                usage_error(format!(
                    "Command line is not complete: \"{what}\" needs a value"
                ))
            })
        };
        match w.as_str() {
            "link" => master = Some(value("link")?),
            "name" | "dev" => name = Some(value("name")?),
            "mtu" => {
                let v = value("mtu")?;
                mtu = Some(v.parse::<u32>().map_err(|_| {
                    CliError(
                        format!("Error: argument \"{v}\" is wrong: Invalid \"mtu\" value"),
                        EXIT_BAD_ARG,
                    )
                })?);
            }
            "spoofchk" => spoofchk = Some(on_off("spoofchk", &value("spoofchk")?)?),
            "backend" => {
                let v = value("backend")?;
                backend = Some(BackendKind::parse(&v).ok_or_else(|| {
                    CliError(
                        format!("Error: argument \"{v}\" is wrong: \"backend\" is veth or tap"),
                        EXIT_BAD_ARG,
                    )
                })?);
            }
            "address" => {
                value("address")?; // R-MAC-1: replaced by the master's MAC anyway.
                eprintln!("note: a slave always carries its master's MAC; \"address\" is ignored");
            }
            other if name.is_none() => name = Some(other.to_owned()),
            other => {
                return Err(usage_error(format!(
                    "Error: either \"dev\" is duplicate, or \"{other}\" is a garbage."
                )))
            }
        }
    }
    let master = master.ok_or_else(|| {
        CliError(
            "Error: an ipvlan link needs its master: \"link DEVICE\" is required (R-CRT-1)".into(),
            EXIT_REFUSED,
        )
    })?;
    let name =
        name.ok_or_else(|| usage_error("Not enough information: \"name\" argument is required."))?;
    IfName::new(&name).map_err(|e| CliError(format!("Error: {e}"), EXIT_BAD_ARG))?;
    Ok(Request::LinkAdd(LinkAdd {
        master,
        name,
        mode: args.mode,
        flag: args.flag,
        mtu,
        spoofchk,
        backend,
        attachment: None,
    }))
}

/// `on` or `off`, as iproute2 spells boolean settings.
fn on_off(what: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(CliError(
            format!("Error: argument of \"{what}\" must be \"on\" or \"off\", not \"{v}\""),
            EXIT_BAD_ARG,
        )),
    }
}

/// `link set [dev] NAME [spoofchk on|off] [type ipvlan [mode M] [FLAG]]`.
fn parse_set(words: &[String]) -> Result<Request, CliError> {
    let (head, args) = split_type(words)?;
    let mut it = head.iter();
    let mut name = None;
    let (mut spoofchk, mut router) = (None, None);
    while let Some(w) = it.next() {
        match w.as_str() {
            "dev" if name.is_none() => name = it.next().cloned(),
            "spoofchk" => {
                let v = it.next().ok_or_else(|| usage_error("Command line is not complete: \"spoofchk\" needs on or off"))?;
                spoofchk = Some(on_off("spoofchk", v)?);
            }
            "router" => {
                let v = it.next().ok_or_else(|| usage_error("Command line is not complete: \"router\" needs on or off"))?;
                router = Some(on_off("router", v)?);
            }
            n if name.is_none() => name = Some(n.to_owned()),
            other => {
                return Err(CliError(
                    format!(
                        "ipvlan link set changes the ipvlan mode, flag and spoofchk; for \"{other}\" use `ip link set`: slaves are ordinary devices"
                    ),
                    EXIT_BAD_ARG,
                ))
            }
        }
    }
    let name =
        name.ok_or_else(|| usage_error("Not enough information: \"dev\" argument is required."))?;
    if args.is_none() && spoofchk.is_none() && router.is_none() {
        return Err(usage_error(
            "Not enough information: give \"type ipvlan\" with a mode or flag, or \"spoofchk on|off\"",
        ));
    }
    let args = args.unwrap_or_default();
    Ok(Request::LinkSet(LinkSet {
        name,
        mode: args.mode,
        flag: args.flag,
        spoofchk,
        router,
    }))
}

fn send(socket: &std::path::Path, req: &Request, opts: &Options) -> Result<ExitCode, CliError> {
    let resp =
        client::call(socket, req).map_err(|e| CliError(format!("ipvlan: {e:#}"), EXIT_BAD_ARG))?;
    match resp {
        Response::Ok {
            notes,
            links,
            ports,
        } => {
            for n in notes {
                if n.starts_with("warning: ") {
                    eprintln!("{n}");
                } else {
                    eprintln!("note: {n}");
                }
            }
            if matches!(req, Request::LinkShow(_)) {
                if opts.json {
                    println!("{}", serde_json::to_string(&links).unwrap_or_default());
                } else {
                    for l in &links {
                        print!("{}", render(l, opts));
                    }
                    if opts.stats {
                        for p in ports.iter().filter(|p| !p.drops.is_empty()) {
                            let d: Vec<String> = p
                                .drops
                                .iter()
                                .map(|d| format!("{} {}", d.reason, d.count))
                                .collect();
                            println!(
                                "master {} (no slave charged): drops: {}",
                                p.master,
                                d.join(", ")
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        // Every refusal exits 2, as iproute2 does for an answer it does not like.
        Response::Error { message, .. } => Err(CliError(format!("Error: {message}"), EXIT_REFUSED)),
    }
}

/// One slave in `ip link show` style.
fn render(l: &LinkView, opts: &Options) -> String {
    let mut flags = vec!["BROADCAST", "MULTICAST"];
    if l.noarp {
        flags.push("NOARP");
    }
    if l.up {
        flags.push("UP");
    }
    if l.up && l.carrier {
        flags.push("LOWER_UP");
    }
    let state = match (l.up, l.carrier) {
        (true, true) => "UP",
        (true, false) => "LOWERLAYERDOWN",
        _ => "DOWN",
    };
    let shown = if l.current_name != l.name {
        format!("{} (now {})", l.name, l.current_name)
    } else {
        l.name.clone()
    };
    let mut s = format!(
        "{}: {shown}@{}: <{}> mtu {} state {state}",
        l.ifindex,
        l.master,
        flags.join(","),
        l.mtu
    );
    if let Some(ns) = &l.netns {
        s.push_str(&format!(" netns {ns}"));
    }
    s.push('\n');
    s.push_str(&format!("    link/ether {} brd ff:ff:ff:ff:ff:ff\n", l.mac));
    if opts.details {
        let backend = if l.backend.is_empty() {
            String::new()
        } else {
            format!(" backend {}", l.backend)
        };
        let queues = match l.queues {
            // veth slaves have no queues of ours; 0: a daemon from before queues were reported
            _ if l.backend == "veth" => String::new(),
            0 => String::new(),
            1 => " queues 1".to_string(),
            n => format!(" queues {n} (flows steered over the workers)"),
        };
        let datapath = if l.datapath.is_empty() {
            String::new()
        } else {
            format!(" datapath {}", l.datapath)
        };
        let host_end = l
            .host_end
            .as_ref()
            .map(|h| format!(" host-end {h}"))
            .unwrap_or_default();
        // Made by a container plugin: which network, container and interface it is for.
        let attachment = l
            .attachment
            .as_ref()
            .map(|a| format!(" attachment {}/{}/{}", a.network, a.container_id, a.ifname))
            .unwrap_or_default();
        s.push_str(&format!(
            "    ipvlan  mode {} {} dev_id {:#x} spoofchk {}{}{backend}{host_end}{datapath}{queues}{attachment}\n",
            l.mode,
            l.flag,
            l.id,
            if l.spoofchk { "on" } else { "off" },
            if l.router { " router on" } else { "" }
        ));
    }
    if !l.addresses.is_empty() {
        s.push_str(&format!("    addresses {}\n", l.addresses.join(" ")));
    }
    for c in &l.conflicts {
        s.push_str(&format!(
            "    conflict {}: already owned by {}, not served to this slave\n",
            c.address, c.owner
        ));
    }
    if opts.stats {
        let t = &l.stats;
        s.push_str("    RX:  bytes packets multicast dropped\n");
        s.push_str(&format!(
            "    {:>9} {:>7} {:>9} {:>7}\n",
            t.rx_bytes, t.rx_packets, t.rx_multicast, t.rx_dropped
        ));
        s.push_str("    TX:  bytes packets errors dropped\n");
        s.push_str(&format!(
            "    {:>9} {:>7} {:>6} {:>7}\n",
            t.tx_bytes, t.tx_packets, t.tx_errors, t.tx_dropped
        ));
        if !t.drops.is_empty() {
            let d: Vec<String> = t
                .drops
                .iter()
                .map(|d| format!("{} {} {}", d.direction, d.reason, d.count))
                .collect();
            s.push_str(&format!("    drops: {}\n", d.join(", ")));
        }
        if t.address_conflicts > 0 {
            s.push_str(&format!("    address conflicts: {}\n", t.address_conflicts));
        }
    }
    s
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
