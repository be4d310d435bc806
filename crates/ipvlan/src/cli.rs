//! The command line: iproute2's grammar and habits (`ipvlan [-d] [-s] [-j] link add link eth0
//! ipvl0 type ipvlan mode l2`), talking to the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use ipvlan_core::{IfName, LinkArgsError, LinkTypeArgs};

use crate::proto::{
    AddressChange, BackendKind, ErrorKind, LinkAdd, LinkDel, LinkSet, LinkShow, LinkView, Request,
    Response, TapOwner, DEFAULT_SOCKET, DEFAULT_STATE_DIR,
};
use crate::tools::{bench_forward, demo, matrix};
use crate::{client, daemon};

mod json;

pub const USAGE: &str = "\
Usage: ipvlan [ OPTIONS ] OBJECT { COMMAND | help }
       ipvlan daemon [ --socket PATH ] [ --state-dir DIR ]
                     [ --datapath { auto | bpf | bpf-tc | user } ] [ --bpffs DIR ]
                     [ --metrics-listen [ADDR:]PORT ]
       ipvlan metrics [ --openmetrics ]
       ipvlan [ -j ] monitor drops [ dev NAME ] [ --pcap FILE ]
       ipvlan demo
       ipvlan matrix
       ipvlan bench-forward END END
       ipvlan -V[ersion]
where  OBJECT := { link | address }
       OPTIONS := { -V[ersion] | -d[etails] | -s[tatistics] | -j[son] | -p[retty] |
                    -br[ief] | -h[elp] | --socket PATH }

Usage: ipvlan link add link DEVICE [ name ] NAME [ mtu MTU ] [ spoofchk { on | off } ]
                 [ backend { veth | tap } ] type ipvlan [ mode MODE ] [ FLAGS ]
                 [ hostreach { on | off } ]
       ipvlan link delete [ dev ] NAME
       ipvlan link set [ dev ] NAME [ spoofchk { on | off } ] [ router { on | off } ]
                       [ type ipvlan [ mode MODE ] [ FLAGS ] ] [ hostreach { on | off } ]
       ipvlan link set [ dev ] MASTER hostreach { on | off }
       ipvlan [ -d ] [ -s ] [ -j [ -p ] ] [ -br ] link show [ [ dev ] NAME ]
       ipvlan link help
       ipvlan link add type ipvlan help
       ipvlan link add link DEVICE [ name ] NAME [ mtu MTU ] [ spoofchk { on | off } ]
                 type ipvtap [ mode MODE ] [ FLAGS ] [ user UID ] [ group GID ]
       ipvlan link add type ipvtap help
       ipvlan address { add | del } ADDR[/LEN] dev NAME
MODE: l3 | l3s | l2
FLAGS: bridge | private | vepa

The control socket is --socket PATH, else $IPVLAN_SOCKET, else /run/ipvlan/ipvlan.sock.
-j prints the JSON documented in the README (\"JSON output\", schema_version 1).";

/// `ipvlan link help`: the link object's part of [`USAGE`].
fn link_usage() -> &'static str {
    USAGE
        .find("Usage: ipvlan link")
        .map_or(USAGE, |at| &USAGE[at..])
}

const DEMO_USAGE: &str = "\
Usage: ipvlan demo
  Runs the README's demo as root in namespaces and devices of its own (a master, two
  slaves in two namespaces, a ping between them and to the outside), then removes them.";

const MATRIX_USAGE: &str = "\
Usage: ipvlan matrix
  Prints, for every mode and flag, who reaches whom (slave to slave, slave to the master's
  host, to the wire), as the daemon's switch decides it; needs no root and no devices.";

const BENCH_FORWARD_USAGE: &str = "\
Usage: ipvlan bench-forward { tap:NAME | packet:IFACE } { tap:NAME | packet:IFACE }
  Forwards frames between two ends as fast as it can, for `scripts/bench`'s baseline.";

/// What `-V` prints, as `ip -V` prints `ip utility, iproute2-6.1.0`.
pub fn version_line() -> String {
    format!("ipvlan utility, ipvlan-rs {}", env!("CARGO_PKG_VERSION"))
}

