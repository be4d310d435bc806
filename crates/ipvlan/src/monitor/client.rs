//! The CLI's side: `ipvlan [-j] monitor drops [dev NAME] [--pcap FILE]`.
//!
//! Prints one line per dropped frame (`tcpdump`'s brevity: time, device, direction, reason,
//! what the frame is) or, with `-j`, one JSON object per line; with `--pcap FILE` also writes
//! the copies as pcap-ng (one Ethernet interface `ipvlan-drops`, nanosecond timestamps, the
//! reason as each packet's comment: `opt_comment`, pcap-ng draft section 4.3), flushed after
//! each packet so the file is readable while it grows. SIGINT or SIGTERM (Ctrl-C) ends it
//! cleanly: the file is complete, a summary goes to standard error, the exit code is 0.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use super::summary::summarize;
use super::{unhex, Direction, Item, SNAPLEN};
use crate::proto::{ErrorKind, MonitorDrops, Request, Response};

pub const USAGE: &str = "\
Usage: ipvlan [ -j ] monitor drops [ dev NAME ] [ --pcap FILE ]
  Shows the frames the data path drops, live, with the reason (as `link show -s` counts
  them): time, device, direction (tx: sent by the slave; rx: for it; port: the master's),
  reason, and what the frame is. dev NAME: only a slave's drops, or (a master) its port's.
  --pcap FILE: also writes them as pcap-ng (tcpdump -r FILE), the reason as each packet's
  comment. Copies hold a frame's first 128 bytes, at most 200 a second; what is not copied
  is reported. Ctrl-C ends it.";

/// `monitor drops …` parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub dev: Option<String>,
    pub pcap: Option<PathBuf>,
}

/// What the command line asked: the monitor, or its help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Args),
    Help,
}

/// Parses the words after `monitor`. Errors: the message for the user (usage error).
pub fn parse(words: &[String]) -> std::result::Result<Parsed, String> {
    // Help wherever it is, also where a value is expected (`dev -h`, `--pcap --help`).
    if words
        .iter()
        .any(|w| matches!(w.as_str(), "help" | "-h" | "--help" | "-help"))
    {
        return Ok(Parsed::Help);
    }
    let mut it = words.iter();
    match it.next().map(String::as_str) {
        Some("drops") => {}
        None | Some("help" | "-h" | "--help") => return Ok(Parsed::Help),
        Some(other) => {
            return Err(format!(
                "Command \"{other}\" is unknown, try \"ipvlan monitor help\"."
            ))
        }
    }
    let mut args = Args {
        dev: None,
        pcap: None,
    };
    while let Some(w) = it.next() {
        match w.as_str() {
            "help" | "-h" | "--help" => return Ok(Parsed::Help),
            "dev" => {
                args.dev = Some(it.next().ok_or("dev needs a device name")?.clone());
            }
            "--pcap" | "-pcap" | "pcap" => {
                args.pcap = Some(it.next().ok_or("--pcap needs a file")?.into());
            }
            other if args.dev.is_none() && !other.starts_with('-') => {
                args.dev = Some(other.to_owned())
            }
            other => return Err(format!("monitor drops: unknown argument \"{other}\"")),
        }
    }
    Ok(Parsed::Run(args))
}

/// The pcap-ng file being written.
struct Pcap {
    w: PcapNgWriter<BufWriter<File>>,
}

impl Pcap {
    fn create(path: &Path) -> Result<Pcap> {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = PcapNgWriter::new(BufWriter::new(f)).context("writing the pcap-ng header")?;
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAPLEN as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed("ipvlan-drops")),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed(
                    "frames dropped by ipvlan-rs, with the reason as the comment",
                )),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .context("writing the pcap-ng interface")?;
        w.get_mut().flush().context("writing the pcap-ng file")?;
        Ok(Pcap { w })
    }

    fn write(&mut self, time_ns: u64, len: u32, data: &[u8], comment: String) -> Result<()> {
        self.w
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(time_ns),
                original_len: len,
                data: Cow::Borrowed(data),
                options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment))],
            })
            .context("writing to the pcap-ng file")?;
        self.w.get_mut().flush().context("writing the pcap-ng file")
    }
}

/// One drop as `-j` prints it (one object a line): the stream's fields and a summary.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    /// Nanoseconds since the Unix epoch.
    time_ns: u64,
    master: &'a str,
    dev: &'a str,
    direction: Direction,
    reason: &'a str,
    /// Whole length of the frame, bytes.
    len: u32,
    /// What the frame is, as the human output says it.
    summary: &'a str,
    /// Its first bytes, in hex.
    data: &'a str,
}

