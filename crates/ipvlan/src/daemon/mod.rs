//! `ipvlan daemon`: owns the ports, their slaves and data-plane threads; answers the CLI; learns
//! slave addresses from rtnetlink; persists the configuration.
//!
//! [`Daemon`] only routes: requests (`requests`) and kernel events (`follow`) go to the
//! [`PortRuntime`](port::PortRuntime) they concern, which owns that master's state. One event
//! loop runs it all, woken by the rtnetlink monitor, the control socket's thread (`control`)
//! and signals. After each batch of work the daemon *settles*: ports sync their netfilter state
//! once for the whole batch, ports left without slaves are torn down, and the state file is
//! written (`persist`) — before any answer leaves, so a reply means it is done and saved.
//!
//! Files: `control` (socket thread), `requests` (verbs), `follow` (kernel events), `port/`
//! (one master), `slave` (one device), `persist`, `error`; the netfilter state of a port is
//! `ipvlan_linux::netfilter`'s.

mod control;
mod error;
mod follow;
pub mod metrics_listen;
mod notify;
pub mod persist;
mod port;
mod requests;
mod slave;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipvlan_core::SlaveId;
use ipvlan_linux::rtnl::Rtnl;
use ipvlan_linux::{Epoll, NetNs};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tracing::{info, warn};

use crate::backend::Backends;
use crate::dataplane::worker_count;
use crate::proto::Response;
use control::ControlServer;
use port::PortRuntime;

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// `--datapath`: which data path new ports get.
    pub datapath: DatapathChoice,
    /// Where bpffs is (or is mounted): the eBPF ports pin their programs under
    /// `BPFFS/ipvlan-rs/<instance>/<master ifindex>`.
    pub bpffs: PathBuf,
    /// `--metrics-listen`: where to serve `GET /metrics` over HTTP, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// `ipvlan daemon --datapath`: which data path new ports get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathChoice {
    /// eBPF where the kernel can (veth slaves), else the userspace workers.
    Auto,
    /// eBPF or an error.
    Bpf,
    /// eBPF attached as clsact filters even where tcx exists (as on kernels before 6.6).
    BpfTc,
    /// The userspace workers.
    User,
}

impl DatapathChoice {
    pub fn parse(s: &str) -> Option<DatapathChoice> {
        match s {
            "auto" => Some(DatapathChoice::Auto),
            "bpf" => Some(DatapathChoice::Bpf),
            "bpf-tc" => Some(DatapathChoice::BpfTc),
            "user" => Some(DatapathChoice::User),
            _ => None,
        }
    }
}

/// (master ifindex, slave id): how the daemon names a slave internally.
pub type SlaveKey = (u32, SlaveId);

/// The daemon: the ports by master ifindex, and what routes work to them.
pub struct Daemon {
    cfg: Config,
    /// Stable identity of this daemon's configuration (see `persist::State::instance`).
    instance: String,
    ns: NetNs,
    rtnl: Rtnl,
    monitor: Rtnl,
    ports: BTreeMap<u32, PortRuntime>,
    /// Makes and finds the slaves' devices.
    backend: Backends,
    /// Whether this kernel runs the eBPF data path: `Err` says why not. Probed (the verifier
    /// checks both programs, up to a second on a busy machine) when a port first needs to know,
    /// or at start with `--datapath bpf`; a port whose programs are pinned already re-adopts
    /// them without it, so a restart does not wait for it.
    bpf: std::cell::OnceCell<Result<(), String>>,
    /// The configuration changed since it was last written.
    state_dirty: bool,
    /// Why the last write of the state failed (logged once per distinct error).
    save_error: Option<String>,
    /// Slaves whose new namespace could not be read yet: the sweep tries again.
    resync_pending: std::collections::BTreeSet<SlaveKey>,
}

const TOKEN_CONTROL: u64 = 1;
const TOKEN_MONITOR: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;
/// How often the sweep looks for what no event reported.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Raises the soft limit on open files to the hard one: every slave holds a descriptor per
/// queue (a queue per worker), so 256 slaves with 4 workers already need more than the usual
/// soft limit of 1024.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let raised = getrlimit(Resource::RLIMIT_NOFILE)
        .and_then(|(_, hard)| setrlimit(Resource::RLIMIT_NOFILE, hard, hard));
    if let Err(e) = raised {
        warn!("cannot raise the open-file limit: {e}");
    }
}

