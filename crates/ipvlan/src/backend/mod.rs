//! Slave backends: what a slave's device is made of, behind one seam. The daemon makes and
//! finds devices through a [`SlaveBackend`] and drives them through [`SlaveDevice`]; the data
//! plane moves their frames through [`crate::dataplane::SlaveIo`].
//!
//! - [`tap`]: a persistent multiqueue TAP per slave (`IFF_VNET_HDR`), served by the userspace
//!   data plane. The one backend today.
//! - `veth` (next): a veth pair whose host end the kernel switches with eBPF programs.
//!
//! The seam uses `io::Result`, as `std::io` does: each backend's own typed errors travel inside
//! (`io::Error::get_ref` reaches them), with their kind and OS error kept, so callers can still
//! tell "name taken" (`AlreadyExists`) and "out of descriptors" (`EMFILE`) apart.

pub mod tap;

use std::io;

use ipvlan_core::MacAddr;
use ipvlan_linux::NetNs;

use crate::dataplane::SlaveIo;

pub use tap::TapBackend;

/// One slave's device as the control plane drives it. Every setting acts on the device
/// wherever it lives now (it may have been moved into another namespace).
pub trait SlaveDevice: Send + Sync + 'static {
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
}

/// Makes and finds slave devices of one kind.
pub trait SlaveBackend {
    /// The device this backend makes.
    type Device: SlaveDevice + SlaveIo;
    /// The backend's name, as `link show -d` and the logs give it.
    const KIND: &'static str;

    /// Creates the device of a new slave named `name` in the calling thread's namespace.
    /// Errors: `AlreadyExists` if a device has that name; `EMFILE` when out of descriptors.
    fn create(&self, name: &str) -> io::Result<Self::Device>;
    /// Finds the device of an existing slave named `name` in the calling thread's namespace
    /// (after a daemon restart).
    fn attach(&self, name: &str) -> io::Result<Self::Device>;
    /// Creates a transient device (gone with its last handle) that the l3s hooks copy the
    /// master namespace's packets for slaves to.
    fn create_sink(&self, name: &str) -> io::Result<Self::Device>;
}