/// `HH:MM:SS.uuuuuu` of `time_ns` in local time, as tcpdump prints it.
fn clock(time_ns: u64) -> String {
    let secs = (time_ns / 1_000_000_000) as libc::time_t;
    let micros = (time_ns % 1_000_000_000) / 1000;
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call, and localtime_r is the thread-safe variant.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return format!("{secs}.{micros:06}");
        }
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

/// Blocks SIGINT and SIGTERM and starts a thread that, on either, marks `stopped` and shuts
/// the connection down, which ends the reading loop.
fn stop_on_signal(stream: &UnixStream, stopped: Arc<AtomicBool>) -> Result<()> {
    use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().context("blocking SIGINT")?;
    // A shell starts a background job (`ipvlan monitor drops … &` in a script) with SIGINT
    // ignored, and an ignored signal is discarded, never pending for the wait below: `kill
    // -INT` would not end it. Blocked, the default disposition only makes it pending (as
    // tcpdump, which installs its own handler, ends on it too).
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_DFL installs no handler of ours; the signal is blocked in this thread
        // (and in those it starts), so only the wait below takes it.
        unsafe { signal(sig, SigHandler::SigDfl) }.context("resetting SIGINT")?;
    }
    let s = stream.try_clone().context("cloning the connection")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if set.wait().is_ok() {
                stopped.store(true, Ordering::SeqCst);
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Why the monitor ended other than by Ctrl-C.
#[derive(Debug)]
pub enum Failure {
    /// No daemon at the socket (the CLI exits 1).
    Unreachable(anyhow::Error),
    /// The daemon refused (no such device, too many monitors), or the device watched is gone
    /// (the CLI exits 2).
    Refused { message: String, kind: ErrorKind },
    /// Anything else: the pcap file, the stream (the CLI exits 1).
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Other(e.into())
    }
}

/// Runs the monitor until Ctrl-C (`Ok`), or until the daemon refuses, ends the stream or the
/// watched device goes ([`Failure`]). Notes go to stderr as [`crate::cli::print_note`] prints
/// them (JSON lines under `-j`).
pub fn run(socket: &Path, args: &Args, json: bool) -> std::result::Result<(), Failure> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| {
            format!(
                "cannot reach the ipvlan daemon at {} (is `ipvlan daemon` running?)",
                socket.display()
            )
        })
        .map_err(Failure::Unreachable)?;
    let req = Request::MonitorDrops(MonitorDrops {
        dev: args.dev.clone(),
    });
    stream.write_all(&serde_json::to_vec(&req).map_err(anyhow::Error::from)?)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let stopped = Arc::new(AtomicBool::new(false));
    stop_on_signal(&stream, stopped.clone())?;
    let mut lines = BufReader::new(stream).lines();
    let first = match lines.next() {
        Some(Ok(l)) => l,
        Some(Err(e)) => {
            return Err(anyhow::Error::from(e)
                .context("reading the daemon's answer")
                .into())
        }
        None => {
            return Err(
                anyhow::anyhow!("the daemon closed the connection without answering").into(),
            )
        }
    };
    match serde_json::from_str::<Response>(&first).context("the daemon's answer is not valid")? {
        Response::Ok { notes, .. } => {
            for n in notes {
                crate::cli::print_note(&n, json);
            }
        }
        Response::Error { message, kind } => return Err(Failure::Refused { message, kind }),
    }
    // Only once the daemon accepted: a refused monitor leaves no empty capture behind.
    let mut pcap = args.pcap.as_deref().map(Pcap::create).transpose()?;
    if !json {
        eprintln!(
            "ipvlan: watching drops{}; copies of the first {SNAPLEN} bytes; Ctrl-C ends",
            args.dev
                .as_deref()
                .map(|d| format!(" on {d}"))
                .unwrap_or_default()
        );
    }
    let (mut shown, mut lost, mut limited) = (0u64, 0u64, 0u64);
    let out = std::io::stdout();
    for line in lines {
        let line = match line {
            Ok(l) => l,
            Err(_) if stopped.load(Ordering::SeqCst) => break,
            Err(e) => return Err(anyhow::Error::from(e).context("reading the stream").into()),
        };
        if line.is_empty() {
            continue; // the daemon's heartbeat
        }
        let item: Item = serde_json::from_str(&line).context("a stream line is not valid")?;
        if let Item::Gone { dev } = &item {
            if !json {
                summary(shown, lost, limited);
            }
            return Err(Failure::Refused {
                message: format!("{dev} is gone (deleted, or its namespace or master was): no more drops to show"),
                kind: ErrorKind::NotFound,
            });
        }
        let mut o = out.lock();
        match item {
            Item::Drop {
                time_ns,
                master,
                dev,
                direction,
                reason,
                len,
                data,
            } => {
                shown += 1;
                let bytes = unhex(&data).unwrap_or_default();
                let what = summarize(&bytes, len);
                if json {
                    let line = JsonLine {
                        time_ns,
                        master: &master,
                        dev: &dev,
                        direction,
                        reason: &reason,
                        len,
                        summary: &what,
                        data: &data,
                    };
                    let line = serde_json::to_string(&line).map_err(anyhow::Error::from)?;
                    writeln!(o, "{line}")?;
                } else {
                    writeln!(
                        o,
                        "{} {dev} {} {reason} {what}",
                        clock(time_ns),
                        direction.name()
                    )?;
                }
                o.flush()?;
                if let Some(p) = &mut pcap {
                    let on = if direction == Direction::Port {
                        format!("port {master}")
                    } else {
                        format!("{} {dev} on {master}", direction.name())
                    };
                    p.write(time_ns, len, &bytes, format!("{reason} ({on})"))?;
                }
            }
            Item::Lost { count } => {
                lost += count;
                if json {
                    writeln!(o, "{}", serde_json::json!({ "lost": count }))?;
                } else {
                    eprintln!("ipvlan: {count} drops not shown: this monitor read too slowly");
                }
            }
            Item::Gone { .. } => {}
            Item::RateLimited { count } => {
                limited += count;
                if json {
                    writeln!(o, "{}", serde_json::json!({ "rate_limited": count }))?;
                } else {
                    eprintln!(
                        "ipvlan: {count} drops not copied (at most {} a second)",
                        super::RATE
                    );
                }
            }
        }
    }
    if !stopped.load(Ordering::SeqCst) {
        return Err(anyhow::anyhow!("the daemon ended the stream (did it stop?)").into());
    }
    if !json {
        summary(shown, lost, limited);
    }
    Ok(())
}

