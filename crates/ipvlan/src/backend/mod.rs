//! Slave backends: what a slave's device is made of, behind one seam. The daemon makes and
//! finds devices through a [`SlaveBackend`] and drives them through [`SlaveDevice`]; the data
//! plane moves their frames through [`crate::dataplane::SlaveIo`].
//!
//! - [`tap`]: a persistent multiqueue TAP per slave (`IFF_VNET_HDR`), served by the userspace
//!   data plane.
//! - [`ipvtap`]: a persistent single-queue TAP in the master's namespace whose descriptor a
//!   virtual machine monitor holds (the guest is the slave); switched as a veth host end.
//! - `veth`: a veth pair whose host end the kernel switches with eBPF programs (or, on the
//!   userspace data plane, that the workers read with a packet socket).
//!
//! [`Backends`] holds one of each the machine can make and dispatches on [`BackendKind`]; its
//! device, [`AnyDevice`], is either.
//!
//! The seam uses `io::Result`, as `std::io` does: each backend's own typed errors travel inside
//! (`io::Error::get_ref` reaches them), with their kind and OS error kept, so callers can still
//! tell "name taken" (`AlreadyExists`) and "out of descriptors" (`EMFILE`) apart.

pub mod ipvtap;
pub mod tap;
pub mod veth;

use std::io;
use std::path::Path;

use std::os::fd::RawFd;

pub use ipvlan::proto::BackendKind;
use ipvlan_core::{MacAddr, SlaveId};
use ipvlan_linux::{NetNs, Tap, VethIo};

use crate::dataplane::SlaveIo;

pub use ipvtap::IpvtapDevice;
pub use tap::TapBackend;
pub use veth::{VethDevice, HOST_END_ALIAS};

/// The packet socket through which the userspace data plane reads and writes a slave's
/// device in the master's namespace (a veth host end, an ipvtap's TAP): opened by `open` only
/// when `userspace`; if it cannot be, `destroy` removes the device that was made or found for
/// nothing, and the opening error is returned.
fn open_host_io<E: Into<io::Error>>(
    userspace: bool,
    open: impl FnOnce() -> Result<VethIo, E>,
    destroy: impl FnOnce(),
) -> io::Result<Option<VethIo>> {
    if !userspace {
        return Ok(None);
    }
    open().map(Some).map_err(|e| {
        destroy();
        e.into()
    })
}

/// That packet socket, or `Unsupported` naming `what` slave the eBPF programs switch instead.
fn host_io<'a>(io: &'a Option<VethIo>, what: &str) -> io::Result<&'a VethIo> {
    io.as_ref().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this {what} slave is switched by the eBPF programs, not read by the daemon"),
        )
    })
}

/// A new slave's device, as the port asks for it.
#[derive(Debug, Clone, Copy)]
pub struct NewDevice<'a> {
    pub kind: BackendKind,
    /// The slave's name (the device the user sees).
    pub name: &'a str,
    pub master_ifindex: u32,
    pub id: SlaveId,
    /// The master's (R-MAC-1).
    pub mac: MacAddr,
    /// Bytes.
    pub mtu: u32,
    /// The userspace data plane reads and writes it (else the eBPF programs switch it).
    pub userspace: bool,
    /// ipvtap: who may open the TAP without `CAP_NET_ADMIN`.
    pub tap_owner: Option<crate::proto::TapOwner>,
}

/// An existing slave's device found after a restart: in namespace `ns` under `name`.
pub struct FoundDevice<'a> {
    pub kind: BackendKind,
    pub ns: &'a NetNs,
    pub name: &'a str,
    pub master_ifindex: u32,
    pub id: SlaveId,
    pub userspace: bool,
}

/// One slave's device as the control plane drives it. Every setting acts on the device
/// wherever it lives now (it may have been moved into another namespace).
pub trait SlaveDevice: Send + Sync + 'static {
    /// What it is made of.
    fn kind(&self) -> BackendKind;
    /// Queues the data plane reads (at least one).
    fn queues(&self) -> usize;
    /// The device's name now (the user may have renamed it).
    fn current_name(&self) -> io::Result<String>;
    /// Sets the device's MAC: always the master's (R-MAC-1).
    fn set_mac(&self, mac: MacAddr) -> io::Result<()>;
    /// Sets the carrier: it follows the master's (R-LINK-1).
    fn set_carrier(&self, on: bool) -> io::Result<()>;
    /// Lets the slave's stack hand over GSO super-frames and partial checksums.
    fn enable_offloads(&self) -> io::Result<()>;
    /// The network namespace the device lives in now; an error once it is gone.
    fn netns(&self) -> io::Result<NetNs>;
    /// Deletes the device once the last handle to it is dropped.
    fn destroy(&self) -> io::Result<()>;
    /// A veth slave's host end in the master's namespace: its name and ifindex, where the
    /// eBPF programs attach. `None` for devices without one (TAP).
    fn host_end(&self) -> Option<(String, u32)> {
        None
    }
}

/// Makes and finds slave devices.
pub trait SlaveBackend {
    /// The device this backend makes.
    type Device: SlaveDevice + SlaveIo;