const DAEMON_USAGE: &str = "\
Usage: ipvlan daemon [ --socket PATH ] [ --state-dir DIR ]
                     [ --datapath { auto | bpf | bpf-tc | user } ] [ --bpffs DIR ]
                     [ --metrics-listen [ADDR:]PORT ]
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
                   give a bpffs mounted outside it.
  --metrics-listen [ADDR:]PORT
                   serve `ipvlan metrics` over HTTP at http://ADDR:PORT/metrics, for
                   Prometheus (off by default). PORT alone listens on 127.0.0.1:PORT
                   only; ADDR is a literal IPv4 address or [IPv6] (0.0.0.0 for every
                   interface: anyone who reaches it reads the slaves' names and counters).";

/// Exit codes as iproute2 uses them: 255 for command-line errors, 2 when the request is refused.
const EXIT_USAGE: u8 = 255;
const EXIT_BAD_ARG: u8 = 1;
const EXIT_REFUSED: u8 = 2;

#[derive(Debug, Default)]
struct Options {
    details: bool,
    stats: bool,
    json: bool,
    /// `-p[retty]`: indented JSON (no effect without `-j`, as in iproute2).
    pretty: bool,
    /// `-br[ief]`: one line per slave, `ip -br link` style.
    brief: bool,
    socket: Option<PathBuf>,
}

/// Why the command did not do what it was asked: the message, the exit code, and the error's
/// `kind` as `-j` reports it (`json::ERROR_KINDS`). Exit code 0 is help the user asked for:
/// the message goes to stdout and the command succeeds.
struct CliError {
    msg: String,
    code: u8,
    kind: &'static str,
}

impl CliError {
    fn new(msg: impl Into<String>, code: u8, kind: &'static str) -> CliError {
        CliError {
            msg: msg.into(),
            code,
            kind,
        }
    }
}

/// A command-line error (incomplete, unknown word): exit 255.
fn usage_error(msg: impl Into<String>) -> CliError {
    CliError::new(msg, EXIT_USAGE, "usage")
}

/// A malformed value (a mode, an MTU, on/off): exit 1.
fn bad_arg(msg: impl Into<String>) -> CliError {
    CliError::new(msg, EXIT_BAD_ARG, "invalid_argument")
}

/// Help the user asked for (`help`, `--help`, `-h`): printed on stdout, exit 0.
fn help(text: &str) -> CliError {
    CliError::new(text, 0, "help")
}

/// Whether `word` asks for help: `help`, `--help`, `-h` (and `-help`, iproute2's spelling).
fn is_help(word: &str) -> bool {
    matches!(word, "help" | "--help" | "-help" | "-h")
}

fn matches(word: &str, keyword: &str) -> bool {
    !word.is_empty() && keyword.starts_with(word)
}

/// iproute2's option matching (`ip.c`): one or two dashes, then any prefix of the option's
/// name at least as long as `shortest` (`-br` for `-brief`, so that `-b` stays free for a
/// future `-batch` as in iproute2).
fn option_is(opt: &str, name: &str, shortest: usize) -> bool {
    let word = opt.strip_prefix("--").or_else(|| opt.strip_prefix('-'));
    word.is_some_and(|w| w.len() >= shortest && name.starts_with(w))
}

pub fn main(args: Vec<String>) -> ExitCode {
    let mut opts = Options::default();
    match run(args, &mut opts) {
        Ok(code) => code,
        Err(CliError { msg, code: 0, .. }) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) if opts.json => {
            eprintln!("{}", json::error_line(&e.msg, e.kind, e.code));
            ExitCode::from(e.code)
        }
        Err(CliError { msg, code, .. }) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(args: Vec<String>, opts: &mut Options) -> Result<ExitCode, CliError> {
    let mut words = args.into_iter().peekable();
    while let Some(w) = words.peek().cloned() {
        if !w.starts_with('-') {
            break;
        }
        words.next();
        if option_is(&w, "Version", 1) {
            println!("{}", version_line());
            return Ok(ExitCode::SUCCESS);
        } else if option_is(&w, "details", 1) {
            opts.details = true;
        } else if option_is(&w, "statistics", 1) || option_is(&w, "stats", 1) {
            opts.stats = true;
        } else if option_is(&w, "json", 1) {
            opts.json = true;
        } else if option_is(&w, "pretty", 1) {
            opts.pretty = true;
        } else if option_is(&w, "brief", 2) {
            opts.brief = true;
        } else if option_is(&w, "socket", 6) {
            opts.socket = Some(
                words
                    .next()
                    .ok_or_else(|| usage_error("--socket needs a path"))?
                    .into(),
            )
        } else if option_is(&w, "help", 1) {
            return Err(help(USAGE));
        } else {
            return Err(usage_error(format!(
                "Option \"{w}\" is unknown, try \"ipvlan -help\"."
            )));
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
    let args = &rest[1..];
    match object.as_str() {
        "daemon" => run_daemon(args, socket),
        "demo" => {
            no_arguments(args, DEMO_USAGE)?;
            Ok(demo::main())
        }
        "bench-forward" => {
            if args.iter().any(|a| is_help(a)) {
                return Err(help(BENCH_FORWARD_USAGE));
            }
            Ok(bench_forward::main(args))
        }
        "matrix" => {
            no_arguments(args, MATRIX_USAGE)?;
            match matrix::render() {
                Ok(t) => {
                    print!("{t}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(CliError::new(
                    format!("ipvlan: {e}"),
                    EXIT_REFUSED,
                    "system",
                )),
            }
        }
        "help" => Err(help(USAGE)),
        o if matches(o, "monitor") => run_monitor(args, &socket, opts.json),
        o if matches(o, "link") => {
            let (req, notes) = parse_link(args)?;
            for n in &notes {
                print_note(n, opts.json);
            }
            send(&socket, &req, opts)
        }
        "metrics" => run_metrics(args, &socket),
        o if matches(o, "address") => send(&socket, &parse_address(args)?, opts),
        other => Err(usage_error(format!(
            "Object \"{other}\" is unknown, try \"ipvlan help\"."
        ))),
    }
}

/// A command that takes no arguments: help when asked for, a usage error for anything else.
fn no_arguments(args: &[String], usage: &str) -> Result<(), CliError> {
    match args {
        [] => Ok(()),
        _ if args.iter().any(|a| is_help(a)) => Err(help(usage)),
        _ => Err(usage_error(format!(
            "Garbage instead of arguments \"{}\".\n{usage}",
            args.join(" ")
        ))),
    }
}

/// A note or warning for the user on stderr: `note: …` / `warning: …`, or under `-j` one
/// JSON line (README "JSON output"), so that stderr holds nothing but JSON there.
pub(crate) fn print_note(note: &str, json: bool) {
    if json {
        eprintln!("{}", json::note_line(note));
    } else if note.starts_with("warning: ") {
        eprintln!("{note}");
    } else {
        eprintln!("note: {note}");
    }
}

/// A refusal by the daemon: exit 2, `-j`'s `kind` after the protocol's.
fn refused(message: &str, kind: ErrorKind) -> CliError {
    CliError::new(
        format!("Error: {message}"),
        EXIT_REFUSED,
        match kind {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not_found",
            ErrorKind::System => "system",
        },
    )
}

/// `metrics …` (`crate::metrics`): the text on stdout (also under `-j`: it is a format of its
/// own), errors as every command's.
fn run_metrics(args: &[String], socket: &std::path::Path) -> Result<ExitCode, CliError> {
    use crate::metrics::{self, Metrics};
    let format = match metrics::parse(args) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(help(metrics::USAGE)),
        Err(msg) => return Err(usage_error(format!("{msg}\n{}", metrics::USAGE))),
    };
    match metrics::fetch(socket, format) {
        Ok(Metrics::Text(t)) => {
            print!("{t}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Metrics::Refused { message, kind }) => Err(refused(&message, kind)),
        Err(e) => Err(CliError::new(
            format!("ipvlan: {e:#}"),
            EXIT_BAD_ARG,
            "unreachable",
        )),
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
        client::Parsed::Help => Err(help(client::USAGE)),
        client::Parsed::Run(args) => match client::run(socket, &args, json) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(client::Failure::Refused { message, kind }) => Err(refused(&message, kind)),
            Err(client::Failure::Unreachable(e)) => Err(CliError::new(
                format!("ipvlan: {e:#}"),
                EXIT_BAD_ARG,
                "unreachable",
            )),
            Err(client::Failure::Other(e)) => Err(CliError::new(
                format!("ipvlan: {e:#}"),
                EXIT_BAD_ARG,
                "system",
            )),
        },
    }
}

fn run_daemon(args: &[String], mut socket: PathBuf) -> Result<ExitCode, CliError> {
    let mut state_dir = PathBuf::from(DEFAULT_STATE_DIR);
    let mut datapath = daemon::DatapathChoice::Auto;
    let mut bpffs = PathBuf::from(crate::datapath::DEFAULT_BPFFS);
    let mut metrics_listen = None;
    // Help wherever it is, also where a value is expected (`--state-dir -h`): a daemon must
    // not start because help was asked in the wrong place.
    if args.iter().any(|a| is_help(a)) {
        return Err(help(DAEMON_USAGE));
    }
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
            "--metrics-listen" => {
                let v = it
                    .next()
                    .ok_or_else(|| usage_error("--metrics-listen needs [ADDR:]PORT"))?;
                metrics_listen =
                    Some(daemon::metrics_listen::parse_listen(v).map_err(usage_error)?);
            }
            h if is_help(h) => return Err(help(DAEMON_USAGE)),
            other => return Err(usage_error(format!("daemon: unknown option \"{other}\""))),
        }
    }
    crate::logging::init();
    match daemon::run(daemon::Config {
        socket,
        state_dir,
        datapath,
        bpffs,
        metrics_listen,
    }) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::new(format!("ipvlan daemon: {e:#}"), 1, "system")),
    }
}

