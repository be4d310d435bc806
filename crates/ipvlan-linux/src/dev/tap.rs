//! Slave devices as TAP interfaces (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`).
//! Every frame read or written starts with a `virtio_net_hdr` ([`crate::vnet`]), the same one
//! the master's packet socket uses, so frames pass between them untouched.
//!
//! The TAP is made persistent so it survives a daemon restart; the daemon re-attaches by name
//! inside whatever namespace the device now lives in (found through its alias).
//!
//! Devices are made multiqueue-capable (`IFF_MULTI_QUEUE`), one descriptor per attached queue;
//! how many queues the daemon attaches is its choice (see its data plane). With more than one,
//! a steering program ([`Tap::steer`]) keeps each flow on one queue.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use ipvlan_core::MacAddr;

use crate::error::io_like_error;
use crate::netns::NetNs;
use crate::steer::FlowSteering;
use crate::sys::{
    self, ioctl_ifreq, ioctl_int_ptr, ioctl_value, ByIfReq, ByIntPtr, ByValue, IfReq, Ioctl,
};

const TUN_PATH: &str = "/dev/net/tun";

/// A failed setup or control operation on a TAP device. The per-frame reads and writes
/// ([`Tap::recv`], [`Tap::send`]) return plain `io::Error`s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    /// The name is empty, has a NUL or is longer than 15 bytes (`IFNAMSIZ`). Kind
    /// `InvalidInput`; no OS error.
    #[error("invalid interface name {name:?}")]
    InvalidName { name: String },
    /// Opening the TUN character device failed (`EMFILE` when out of descriptors, `ENOENT`
    /// without the `tun` module).
    #[error("opening {TUN_PATH}: {source}")]
    Open {
        #[source]
        source: io::Error,
    },
    /// Creating a device whose name is taken (`TUNSETIFF` with `IFF_TUN_EXCL` gave `EBUSY` or
    /// `EEXIST`). Kind `AlreadyExists` whatever the errno.
    #[error("TAP device {name} already exists: {source}")]
    Exists {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A TUN ioctl failed: `ioctl` is its name in `<linux/if_tun.h>` (`TUNSETIFF`,
    /// `TUNSETOFFLOAD`…) or `<linux/sockios.h>` (`SIOCSIFHWADDR`), `doing` what it was for.
    #[error("TAP device {name}: {doing} ({ioctl}): {source}")]
    Ioctl {
        name: String,
        doing: &'static str,
        ioctl: &'static str,
        #[source]
        source: io::Error,
    },
}

impl TapError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            TapError::InvalidName { .. } => None,
            TapError::Open { source }
            | TapError::Exists { source, .. }
            | TapError::Ioctl { source, .. } => Some(source),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TapError::InvalidName { .. } => Some(io::ErrorKind::InvalidInput),
            TapError::Exists { .. } => Some(io::ErrorKind::AlreadyExists),
            _ => None,
        }
    }
}

io_like_error!(TapError);

/// A TUN ioctl and what it is for, as [`TapError::Ioctl`] reports it.
struct Op<A> {
    ioctl: Ioctl<A>,
    doing: &'static str,
}

const SET_IFF: Op<ByIfReq> = Op {
    ioctl: sys::TUNSETIFF,
    doing: "attaching a queue",
};
const GET_IFF: Op<ByIfReq> = Op {
    ioctl: sys::TUNGETIFF,
    doing: "reading the name",
};
const SET_HWADDR: Op<ByIfReq> = Op {
    ioctl: sys::SIOCSIFHWADDR,
    doing: "setting the MAC address",
};
const SET_VNET_HDR_SZ: Op<ByIntPtr> = Op {
    ioctl: sys::TUNSETVNETHDRSZ,
    doing: "setting the vnet header size",
};
const SET_STEERING: Op<ByIntPtr> = Op {
    ioctl: sys::TUNSETSTEERINGEBPF,
    doing: "attaching the flow steering program",
};
const SET_CARRIER: Op<ByIntPtr> = Op {
    ioctl: sys::TUNSETCARRIER,
    doing: "setting the carrier",
};
const SET_PERSIST: Op<ByValue> = Op {
    ioctl: sys::TUNSETPERSIST,
    doing: "setting persistence",
};
const SET_OFFLOAD: Op<ByValue> = Op {
    ioctl: sys::TUNSETOFFLOAD,
    doing: "enabling offloads",
};
const SET_OWNER: Op<ByValue> = Op {
    ioctl: sys::TUNSETOWNER,
    doing: "setting the owner",
};
const SET_GROUP: Op<ByValue> = Op {
    ioctl: sys::TUNSETGROUP,
    doing: "setting the group",
};
const GET_DEVNETNS: Op<ByValue> = Op {
    ioctl: sys::TUNGETDEVNETNS,
    doing: "opening the network namespace",
};