/// Blocks SIGTERM/SIGINT in every thread (those started later inherit the mask) and returns a
/// signalfd that reports them.
fn signal_fd() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM and SIGINT")?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("signalfd")
}

pub fn run(cfg: Config) -> Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "ipvlan-rs daemon starting"
    );
    if !nix::unistd::geteuid().is_root() {
        bail!("the ipvlan daemon must run as root (it creates devices and opens raw sockets)");
    }
    raise_open_file_limit();
    let _state_lock = persist::lock(&cfg.state_dir)?;
    let signals = signal_fd()?;
    // Refused before the socket exists, so a daemon that cannot start leaves nothing behind.
    if cfg.datapath != DatapathChoice::User && cfg.bpffs.exists() && !cfg.bpffs.is_dir() {
        bail!(
            "--bpffs {}: not a directory (it is where bpffs is, or is to be, mounted)",
            cfg.bpffs.display()
        );
    }
    let early_bpf = if matches!(cfg.datapath, DatapathChoice::Bpf | DatapathChoice::BpfTc) {
        match port::probe_bpf(&cfg.bpffs) {
            Ok(()) => {
                info!("data path: eBPF (veth slaves switched in the kernel)");
                Some(Ok(()))
            }
            Err(e) => bail!("--datapath bpf: {e}"),
        }
    } else {
        None
    };
    // Bound before the control socket, so a taken port leaves no socket behind.
    let metrics_listener = cfg.metrics_listen.map(metrics_listen::bind).transpose()?;
    let listener = control::listen(&cfg.socket)?;
    let ns = NetNs::current().context("opening the daemon's network namespace")?;
    let rtnl = Rtnl::open().context("opening rtnetlink")?;
    let monitor = Rtnl::monitor_all().context("opening the rtnetlink monitor")?;
    let mut d = Daemon {
        cfg,
        instance: persist::new_instance(),
        ns,
        rtnl,
        monitor,
        ports: BTreeMap::new(),
        backend: Backends::new(worker_count()),
        bpf: std::cell::OnceCell::new(),
        state_dirty: false,
        save_error: None,
        resync_pending: std::collections::BTreeSet::new(),
    };
    if let Some(r) = early_bpf {
        let _ = d.bpf.set(r);
    }
    d.restore();
    // Requests are taken only once the restored slaves are served.
    let control = ControlServer::spawn(listener).context("starting the control socket")?;
    if let Some(l) = metrics_listener {
        let addr = l.local_addr().context("--metrics-listen")?;
        metrics_listen::spawn(l, control.submitter()).context("starting the metrics listener")?;
        info!(%addr, "serving GET /metrics over HTTP");
    }
    info!(socket = %d.cfg.socket.display(), state = %d.cfg.state_dir.display(), datapath = ?d.cfg.datapath, version = env!("CARGO_PKG_VERSION"), "ipvlan daemon ready");
    let slaves = d.ports.values().map(|p| p.slave_ids().len()).sum();
    notify::ready(&d.cfg.socket, d.ports.len(), slaves);
    let result = d.serve(&control, &signals);
    notify::stopping();
    d.shutdown();
    let _ = std::fs::remove_file(&d.cfg.socket);
    result
}

impl Daemon {
    /// Whether new ports may get the eBPF data path (probed once, see `Daemon::bpf`).
    fn bpf_available(&self) -> Result<(), String> {
        if self.cfg.datapath == DatapathChoice::User {
            return Err("--datapath user".into());
        }
        self.bpf
            .get_or_init(|| {
                let r = port::probe_bpf(&self.cfg.bpffs);
                match &r {
                    Ok(()) => info!("data path: eBPF (veth slaves switched in the kernel)"),
                    Err(e) => {
                        warn!("data path: userspace workers, the eBPF path is not available: {e}")
                    }
                }
                r
            })
            .clone()
    }