    /// Whether this machine can make devices of `kind` (TAP needs `/dev/net/tun`).
    fn can_make(&self, kind: BackendKind) -> bool;
    /// Creates the device of a new slave in the calling thread's namespace.
    /// Errors: `AlreadyExists` if a device has that name; `EMFILE` when out of descriptors;
    /// `Unsupported` when this machine cannot make that kind.
    fn create(&self, req: &NewDevice<'_>) -> io::Result<Self::Device>;
    /// Finds the device of an existing slave (after a daemon restart).
    fn attach(&self, found: &FoundDevice<'_>) -> io::Result<Self::Device>;
    /// Creates a transient device (gone with its last handle) that the l3s hooks copy the
    /// master namespace's packets for slaves to.
    fn create_sink(&self, name: &str) -> io::Result<Self::Device>;
}

/// A slave's device of either kind.
pub enum AnyDevice {
    Tap(Tap),
    Veth(VethDevice),
    Ipvtap(IpvtapDevice),
}

macro_rules! each {
    ($self:expr, $d:ident => $e:expr) => {
        match $self {
            AnyDevice::Tap($d) => $e,
            AnyDevice::Veth($d) => $e,
            AnyDevice::Ipvtap($d) => $e,
        }
    };
}

impl SlaveDevice for AnyDevice {
    fn kind(&self) -> BackendKind {
        each!(self, d => d.kind())
    }
    fn queues(&self) -> usize {
        each!(self, d => SlaveDevice::queues(d))
    }
    fn current_name(&self) -> io::Result<String> {
        each!(self, d => SlaveDevice::current_name(d))
    }
    fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        each!(self, d => SlaveDevice::set_mac(d, mac))
    }
    fn set_carrier(&self, on: bool) -> io::Result<()> {
        each!(self, d => SlaveDevice::set_carrier(d, on))
    }
    fn enable_offloads(&self) -> io::Result<()> {
        each!(self, d => SlaveDevice::enable_offloads(d))
    }
    fn netns(&self) -> io::Result<NetNs> {
        each!(self, d => SlaveDevice::netns(d))
    }
    fn destroy(&self) -> io::Result<()> {
        each!(self, d => SlaveDevice::destroy(d))
    }
    fn host_end(&self) -> Option<(String, u32)> {
        each!(self, d => d.host_end())
    }
}

impl SlaveIo for AnyDevice {
    fn queues(&self) -> usize {
        each!(self, d => SlaveIo::queues(d))
    }
    fn recv(&self, queue: usize, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, d => SlaveIo::recv(d, queue, buf))
    }
    fn send(&self, queue: usize, frame: &[u8]) -> io::Result<usize> {
        each!(self, d => SlaveIo::send(d, queue, frame))
    }
    fn poll_fd(&self, queue: usize) -> RawFd {
        each!(self, d => SlaveIo::poll_fd(d, queue))
    }
}

/// The backends this machine has: veth always (the kernel may still refuse: no
/// `CONFIG_VETH`), TAP where `/dev/net/tun` exists.
pub struct Backends {
    tap: Option<TapBackend>,
}

impl Backends {
    /// Probes what this machine can make; TAPs get a queue per worker (`workers`).
    pub fn new(workers: usize) -> Backends {
        let tap = Path::new("/dev/net/tun")
            .exists()
            .then(|| TapBackend::new(workers));
        Backends { tap }
    }

    fn tap(&self) -> io::Result<&TapBackend> {
        self.tap.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "this machine has no TUN/TAP (/dev/net/tun): use backend veth",
            )
        })
    }
}

impl SlaveBackend for Backends {
    type Device = AnyDevice;

    fn can_make(&self, kind: BackendKind) -> bool {
        match kind {
            BackendKind::Tap => self.tap.is_some(),
            BackendKind::Veth => true,
            BackendKind::Ipvtap => self.tap.is_some(),
        }
    }

    fn create(&self, req: &NewDevice<'_>) -> io::Result<AnyDevice> {
        match req.kind {
            BackendKind::Tap => Ok(AnyDevice::Tap(self.tap()?.create(req.name)?)),
            BackendKind::Veth => Ok(AnyDevice::Veth(VethDevice::create(req)?)),
            BackendKind::Ipvtap => Ok(AnyDevice::Ipvtap(IpvtapDevice::create(req)?)),
        }
    }

    fn attach(&self, found: &FoundDevice<'_>) -> io::Result<AnyDevice> {
        match found.kind {
            BackendKind::Tap => {
                let tap = self.tap()?;
                let name = found.name;
                Ok(AnyDevice::Tap(found.ns.run(move || tap.attach(name))??))
            }
            BackendKind::Veth => Ok(AnyDevice::Veth(VethDevice::attach(found)?)),
            BackendKind::Ipvtap => Ok(AnyDevice::Ipvtap(IpvtapDevice::attach(found)?)),
        }
    }

    fn create_sink(&self, name: &str) -> io::Result<AnyDevice> {
        Ok(AnyDevice::Tap(self.tap()?.create_sink(name)?))
    }
}