impl<A> Op<A> {
    fn err(&self, name: &str, source: io::Error) -> TapError {
        TapError::Ioctl {
            name: name.to_owned(),
            doing: self.doing,
            ioctl: self.ioctl.name(),
            source,
        }
    }
}

/// An attached TAP device: one descriptor per queue; the first also serves the ioctls.
#[derive(Debug)]
pub struct Tap {
    queues: Vec<File>,
    name: String,
}

/// The flags every queue is attached with (`<linux/if_tun.h>`): a TAP (Ethernet frames), no
/// packet-information prefix, a `virtio_net_hdr` on every frame.
const BASE_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Opens `/dev/net/tun` and attaches it to (or creates) the TAP `name` with
/// `BASE_FLAGS | extra` (`TUNSETIFF`), then sets the vnet header size (`TUNSETVNETHDRSZ`).
/// Returns the queue and the device's name as the kernel reports it.
fn open_queue(name: &str, extra: libc::c_int) -> Result<(File, String), TapError> {
    let mut req = IfReq::with_name(name).ok_or_else(|| TapError::InvalidName {
        name: name.to_owned(),
    })?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_PATH)
        .map_err(|source| TapError::Open { source })?;
    req.set_flags(BASE_FLAGS | extra);
    ioctl_ifreq(file.as_fd(), SET_IFF.ioctl, &mut req).map_err(|source| {
        let taken = matches!(source.raw_os_error(), Some(libc::EBUSY | libc::EEXIST));
        if extra & libc::IFF_TUN_EXCL != 0 && taken {
            TapError::Exists {
                name: name.to_owned(),
                source,
            }
        } else {
            SET_IFF.err(name, source)
        }
    })?;
    let hdr = crate::vnet::HEADER_LEN as libc::c_int;
    ioctl_int_ptr(file.as_fd(), SET_VNET_HDR_SZ.ioctl, hdr)
        .map_err(|e| SET_VNET_HDR_SZ.err(name, e))?;
    Ok((file, req.name()))
}

