//! `ipvlan daemon`: owns the ports, their slaves and data-plane threads; answers the CLI; learns
//! slave addresses from rtnetlink; persists the configuration.

mod control;
mod dataplane;
mod queues;
mod slaves;
pub mod state;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ipvlan_core::{Flag, IfName, Mode, SlaveId};
use ipvlan_linux::rtnl::{Event, Rtnl};
use ipvlan_linux::Netfilter;
use ipvlan_linux::{Epoll, NetNs, Tap};
use tracing::{info, warn};

use crate::proto::{ErrorKind, Request, Response};
use dataplane::DataPlane;

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
}

/// A request failure: what kind, and the message for the user.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl From<ipvlan_core::PortError> for Failure {
    fn from(e: ipvlan_core::PortError) -> Failure {
        use ipvlan_core::PortError as E;
        let kind = match e {
            E::SlaveExists(_) | E::AddressInUse { .. } | E::TooManySlaves => ErrorKind::Conflict,
            E::NoSuchSlave(_) | E::NoSuchSlaveId(_) | E::AddressNotAssigned { .. } => {
                ErrorKind::NotFound
            }
            _ => ErrorKind::Invalid,
        };
        Failure::new(kind, e.to_string())
    }
}

impl From<ipvlan_core::ConfigError> for Failure {
    fn from(e: ipvlan_core::ConfigError) -> Failure {
        Failure::new(ErrorKind::Invalid, e.to_string())
    }
}

pub type Outcome<T> = std::result::Result<T, Failure>;

pub(crate) fn system(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorKind::System, format!("{what}: {e}"))
}

/// Per-slave control-plane knowledge (the data plane only needs the device).
pub struct SlaveCtl {
    pub name: IfName,
    pub alias: String,
    pub tap: Arc<Tap>,
    /// Id of the slave's namespace in the daemon's (`None`: the daemon's own).
    pub nsid: Option<i32>,
    pub ifindex: u32,
    pub carrier: bool,
    /// The TAP was re-attached from inside the slave's namespace (after a restart), so our
    /// descriptor keeps that namespace alive; the sweep notices when nobody else does.
    pub pinned: bool,
    /// Addresses configured on the slave that another slave owns, with that owner's name.
    pub conflicts: BTreeMap<IpAddr, String>,
    pub conflict_count: u64,
}

/// One port: its master, data plane, netfilter plumbing and slaves.
pub struct PortRt {
    pub master: String,
    pub dp: DataPlane,
    /// The steal table, and in l3s the l3s hooks (the sink TAP is the data plane's).
    pub netfilter: Netfilter,
    pub slaves: BTreeMap<SlaveId, SlaveCtl>,
}

pub struct Daemon {
    cfg: Config,
    /// Stable identity of this daemon's configuration (see `state::State::instance`).
    instance: String,
    ns: NetNs,
    rtnl: Rtnl,
    monitor: Rtnl,
    ports: BTreeMap<u32, PortRt>,
    queues: queues::SlaveQueues,
    /// While restoring: `sync_steal` waits, each port is synced once at the end (one `nft`
    /// transaction per port instead of one per learned address).
    hold_netfilter: bool,
}

const TOKEN_LISTENER: u64 = 1;
const TOKEN_MONITOR: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;