/// Parses the words after `link`: the request, and notes for the user (printed before it is
/// sent).
fn parse_link(words: &[String]) -> Result<(Request, Vec<String>), CliError> {
    let Some(cmd) = words.first() else {
        return Ok((Request::LinkShow(LinkShow { name: None }), Vec::new()));
    };
    let rest = &words[1..];
    // Help before anything else: `link help`, `link add --help`, `link show -h`… (but
    // `… type ipvlan help` is the ipvlan type's own help, iproute2's text).
    let before_type = rest.iter().take_while(|w| *w != "type");
    if is_help(cmd) || before_type.clone().any(|w| is_help(w)) {
        return Err(help(link_usage()));
    }
    let no_notes = |r: Request| (r, Vec::new());
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
            Ok(no_notes(Request::LinkDel(LinkDel { name: name.clone() })))
        }
        c if matches(c, "set") => parse_set(rest).map(no_notes),
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
            Ok(no_notes(Request::LinkShow(LinkShow { name })))
        }
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
        "ipvtap" if words[pos + 2..].iter().any(|w| is_help(w)) => {
            return Err(help(IPVTAP_USAGE));
        }
        "ipvtap" => {}
        other => {
            return Err(bad_arg(format!(
                "ipvlan: this tool only creates ipvlan links, not \"{other}\""
            )))
        }
    }
    // `-h`/`--help` among the type's words too (iproute2 knows only `help` there, which the
    // parser below answers): help, as everywhere else.
    if words[pos + 2..].iter().any(|w| is_help(w)) {
        return Err(help(ipvlan_core::link_args::USAGE));
    }
    let args = LinkTypeArgs::parse(&words[pos + 2..]).map_err(|e| match e {
        // iproute2's own text (`ip/iplink_ipvlan.c`), on stdout with exit 0 as every help
        // here (iproute2 prints it on stderr and exits 1: its parser treats help as an error).
        LinkArgsError::Help => help(ipvlan_core::link_args::USAGE),
        LinkArgsError::Incomplete => usage_error(e.to_string()),
        _ => bad_arg(e.to_string()),
    })?;
    Ok((&words[..pos], Some(args)))
}