impl Tap {
    /// Creates a new persistent TAP named `name` with `queues` queues (at least one) in the
    /// calling thread's namespace (`TUNSETIFF` with `IFF_MULTI_QUEUE | IFF_TUN_EXCL`, then
    /// `TUNSETPERSIST`). Fails with [`TapError::Exists`] (kind `AlreadyExists`) if any device
    /// already has that name, and with [`TapError::Open`] (`EMFILE`) when out of descriptors.
    pub fn create(name: &str, queues: usize) -> Result<Tap, TapError> {
        let tap = Tap::open(name, queues, libc::IFF_MULTI_QUEUE | libc::IFF_TUN_EXCL)?;
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Creates a single-queue TAP that disappears with its descriptor (the daemon's own l3s
    /// sink, the benchmark's forwarder). Errors as [`Tap::create`].
    pub fn create_transient(name: &str) -> Result<Tap, TapError> {
        Tap::open(name, 1, libc::IFF_TUN_EXCL)
    }

    /// Creates a persistent single-queue TAP named `name` for a virtual machine monitor to
    /// open by name (QEMU `-netdev tap,ifname=NAME`, Firecracker `host_dev_name`), in the
    /// calling thread's namespace, and closes it again: the VMM's `TUNSETIFF` (without
    /// `IFF_MULTI_QUEUE`) attaches its one queue. `owner`/`group` (`TUNSETOWNER`,
    /// `TUNSETGROUP`) let a VMM without `CAP_NET_ADMIN` running as that user or group open it
    /// (`tun_not_capable` in `drivers/net/tun.c`). Errors as [`Tap::create`]; on a failure
    /// after the device was made it is deleted again.
    pub fn create_for_vmm(
        name: &str,
        owner: Option<u32>,
        group: Option<u32>,
    ) -> Result<(), TapError> {
        let tap = Tap::open(name, 1, libc::IFF_TUN_EXCL)?;
        let set = || -> Result<(), TapError> {
            if let Some(uid) = owner {
                ioctl_value(tap.ctl(), SET_OWNER.ioctl, uid.into())
                    .map_err(|e| SET_OWNER.err(&tap.name, e))?;
            }
            if let Some(gid) = group {
                ioctl_value(tap.ctl(), SET_GROUP.ioctl, gid.into())
                    .map_err(|e| SET_GROUP.err(&tap.name, e))?;
            }
            tap.set_persist(true)
        };
        // Without persistence the device goes when `tap` is dropped below.
        set()
    }

    /// Attaches `queues` queues (at least one) to an existing TAP named `name` in the calling
    /// thread's namespace. A device made by earlier versions (not multiqueue-capable) gets one.
    /// Without such a device the kernel creates one (a non-persistent TAP).
    pub fn attach(name: &str, queues: usize) -> Result<Tap, TapError> {
        match Tap::open(name, queues, libc::IFF_MULTI_QUEUE) {
            // The kernel refuses to mix single- and multiqueue attachments of one device.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Tap::open(name, 1, 0),
            r => r,
        }
    }

    fn open(name: &str, queues: usize, extra: libc::c_int) -> Result<Tap, TapError> {
        let (first, name) = open_queue(name, extra)?;
        let mut files = vec![first];
        // Further queues attach to the device the first one made or found.
        for _ in 1..queues.max(1) {
            files.push(open_queue(&name, extra & !libc::IFF_TUN_EXCL)?.0);
        }
        Ok(Tap {
            queues: files,
            name,
        })
    }

    /// The descriptor the ioctls go through.
    fn ctl(&self) -> BorrowedFd<'_> {
        self.queues[0].as_fd()
    }

    /// The name the device had when attached.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's name now (the user may have renamed it), by `TUNGETIFF`.
    pub fn current_name(&self) -> Result<String, TapError> {
        let mut req = IfReq::with_name("x").ok_or_else(|| TapError::InvalidName {
            name: "x".to_owned(),
        })?;
        ioctl_ifreq(self.ctl(), GET_IFF.ioctl, &mut req).map_err(|e| GET_IFF.err(&self.name, e))?;
        Ok(req.name())
    }

    /// Keeps the device when its last descriptor closes (a daemon restart), or not
    /// (`TUNSETPERSIST`).
    pub fn set_persist(&self, on: bool) -> Result<(), TapError> {
        ioctl_value(self.ctl(), SET_PERSIST.ioctl, on.into())
            .map_err(|e| SET_PERSIST.err(&self.name, e))?;
        Ok(())
    }

    /// Sets the device's MAC (always the master's, R-MAC-1) by `SIOCSIFHWADDR`, which the tun
    /// character device handles itself.
    pub fn set_mac(&self, mac: MacAddr) -> Result<(), TapError> {
        let mut req = IfReq::with_name(&self.name).ok_or_else(|| TapError::InvalidName {
            name: self.name.clone(),
        })?;
        req.set_hwaddr(mac);
        ioctl_ifreq(self.ctl(), SET_HWADDR.ioctl, &mut req)
            .map_err(|e| SET_HWADDR.err(&self.name, e))
    }

    /// Lets the slave's stack hand us TCP super-frames (up to 64 KiB) with the checksum left
    /// undone, described by the vnet header: one read and one write move what would otherwise
    /// be ~45 segments between slaves, and the master's packet socket takes them as they are.
    /// `TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN`.
    pub fn enable_offloads(&self) -> Result<(), TapError> {
        let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        ioctl_value(self.ctl(), SET_OFFLOAD.ioctl, flags.into())
            .map_err(|e| SET_OFFLOAD.err(&self.name, e))?;
        Ok(())
    }

    /// Lets `prog` choose the queue of every frame the slave transmits (see [`crate::steer`]);
    /// the device keeps it until it is replaced or the device is deleted
    /// (`TUNSETSTEERINGEBPF`).
    pub fn steer(&self, prog: &FlowSteering) -> Result<(), TapError> {
        ioctl_int_ptr(self.ctl(), SET_STEERING.ioctl, prog.raw_fd())
            .map_err(|e| SET_STEERING.err(&self.name, e))
    }

    /// Makes the device non-persistent: the kernel deletes it when its last descriptor closes
    /// (ours, or a data-plane worker's clone finishing its burst). Needs no unique ownership.
    pub fn destroy(&self) -> Result<(), TapError> {
        self.set_persist(false)
    }

    fn queue(&self, queue: usize) -> &File {
        &self.queues[queue % self.queues.len()]
    }
}

/// Frames and the settings a slave's device needs from the data plane and the daemon (which
/// put them behind their own traits: `ipvlan`'s `SlaveIo` and `SlaveDevice`).
impl Tap {
    /// How many queues the device was attached with (at least one). Queue numbers beyond
    /// wrap around.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// Reads one frame (vnet header first) the slave's stack transmitted on `queue`.
    /// `WouldBlock` when none is waiting.
    pub fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        self.queue(queue).read(buf)
    }