/// The last line of the human output, on stderr.
fn summary(shown: u64, lost: u64, limited: u64) {
    eprintln!(
        "{shown} drops shown, {lost} lost (read too slowly), {limited} not copied (rate limit)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_dev_pcap_and_help() {
        assert_eq!(
            parse(&w("drops dev s1 --pcap /tmp/x.pcapng")),
            Ok(Parsed::Run(Args {
                dev: Some("s1".into()),
                pcap: Some("/tmp/x.pcapng".into())
            }))
        );
        assert_eq!(
            parse(&w("drops")),
            Ok(Parsed::Run(Args {
                dev: None,
                pcap: None
            }))
        );
        assert_eq!(parse(&w("drops --help")), Ok(Parsed::Help));
        assert_eq!(parse(&w("help")), Ok(Parsed::Help));
        assert_eq!(parse(&[]), Ok(Parsed::Help));
        assert!(parse(&w("links")).is_err());
        assert!(parse(&w("drops dev")).is_err());
        assert!(parse(&w("drops s1 s2")).is_err());
    }

    #[test]
    fn pcap_ng_has_the_reason_as_comment() {
        let path = std::env::temp_dir().join(format!("ipvlan-pcap-{}.pcapng", std::process::id()));
        let mut p = Pcap::create(&path).expect("create");
        p.write(
            1_700_000_000_123_456_789,
            98,
            &[1u8; 60],
            "private_unicast (tx s1 on m0)".into(),
        )
        .expect("write");
        let data = std::fs::read(&path).expect("read");
        let mut r = pcap_file::pcapng::PcapNgReader::new(&data[..]).expect("reader");
        let mut comments = Vec::new();
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(e) = b.expect("block") {
                assert_eq!(e.original_len, 98);
                assert_eq!(e.data.len(), 60);
                for o in e.options {
                    if let EnhancedPacketOption::Comment(c) = o {
                        comments.push(c.into_owned());
                    }
                }
            }
        }
        assert_eq!(comments, ["private_unicast (tx s1 on m0)"]);
        let _ = std::fs::remove_file(&path);
    }
}