/// Takes `hostreach on|off` out of `words`, wherever it is (before or after `type ipvlan`).
fn take_hostreach(words: &[String]) -> Result<(Vec<String>, Option<bool>), CliError> {
    let mut rest = Vec::with_capacity(words.len());
    let mut hostreach = None;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "hostreach" {
            let v = it.next().ok_or_else(|| {
                usage_error("Command line is not complete: \"hostreach\" needs on or off")
            })?;
            hostreach = Some(on_off("hostreach", v)?);
        } else {
            rest.push(w.clone());
        }
    }
    Ok((rest, hostreach))
}

/// `ipvlan link add type ipvtap help`.
const IPVTAP_USAGE: &str = "\
Usage: ipvlan link add link DEVICE [ name ] NAME [ mtu MTU ] [ spoofchk { on | off } ]
                 type ipvtap [ mode MODE ] [ FLAGS ] [ user UID ] [ group GID ]

MODE: l3 | l3s | l2
FLAGS: bridge | private | vepa
(first values are the defaults if nothing is specified).

A persistent single-queue TAP named NAME in DEVICE's namespace for a virtual machine monitor
to open by name (QEMU -netdev tap,ifname=NAME,script=no,downscript=no; Firecracker
host_dev_name): the guest is the slave. Its NIC must carry DEVICE's MAC. user/group: who may
open the TAP without CAP_NET_ADMIN (default: root only). The guest's addresses: ipvlan address
add ADDR dev NAME.";

