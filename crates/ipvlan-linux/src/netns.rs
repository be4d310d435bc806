//! Network namespace handles. Code runs inside another namespace on a short-lived thread that
//! `setns`es into it, so no long-lived thread ever changes namespace; sockets opened there stay
//! bound to that namespace after the thread ends.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// Where `ip netns` keeps named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// Identity of a namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    id: NsId,
}

impl NetNs {
    /// The namespace of the calling thread.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// Opens a namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        NetNs::from_fd(File::open(path)?.into())
    }

    /// Opens a named namespace as `ip netns` sees it.
    pub fn named(name: &str) -> io::Result<NetNs> {
        NetNs::open(Path::new(NAMED_NETNS_DIR).join(name))
    }

    pub fn from_fd(fd: OwnedFd) -> io::Result<NetNs> {
        let meta = File::from(fd.try_clone()?).metadata()?;
        Ok(NetNs {
            fd,
            id: NsId {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        })
    }

    pub fn id(&self) -> NsId {
        self.id
    }

    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: self.fd.try_clone()?,
            id: self.id,
        })
    }

    /// Runs `f` on a thread inside this namespace and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
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
    let mut consider = |ns: io::Result<NetNs>| {
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