    fn serve(&mut self, control: &ControlServer, signals: &SignalFd) -> Result<()> {
        let epoll = Epoll::new()?;
        epoll.add(control.fd(), TOKEN_CONTROL)?;
        epoll.add(self.monitor.fd(), TOKEN_MONITOR)?;
        epoll.add(signals.as_raw_fd(), TOKEN_SIGNAL)?;
        let mut ready = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            epoll.wait(&mut ready, 1000)?;
            // Kernel events first: a request that follows an address change sees it.
            let tokens: Vec<u64> = ready.iter().map(|r| r.token).collect();
            if tokens.contains(&TOKEN_SIGNAL) {
                info!(
                    "signal received: shutting down (slaves persist; a restart serves them again)"
                );
                return Ok(());
            }
            if tokens.contains(&TOKEN_MONITOR) {
                self.netlink_events();
            }
            // Once a second, not after every event: it scans /proc when namespaces are pinned.
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
            self.settle();
            if tokens.contains(&TOKEN_CONTROL) {
                for call in control.pending() {
                    let mut response = match self.request(call.request.clone()) {
                        Ok(r) => r,
                        Err(e) => {
                            // The user sees it; the log keeps what the system refused.
                            if e.kind() == crate::proto::ErrorKind::System {
                                warn!("request failed: {e}");
                            } else {
                                info!("request refused: {e}");
                            }
                            Response::Error {
                                kind: e.kind(),
                                message: e.to_string(),
                            }
                        }
                    };
                    // Done means applied and saved: what was not is said in the answer.
                    let problems = self.settle();
                    if let Response::Ok { notes, .. } = &mut response {
                        notes.extend(problems.into_iter().map(|p| format!("warning: {p}")));
                    }
                    call.answer(response);
                }
            }
        }
    }

    /// Finishes a batch of work: each changed port syncs its netfilter state once, ports left
    /// without slaves are torn down (R-OBJ-1), and a changed configuration is written. Returns
    /// what could not be done (also logged; netfilter is retried at the next settle), for the
    /// answer to the request that caused it.
    fn settle(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let empty: Vec<u32> = self
            .ports
            .iter()
            .filter(|(_, p)| p.is_empty())
            .map(|(m, _)| *m)
            .collect();
        for m in empty {
            if let Some(p) = self.ports.remove(&m) {
                let master = p.master().to_owned();
                let errors = p.teardown();
                if !errors.is_empty() {
                    warn!(%master, "tearing down the port: {errors}");
                    problems.push(format!("master {master}: tearing down the port: {errors}"));
                }
                self.state_dirty = true;
            }
        }
        // `hostreach on` whose host device was deleted behind the daemon's back (`ip link del
        // ipvlh<N>`; the sweep removed its slave): the option is still on, so make it again.
        let lost: Vec<u32> = self
            .ports
            .iter()
            .filter(|(_, p)| p.hostreach_lost())
            .map(|(m, _)| *m)
            .collect();
        for m in lost {
            let carrier = self.master_carrier(m);
            if let Some(p) = self.ports.get_mut(&m) {
                warn!(master = %p.master(), "hostreach: its host device is gone: making it again");
                if let Err(e) = p.set_hostreach(true, &self.backend, &self.instance, carrier) {
                    // Tried again at the next settle.
                    warn!(master = %p.master(), "hostreach: making the host device again: {e}");
                    problems.push(format!("master {}: hostreach: {e}", p.master()));
                }
            }
            self.state_dirty = true;
        }
        for p in self.ports.values_mut() {
            p.resync_datapath();
            p.sync_hostreach();
            p.warn_foreign_mac();
            if let Err(e) = p.sync_netfilter(&self.backend) {
                problems.push(e);
            }
            if p.take_owners_changed() {
                self.state_dirty = true;
            }
        }
        if std::mem::take(&mut self.state_dirty) {
            if let Err(e) = self.save() {
                // The next change tries again.
                self.state_dirty = true;
                problems.push(e);
            }
        }
        problems
    }

    /// Releases every port on shutdown. TAPs persist, so a restarted daemon serves them again.
    fn shutdown(&mut self) {
        for (_, p) in std::mem::take(&mut self.ports) {
            p.stop();
        }
    }
}