/// Whether `words` hold `type ipvtap`.
fn is_ipvtap(words: &[String]) -> bool {
    words.windows(2).any(|w| w[0] == "type" && w[1] == "ipvtap")
}

/// Takes `user UID` and `group GID` out of a `type ipvtap` command line.
fn take_tap_owner(words: &[String]) -> Result<(Vec<String>, Option<TapOwner>), CliError> {
    let mut rest = Vec::new();
    let mut owner = TapOwner::default();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        let slot = match w.as_str() {
            "user" => &mut owner.user,
            "group" => &mut owner.group,
            _ => {
                rest.push(w.clone());
                continue;
            }
        };
        let v = it.next().ok_or_else(|| {
            usage_error(format!(
                "Command line is not complete: \"{w}\" needs a value"
            ))
        })?;
        *slot = Some(v.parse::<u32>().map_err(|_| {
            bad_arg(format!(
                "Error: argument \"{v}\" is wrong: \"{w}\" is a numeric id"
            ))
        })?);
    }
    let given = owner.user.is_some() || owner.group.is_some();
    Ok((rest, given.then_some(owner)))
}

/// `address { add | del } ADDR[/LEN] dev NAME` (iproute2's `ip address` grammar; `local ADDR`
/// too). The prefix length is accepted and ignored.
fn parse_address(words: &[String]) -> Result<Request, CliError> {
    const HINT: &str = "Try \"ipvlan help\".";
    let Some(cmd) = words.first() else {
        return Err(usage_error(format!(
            "Not enough information: give \"add\" or \"del\" (ipvlan link show lists the addresses). {HINT}"
        )));
    };
    if words.iter().any(|w| is_help(w)) {
        return Err(help(
            "Usage: ipvlan address { add | del } ADDR[/LEN] dev NAME\n\
             The addresses of an ipvtap slave's guest (ipvlan link show lists them).",
        ));
    }
    let add =
        match cmd.as_str() {
            c if matches(c, "add") => true,
            c if matches(c, "delete") => false,
            c if matches(c, "show") || matches(c, "list") || c == "ls" => return Err(usage_error(
                "ipvlan address has no show: \"ipvlan link show\" lists every slave's addresses",
            )),
            other => {
                return Err(usage_error(format!(
                    "Command \"{other}\" is unknown, try \"ipvlan help\"."
                )))
            }
        };
    let (mut dev, mut addr) = (None, None);
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "dev" => {
                dev = Some(it.next().cloned().ok_or_else(|| {
                    usage_error("Command line is not complete: \"dev\" needs a value")
                })?);
            }
            "local" => {
                addr = Some(it.next().cloned().ok_or_else(|| {
                    usage_error("Command line is not complete: \"local\" needs a value")
                })?);
            }
            a if addr.is_none() => addr = Some(a.to_owned()),
            other => {
                return Err(usage_error(format!(
                    "Error: either \"local\" is duplicate, or \"{other}\" is a garbage."
                )))
            }
        }
    }
    let addr = addr.ok_or_else(|| {
        usage_error(format!(
            "Not enough information: an address is required. {HINT}"
        ))
    })?;
    let dev =
        dev.ok_or_else(|| usage_error("Not enough information: \"dev\" argument is required."))?;
    let bad = || {
        bad_arg(format!(
            "Error: any valid prefix is expected rather than \"{addr}\"."
        ))
    };
    let (ip, len) = match addr.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
        None => (addr.as_str(), None),
    };
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_some_and(|l| l > max) {
        return Err(bad());
    }
    let change = AddressChange {
        dev,
        address: ip,
        prefix_len: len,
    };
    Ok(if add {
        Request::AddressAdd(change)
    } else {
        Request::AddressDel(change)
    })
}