    /// Delivers one frame (vnet header first) to the slave's stack through `queue`.
    /// `WouldBlock` when the queue is full.
    pub fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize> {
        self.queue(queue).write(frame)
    }

    /// The descriptor of `queue`, readable when a frame waits.
    pub fn poll_fd(&self, queue: usize) -> RawFd {
        self.queue(queue).as_raw_fd()
    }

    /// Sets the carrier (`TUNSETCARRIER`); the error is a [`TapError`] converted.
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        ioctl_int_ptr(self.ctl(), SET_CARRIER.ioctl, on.into())
            .map_err(|e| SET_CARRIER.err(&self.name, e).into())
    }

    /// The namespace the device lives in now (`TUNGETDEVNETNS`); an error once it is gone.
    /// The error is a [`TapError`] or a [`crate::netns::NetNsError`] converted.
    pub fn netns(&self) -> io::Result<NetNs> {
        let fd = ioctl_value(self.ctl(), GET_DEVNETNS.ioctl, 0)
            .map_err(|e| io::Error::from(GET_DEVNETNS.err(&self.name, e)))?;
        // SAFETY: TUNGETDEVNETNS returns a new descriptor of the device's namespace (non-negative,
        // checked by `cvt` in `ioctl_value`); nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(NetNs::from_fd(fd)?)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.queues[0].as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_is_already_exists_whatever_the_errno() {
        let e = TapError::Exists {
            name: "s1".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        let text = e.to_string();
        assert!(text.starts_with("TAP device s1 already exists: "), "{text}");
        assert!(text.ends_with("(os error 16)"), "{text}");
        let io = io::Error::from(e);
        assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(io.to_string(), text);
    }

    #[test]
    fn out_of_descriptors_stays_visible_after_the_conversion() {
        let e = TapError::Open {
            source: io::Error::from_raw_os_error(libc::EMFILE),
        };
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(io::Error::from(e).raw_os_error(), Some(libc::EMFILE));
    }

    #[test]
    fn an_ioctl_failure_names_device_purpose_and_request() {
        let e = SET_OFFLOAD.err("s2", io::Error::from_raw_os_error(libc::EINVAL));
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.starts_with("TAP device s2: enabling offloads (TUNSETOFFLOAD): "),
            "{text}"
        );
    }
}