/// Raises the soft limit on open files to the hard one: every slave holds a descriptor per
/// queue (a queue per worker), so 256 slaves with 4 workers already need more than the usual
/// soft limit of 1024.
fn raise_open_file_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0
        }
    };
    if !raised {
        warn!(
            "cannot raise the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Blocks SIGTERM/SIGINT in every thread and returns a signalfd that reports them.
fn signal_fd() -> Result<OwnedFd> {
    // SAFETY: sigset_t is plain old data initialised by sigemptyset before use; the calls
    // only read and write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("cannot block signals");
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            bail!("signalfd: {}", std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

pub fn run(cfg: Config) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the ipvlan daemon must run as root (it creates devices and opens raw sockets)");
    }
    raise_open_file_limit();
    let signals = signal_fd()?;
    let listener = control::listen(&cfg.socket)?;
    let ns = NetNs::current().context("opening the daemon's network namespace")?;
    let rtnl = Rtnl::open().context("opening rtnetlink")?;
    let monitor = Rtnl::monitor_all().context("opening the rtnetlink monitor")?;
    let mut d = Daemon {
        cfg,
        instance: state::new_instance(),
        ns,
        rtnl,
        monitor,
        ports: BTreeMap::new(),
        queues: queues::SlaveQueues::new(dataplane::worker_count()),
        hold_netfilter: false,
    };
    d.restore();
    info!(socket = %d.cfg.socket.display(), state = %d.cfg.state_dir.display(), "ipvlan daemon ready");
    let result = d.serve(&listener, &signals);
    d.shutdown();
    let _ = std::fs::remove_file(&d.cfg.socket);
    result
}

impl Daemon {
    fn serve(&mut self, listener: &UnixListener, signals: &OwnedFd) -> Result<()> {
        let epoll = Epoll::new()?;
        epoll.add(listener.as_raw_fd(), TOKEN_LISTENER)?;
        epoll.add(self.monitor.fd(), TOKEN_MONITOR)?;
        epoll.add(signals.as_raw_fd(), TOKEN_SIGNAL)?;
        let mut ready = Vec::new();
        let mut last_sweep = std::time::Instant::now();
        loop {
            epoll.wait(&mut ready, 1000)?;
            for r in ready.clone() {
                match r.token {
                    TOKEN_SIGNAL => {
                        info!("signal received: shutting down (slaves persist; a restart serves them again)");
                        return Ok(());
                    }
                    TOKEN_LISTENER => self.accept_all(listener),
                    TOKEN_MONITOR => self.netlink_events(),
                    _ => {}
                }
            }
            // Once a second, not after every event: it scans /proc when namespaces are pinned.
            if last_sweep.elapsed() >= std::time::Duration::from_secs(1) {
                self.sweep();
                last_sweep = std::time::Instant::now();
            }
        }
    }

    fn accept_all(&mut self, listener: &UnixListener) {
        while let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            let resp = match control::read_request(&mut stream) {
                Ok(req) => self.handle(req),
                Err(resp) => resp,
            };
            control::write_response(&mut stream, &resp);
        }
    }

    fn handle(&mut self, req: Request) -> Response {
        let result = match req {
            Request::LinkAdd {
                master,
                name,
                mode,
                flag,
                mtu,
                spoofchk,
            } => self.link_add(
                &master,
                &name,
                mode.as_deref(),
                flag.as_deref(),
                mtu,
                spoofchk,
            ),
            Request::LinkDel { name } => self.link_del(&name),
            Request::LinkSet {
                name,
                mode,
                flag,
                spoofchk,
            } => self.link_set(&name, mode.as_deref(), flag.as_deref(), spoofchk),
            Request::LinkShow { name } => self.link_show(name.as_deref()),
        };
        match result {
            Ok(resp) => resp,
            Err(f) => Response::Error {
                kind: f.kind,
                message: f.message,
            },
        }
    }

    fn netlink_events(&mut self) {
        match self.monitor.events_all() {
            Ok(events) => {
                for (nsid, ev) in events {
                    self.on_event(nsid, ev);
                }
            }
            Err(e) => {
                // ENOBUFS: events were lost; resynchronise everything.
                warn!("rtnetlink monitor: {e}; resynchronising all slaves");
                self.resync_all();
            }
        }
    }

    fn on_event(&mut self, nsid: Option<i32>, ev: Event) {
        match ev {
            Event::LinkChanged(link) if nsid.is_none() && self.ports.contains_key(&link.index) => {
                self.master_changed(&link)
            }
            Event::LinkGone { index, .. } if nsid.is_none() && self.ports.contains_key(&index) => {
                self.master_gone(index)
            }
            Event::LinkChanged(link) => {
                if let Some(key) = self.find_slave_at(nsid, link.index) {
                    self.slave_link_changed(key, &link);
                }
            }
            Event::LinkGone { index, .. } => {
                if let Some(key) = self.find_slave_at(nsid, index) {
                    self.relocate(key);
                }
            }
            Event::AddrAdded(a) => {
                if let Some(key) = self.find_slave_at(nsid, a.index) {
                    self.learn_address(key, a.addr);
                }
            }
            Event::AddrRemoved(a) => {
                if let Some(key) = self.find_slave_at(nsid, a.index) {
                    self.forget_address(key, a.addr);
                }
            }
        }
    }

    /// Releases every port on shutdown. TAPs persist, so a restarted daemon serves them again.
    fn shutdown(&mut self) {
        for (_, mut p) in std::mem::take(&mut self.ports) {
            p.dp.stop();
        }
    }
}

/// Parses the mode and flag words of a request.
pub(crate) fn parse_mode_flag(
    mode: Option<&str>,
    flag: Option<&str>,
) -> Outcome<(Option<Mode>, Option<Flag>)> {
    let mode = mode.map(str::parse::<Mode>).transpose()?;
    let flag = flag.map(str::parse::<Flag>).transpose()?;
    Ok((mode, flag))
}