/// `backend` given with `type ipvtap`, before or after `type`.
const BACKEND_WITH_IPVTAP: &str =
    "Error: \"backend\" does not go with type ipvtap: an ipvtap is a TAP for a VMM";

fn parse_add(words: &[String]) -> Result<(Request, Vec<String>), CliError> {
    let (words, hostreach) = take_hostreach(words)?;
    let ipvtap = is_ipvtap(&words);
    let (words, tap_owner) = if ipvtap {
        take_tap_owner(&words)?
    } else {
        (words, None)
    };
    let words = &words[..];
    // After `type ipvtap` too: said as clearly as before it (not iproute2's "unknown option").
    if ipvtap
        && words
            .iter()
            .skip_while(|w| *w != "type")
            .any(|w| w == "backend")
    {
        return Err(bad_arg(BACKEND_WITH_IPVTAP));
    }
    let (head, args) = split_type(words)?;
    let args =
        args.ok_or_else(|| usage_error("Not enough information: \"type\" argument is required"))?;
    let (mut master, mut name, mut mtu, mut spoofchk) = (None, None, None, None);
    let mut backend = None;
    let mut notes = Vec::new();
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
                    bad_arg(format!(
                        "Error: argument \"{v}\" is wrong: Invalid \"mtu\" value"
                    ))
                })?);
            }
            "spoofchk" => spoofchk = Some(on_off("spoofchk", &value("spoofchk")?)?),
            "backend" if ipvtap => return Err(bad_arg(BACKEND_WITH_IPVTAP)),
            "backend" => {
                let v = value("backend")?;
                backend = Some(BackendKind::parse(&v).ok_or_else(|| {
                    bad_arg(format!(
                        "Error: argument \"{v}\" is wrong: \"backend\" is veth or tap"
                    ))
                })?);
            }
            "address" => {
                value("address")?; // R-MAC-1: replaced by the master's MAC anyway.
                notes
                    .push("a slave always carries its master's MAC; \"address\" is ignored".into());
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
        CliError::new(
            "Error: an ipvlan link needs its master: \"link DEVICE\" is required (R-CRT-1)",
            EXIT_REFUSED,
            "invalid",
        )
    })?;
    let name =
        name.ok_or_else(|| usage_error("Not enough information: \"name\" argument is required."))?;
    IfName::new(&name).map_err(|e| bad_arg(format!("Error: {e}")))?;
    let req = Request::LinkAdd(LinkAdd {
        master,
        name,
        mode: args.mode,
        flag: args.flag,
        mtu,
        spoofchk,
        backend: if ipvtap {
            Some(BackendKind::Ipvtap)
        } else {
            backend
        },
        attachment: None,
        hostreach,
        tap_owner,
    });
    Ok((req, notes))
}

/// `on` or `off`, as iproute2 spells boolean settings.
fn on_off(what: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(bad_arg(format!(
            "Error: argument of \"{what}\" must be \"on\" or \"off\", not \"{v}\""
        ))),
    }
}

