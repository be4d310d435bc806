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
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use ipvlan_core::MacAddr;

use crate::netns::NetNs;
use crate::steer::FlowSteering;
use crate::{cvt, cvt_size, from_ifr_name, ifr_name};

const TUN_PATH: &str = "/dev/net/tun";

// <linux/if_tun.h>
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// Fail instead of attaching when the name already exists.
const IFF_TUN_EXCL: libc::c_short = 0x8000u16 as libc::c_short;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;
const TUNGETDEVNETNS: libc::c_ulong = 0x0000_54e3;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOR('T', 224, int)`: the descriptor of a steering program, or -1 to detach.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// What the data plane needs from a slave device, whatever backs it. Queues are numbered
/// `0..queues()`; a queue number beyond that wraps around.
pub trait SlaveDevice: Send + Sync {
    /// How many queues the device was attached with (at least one).
    fn queues(&self) -> usize;
    /// Reads one frame the slave's stack transmitted on `queue`. `WouldBlock` when none is
    /// waiting.
    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize>;
    /// Delivers one frame to the slave's stack through `queue`.
    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize>;
    /// The descriptor of `queue`, to poll for readability.
    fn poll_fd(&self, queue: usize) -> RawFd;
    /// Sets the slave's carrier (it follows the master's, R-LINK-1).
    fn set_carrier(&self, on: bool) -> io::Result<()>;
    /// The network namespace the device lives in now; an error once it is gone.
    fn netns(&self) -> io::Result<NetNs>;
}

/// An attached TAP device: one descriptor per queue; the first also serves the ioctls.
#[derive(Debug)]
pub struct Tap {
    queues: Vec<File>,
    name: String,
}

fn ifreq_with_name(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name = ifr_name(name)?;
    Ok(req)
}

/// Opens `/dev/net/tun` and attaches it to (or creates) the TAP `name`.
fn open_queue(name: &str, extra: libc::c_short) -> io::Result<(File, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_PATH)?;
    let mut req = ifreq_with_name(name)?;
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | extra;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is, and it outlives the
    // call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) })?;
    let hdr = crate::vnet::HEADER_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), TUNSETVNETHDRSZ, &hdr) })?;
    Ok((file, from_ifr_name(&req.ifr_name)))
}

impl Tap {
    /// Creates a new persistent TAP named `name` with `queues` queues in the calling thread's
    /// namespace; fails with `AlreadyExists` if any device already has that name.
    pub fn create(name: &str, queues: usize) -> io::Result<Tap> {
        let tap = Tap::open(name, queues, IFF_MULTI_QUEUE | IFF_TUN_EXCL)?;
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Creates a single-queue TAP that disappears with its descriptor (the daemon's own l3s
    /// sink, the benchmark's forwarder).
    pub fn create_transient(name: &str) -> io::Result<Tap> {
        Tap::open(name, 1, IFF_TUN_EXCL)
    }

    /// Attaches `queues` queues to an existing TAP named `name` in the calling thread's
    /// namespace. A device made by earlier versions (not multiqueue-capable) gets one.
    pub fn attach(name: &str, queues: usize) -> io::Result<Tap> {
        match Tap::open(name, queues, IFF_MULTI_QUEUE) {
            // The kernel refuses to mix single- and multiqueue attachments of one device.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Tap::open(name, 1, 0),
            r => r,
        }
    }

    fn open(name: &str, queues: usize, extra: libc::c_short) -> io::Result<Tap> {
        let creating = extra & IFF_TUN_EXCL != 0;
        let (first, name) = open_queue(name, extra).map_err(|e| {
            let taken =
                e.raw_os_error() == Some(libc::EBUSY) || e.raw_os_error() == Some(libc::EEXIST);
            if creating && taken {
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("device {name} already exists"),
                )
            } else {
                e
            }
        })?;
        let mut files = vec![first];
        // Further queues attach to the device the first one made or found.
        for _ in 1..queues.max(1) {
            files.push(open_queue(&name, extra & !IFF_TUN_EXCL)?.0);
        }
        Ok(Tap {
            queues: files,
            name,
        })
    }

    /// The descriptor the ioctls go through.
    fn ctl(&self) -> RawFd {
        self.queues[0].as_raw_fd()
    }

    /// The name the device had when attached.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's name now (the user may have renamed it).
    pub fn current_name(&self) -> io::Result<String> {
        let mut req = ifreq_with_name("x")?;
        // SAFETY: TUNGETIFF fills a `struct ifreq`.
        cvt(unsafe { libc::ioctl(self.ctl(), TUNGETIFF, &mut req) })?;
        Ok(from_ifr_name(&req.ifr_name))
    }

    /// Keeps the device when its last descriptor closes (a daemon restart).
    pub fn set_persist(&self, on: bool) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes an integer argument by value.
        cvt(unsafe { libc::ioctl(self.ctl(), TUNSETPERSIST, libc::c_ulong::from(on)) })?;
        Ok(())
    }

    /// Sets the device's MAC (always the master's, R-MAC-1).
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        let mut req = ifreq_with_name(&self.name)?;
        // SAFETY: writing the hwaddr member of the union we then pass to SIOCSIFHWADDR.
        unsafe {
            req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
                *d = s as libc::c_char;
            }
        }
        // SAFETY: the tun character device handles SIOCSIFHWADDR with a `struct ifreq`.
        cvt(unsafe { libc::ioctl(self.ctl(), libc::SIOCSIFHWADDR, &mut req) })?;
        Ok(())
    }

    /// Lets the slave's stack hand us TCP super-frames (up to 64 KiB) with the checksum left
    /// undone, described by the vnet header: one read and one write move what would otherwise
    /// be ~45 segments between slaves, and the master's packet socket takes them as they are.
    pub fn enable_offloads(&self) -> io::Result<()> {
        let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes the flags by value.
        cvt(unsafe { libc::ioctl(self.ctl(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) })?;
        Ok(())
    }

    /// Lets `prog` choose the queue of every frame the slave transmits (see [`crate::steer`]);
    /// the device keeps it until it is replaced or the device is deleted.
    pub fn steer(&self, prog: &FlowSteering) -> io::Result<()> {
        let fd: libc::c_int = prog.raw_fd();
        // SAFETY: TUNSETSTEERINGEBPF reads an int through the pointer, which outlives the call.
        cvt(unsafe { libc::ioctl(self.ctl(), TUNSETSTEERINGEBPF, &fd) })?;
        Ok(())
    }

    /// Makes the device non-persistent: the kernel deletes it when its last descriptor closes
    /// (ours, or a data-plane worker's clone finishing its burst). Needs no unique ownership.
    pub fn destroy(&self) -> io::Result<()> {
        self.set_persist(false)
    }
}

impl SlaveDevice for Tap {
    fn queues(&self) -> usize {
        self.queues.len()
    }

    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.poll_fd(queue);
        // SAFETY: reading into a buffer we own, of the length we pass.
        cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    }

    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize> {
        let fd = self.poll_fd(queue);
        // SAFETY: writing from a buffer we borrow, of the length we pass.
        cvt_size(unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) })
    }

    fn poll_fd(&self, queue: usize) -> RawFd {
        self.queues[queue % self.queues.len()].as_raw_fd()
    }

    fn set_carrier(&self, on: bool) -> io::Result<()> {
        let value: libc::c_int = on.into();
        // SAFETY: TUNSETCARRIER reads an int through the pointer, which outlives the call.
        cvt(unsafe { libc::ioctl(self.ctl(), TUNSETCARRIER, &value) })?;
        Ok(())
    }

    fn netns(&self) -> io::Result<NetNs> {
        // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor.
        let fd = cvt(unsafe { libc::ioctl(self.ctl(), TUNGETDEVNETNS) })?;
        // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
        NetNs::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.queues[0].as_fd()
    }
}
