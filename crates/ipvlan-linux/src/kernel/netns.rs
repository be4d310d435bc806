//! Network namespace handles. Code runs inside another namespace on a short-lived thread that
//! `setns`es into it, so no long-lived thread ever changes namespace; sockets opened there stay
//! bound to that namespace after the thread ends.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

use crate::error::io_like_error;

/// Where `ip netns` keeps named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// Identity of a namespace: device and inode of its nsfs file. Displays as `net:[INODE]`, as
/// `/proc/PID/ns/net` links do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    /// `st_dev` of the nsfs file.
    pub dev: u64,
    /// `st_ino` of the nsfs file: the namespace's inode number.
    pub ino: u64,
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:[{}]", self.ino)
    }
}

/// A failure to open a network namespace or to run code inside one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetNsError {
    /// Opening the namespace file failed (`ENOENT`: no such namespace or process).
    #[error("opening network namespace {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the identity of an open namespace descriptor failed (`fstat`, `dup`).
    #[error("reading the identity of a network namespace: {source}")]
    Identify {
        #[source]
        source: io::Error,
    },
    /// Starting the thread that enters the namespace failed (`EAGAIN`: out of threads).
    #[error("starting a thread for network namespace {ns}: {source}")]
    Thread {
        ns: NsId,
        #[source]
        source: io::Error,
    },
    /// `setns(fd, CLONE_NEWNET)` failed (`EPERM` without `CAP_SYS_ADMIN`, `EINVAL`: not a
    /// network namespace).
    #[error("entering network namespace {ns}: {source}")]
    Enter {
        ns: NsId,
        #[source]
        source: io::Error,
    },
    /// The code run inside the namespace panicked. Kind `Other`; no OS error.
    #[error("the thread inside network namespace {ns} panicked")]
    Panicked { ns: NsId },
}

impl NetNsError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            NetNsError::Open { source, .. }
            | NetNsError::Identify { source }
            | NetNsError::Thread { source, .. }
            | NetNsError::Enter { source, .. } => Some(source),
            NetNsError::Panicked { .. } => None,
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        None
    }
}

io_like_error!(NetNsError);

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    id: NsId,
}

impl NetNs {
    /// The namespace of the calling thread (`/proc/thread-self/ns/net`).
    pub fn current() -> Result<NetNs, NetNsError> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// Opens a namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, NetNsError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| NetNsError::Open {
            path: path.to_owned(),
            source,
        })?;
        NetNs::from_fd(file.into())
    }

    /// Opens a named namespace as `ip netns` sees it (`/run/netns/NAME`).
    pub fn named(name: &str) -> Result<NetNs, NetNsError> {
        NetNs::open(Path::new(NAMED_NETNS_DIR).join(name))
    }

    /// Takes an open namespace descriptor (from `open(2)`, `TUNGETDEVNETNS`…) and reads its
    /// identity (`fstat`).
    pub fn from_fd(fd: OwnedFd) -> Result<NetNs, NetNsError> {
        let identify = |source| NetNsError::Identify { source };
        let meta = File::from(fd.try_clone().map_err(identify)?)
            .metadata()
            .map_err(identify)?;
        Ok(NetNs {
            fd,
            id: NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        })
    }

    /// The namespace's identity.
    pub fn id(&self) -> NsId {
        self.id
    }

    /// A second handle on the same namespace (`dup`).
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone()?,
            id: self.id,
        })
    }

    /// Runs `f` on a new thread inside this namespace (`setns(fd, CLONE_NEWNET)`) and returns
    /// its result. The calling thread's namespace does not change.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetNsError> {
        let ns = self.id;
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("netns".into())
                .spawn_scoped(s, || {
                    setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                        NetNsError::Enter {
                            ns,
                            source: e.into(),
                        }
                    })?;
                    Ok(f())
                })
                .map_err(|source| NetNsError::Thread { ns, source })?
                .join()
                .map_err(|_| NetNsError::Panicked { ns })?
        })
    }

    /// The name `ip netns` knows this namespace by, if any.
    pub fn name(&self) -> Option<String> {
        named_namespaces()
            .into_iter()
            .find(|(_, ns)| ns.id == self.id)
            .map(|(name, _)| name)
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

/// The namespaces in `/run/netns`, by name.
pub fn named_namespaces() -> Vec<(String, NetNs)> {
    let Ok(dir) = std::fs::read_dir(NAMED_NETNS_DIR) else {
        return Vec::new();
    };
    let mut out: Vec<(String, NetNs)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            NetNs::open(e.path()).ok().map(|ns| (name, ns))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every network namespace this process can find: its own, the named ones, and those of all
/// processes (containers without a name). Deduplicated.
pub fn all_namespaces() -> Vec<NetNs> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut consider = |ns: Result<NetNs, NetNsError>| {
        if let Ok(ns) = ns {
            if seen.insert(ns.id) {
                out.push(ns);
            }
        }
    };
    consider(NetNs::current());
    for (_, ns) in named_namespaces() {
        consider(Ok(ns));
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            if p.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                let path: PathBuf = p.path().join("ns/net");
                consider(NetNs::open(path));
            }
        }
    }
    out
}

/// The namespaces something other than this process keeps alive: those of other processes and
/// those bind-mounted (`ip netns add`, container runtimes) in this mount namespace.
/// A namespace absent from this set is held only by us: its owner has deleted it.
pub fn referenced_elsewhere() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    let me = std::process::id().to_string();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let name = p.file_name();
            let name = name.to_string_lossy();
            if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(meta) = std::fs::metadata(p.path().join("ns/net")) {
                inodes.insert(meta.ino());
            }
        }
    }
    // mountinfo's 4th field of an nsfs mount is `net:[INODE]`.
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        for line in info.lines().filter(|l| l.contains(" - nsfs ")) {
            if let Some(ino) = line
                .split_whitespace()
                .nth(3)
                .and_then(|root| root.strip_prefix("net:["))
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                inodes.insert(ino);
            }
        }
    }
    inodes
}