/// `link set [dev] NAME [spoofchk on|off] [type ipvlan [mode M] [FLAG]]`.
fn parse_set(words: &[String]) -> Result<Request, CliError> {
    let (words, hostreach) = take_hostreach(words)?;
    let (head, args) = split_type(&words)?;
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
            // The mode or a flag without "type ipvlan" before it: say where it goes (not to
            // `ip link set`, which the message below would say).
            w @ ("mode" | "bridge" | "private" | "vepa") => {
                let dev = name.as_deref().unwrap_or("NAME");
                let mode = if w == "mode" {
                    it.next().map_or(" M".to_owned(), |m| format!(" {m}"))
                } else {
                    String::new()
                };
                return Err(bad_arg(format!(
                    "\"{w}\" goes after \"type ipvlan\": ipvlan link set dev {dev} type ipvlan {w}{mode}"
                )));
            }
            other => {
                return Err(bad_arg(format!(
                        "ipvlan link set changes the ipvlan mode, flag and spoofchk; for \"{other}\" use `ip link set`: slaves are ordinary devices"
                    )))
            }
        }
    }
    let name =
        name.ok_or_else(|| usage_error("Not enough information: \"dev\" argument is required."))?;
    if args.is_none() && spoofchk.is_none() && router.is_none() && hostreach.is_none() {
        return Err(usage_error(
            "Not enough information: give \"type ipvlan\" with a mode or flag, \"spoofchk on|off\" or \"hostreach on|off\"",
        ));
    }
    let args = args.unwrap_or_default();
    Ok(Request::LinkSet(LinkSet {
        name,
        mode: args.mode,
        flag: args.flag,
        spoofchk,
        router,
        hostreach,
    }))
}

fn send(socket: &std::path::Path, req: &Request, opts: &Options) -> Result<ExitCode, CliError> {
    let resp = client::call(socket, req)
        .map_err(|e| CliError::new(format!("ipvlan: {e:#}"), EXIT_BAD_ARG, "unreachable"))?;
    match resp {
        Response::Ok {
            notes,
            links,
            ports,
        } => {
            for n in notes {
                print_note(&n, opts.json);
            }
            if matches!(req, Request::LinkShow(_)) {
                if opts.json {
                    println!("{}", json::link_show(&links, &ports, opts));
                } else if opts.brief {
                    for l in &links {
                        println!("{}", render_brief(l));
                    }
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
                        for p in ports.iter().filter(|p| p.dhcp_xid_taken > 0) {
                            println!(
                                "master {}: dhcp requests that took another slave's xid: {}",
                                p.master, p.dhcp_xid_taken
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        // Every refusal exits 2, as iproute2 does for an answer it does not like.
        Response::Error { message, kind } => Err(refused(&message, kind)),
    }
}

/// A slave's link flags and operational state, as `ip link` shows a kernel ipvlan slave's:
/// (`["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]`, `"UP"`).
fn link_flags(l: &LinkView) -> (Vec<&'static str>, &'static str) {
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
    (flags, state)
}

/// One slave in `ip -br link` style (`ip/ipaddress.c` `print_linkinfo_brief`): the name and
/// its master padded to 16, the state to 14, the MAC, the flags, each followed by a space.
fn render_brief(l: &LinkView) -> String {
    let (flags, state) = link_flags(l);
    let name = format!("{}@{}", l.current_name, l.master);
    format!("{name:<16} {state:<14} {} <{}> ", l.mac, flags.join(","))
}

/// One slave in `ip link show` style.
fn render(l: &LinkView, opts: &Options) -> String {
    let (flags, state) = link_flags(l);
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
            _ if l.backend == "veth" || l.backend == "ipvtap" => String::new(),
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
        let hostreach = match (&l.host_device, l.hostreach) {
            (Some(d), true) => format!(" hostreach on host-device {d}"),
            (None, true) => " hostreach on".to_owned(),
            (_, false) => String::new(),
        };
        // An ipvtap shows as the kernel's does (`ip -d link`: `ipvtap  mode l2 bridge`).
        let kind = if l.backend == "ipvtap" {
            "ipvtap"
        } else {
            "ipvlan"
        };
        s.push_str(&format!(
            "    {kind}  mode {} {} dev_id {:#x} spoofchk {}{}{backend}{host_end}{datapath}{queues}{attachment}{hostreach}\n",
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
        if t.dhcp_steered > 0 {
            s.push_str(&format!("    dhcp replies steered: {}\n", t.dhcp_steered));
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
