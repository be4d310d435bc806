//! The data-path seam: what switches a port's frames. One [`Forwarder`] per port, either
//!
//! - the userspace workers (`crate::dataplane`): every frame crosses the daemon, read from the
//!   master's packet socket and the slaves' TAPs (or veth host ends); or
//! - the eBPF programs in the kernel (`crate::fastpath`): veth slaves, switched on the host
//!   ends' and the master's ingress, with the daemon only filling maps.
//!
//! Both keep the core [`Port`] as the model the control plane changes, and both decide as
//! `ipvlan_core::decide` does. The control plane goes through this seam only: it never needs
//! to know which data path a port has, except to show it (`ipvlan -d link show`: `datapath`).

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipvlan_core::{Port, SlaveCounters, SlaveId};

use crate::backend::SlaveDevice;
use crate::dataplane::{DataPlane, PortGuard, SlaveIo};
use crate::fastpath::{BpfGuard, BpfPlane};

/// Where a daemon pins its ports' programs: `ROOT/ipvlan-rs/<instance>/<master ifindex>`.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// The pin directory of one port.
pub fn pin_dir(bpffs: &Path, instance: &str, master_ifindex: u32) -> PathBuf {
    bpffs
        .join("ipvlan-rs")
        .join(instance)
        .join(master_ifindex.to_string())
}

/// Which data path switches a port's frames, as `ipvlan -d link show` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatapathKind {
    /// eBPF programs attached with tcx links (Linux ≥ 6.6).
    BpfTcx,
    /// eBPF programs attached as `cls_bpf` filters on a clsact qdisc (older kernels).
    BpfTc,
    /// The daemon's userspace workers.
    User,
}

impl DatapathKind {
    /// The name `link show -d` and the state file use.
    pub fn name(self) -> &'static str {
        match self {
            DatapathKind::BpfTcx => "bpf-tcx",
            DatapathKind::BpfTc => "bpf-tc",
            DatapathKind::User => "user",
        }
    }

    pub fn is_bpf(self) -> bool {
        self != DatapathKind::User
    }
}

impl fmt::Display for DatapathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A port's data path.
pub enum Forwarder<D> {
    User(DataPlane<D>),
    Bpf(Box<BpfPlane>),
}

/// The core port, locked, whichever data path holds it. Hold it only briefly: the userspace
/// workers wait on it.
pub enum PortRef<'a, D> {
    User(PortGuard<'a, D>),
    /// Releasing it writes what changed into the maps.
    Bpf(BpfGuard<'a>),
}

impl<D> Deref for PortRef<'_, D> {
    type Target = Port;
    fn deref(&self) -> &Port {
        match self {
            PortRef::User(g) => g,
            PortRef::Bpf(g) => g,
        }
    }
}

impl<D> DerefMut for PortRef<'_, D> {
    fn deref_mut(&mut self) -> &mut Port {
        match self {
            PortRef::User(g) => &mut *g,
            PortRef::Bpf(g) => &mut *g,
        }
    }
}

impl<D: SlaveIo + SlaveDevice + 'static> Forwarder<D> {
    /// Which data path this is.
    pub fn kind(&self) -> DatapathKind {
        match self {
            Forwarder::User(_) => DatapathKind::User,
            Forwarder::Bpf(b) => b.kind(),
        }
    }

    /// The core port, locked.
    pub fn port(&self) -> PortRef<'_, D> {
        match self {
            Forwarder::User(dp) => PortRef::User(dp.port()),
            Forwarder::Bpf(b) => PortRef::Bpf(b.port()),
        }
    }

    /// Starts switching a slave's frames. Errors: the OS error of the registration (userspace)
    /// or of the attachment (eBPF); nothing stays registered then.
    pub fn add_slave(&self, id: SlaveId, dev: Arc<D>) -> io::Result<()> {
        match self {
            Forwarder::User(dp) => dp.add_slave(id, dev),
            Forwarder::Bpf(b) => {
                let (_, host) = dev.host_end().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        "the eBPF data path switches veth slaves only",
                    )
                })?;
                b.add_slave(id, host)
            }
        }
    }

    /// Stops switching a slave's frames; returns the data path's handle on its device (dropped
    /// by the caller before the device is deleted).
    pub fn remove_slave(&self, id: SlaveId) -> Option<Arc<D>> {
        match self {
            Forwarder::User(dp) => dp.remove_slave(id),
            Forwarder::Bpf(b) => {
                b.remove_slave(id);
                None
            }
        }
    }

    /// Whether slave `id`'s device is in the master's own namespace.
    pub fn set_local(&self, id: SlaveId, local: bool) {
        match self {
            Forwarder::User(dp) => dp.set_local(id, local),
            Forwarder::Bpf(b) => b.set_local(id, local),
        }
    }

    /// The l3s sink (userspace only: an eBPF port never runs l3s).
    pub fn set_sink(&self, sink: Option<Arc<D>>) -> io::Result<()> {
        match self {
            Forwarder::User(dp) => dp.set_sink(sink),
            Forwarder::Bpf(_) if sink.is_none() => Ok(()),
            Forwarder::Bpf(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an eBPF port has no l3s",
            )),
        }
    }

    /// A slave's counters, from wherever the data path counts them.
    pub fn slave_counters(&self, port: &Port, id: SlaveId) -> SlaveCounters {
        match self {
            Forwarder::User(_) => port.slave(id).map(|s| s.counters).unwrap_or_default(),
            Forwarder::Bpf(b) => b.slave_counters(id),
        }
    }

    /// The port's own counters.
    pub fn port_counters(&self, port: &Port) -> ipvlan_core::PortCounters {
        match self {
            Forwarder::User(_) => port.counters,
            Forwarder::Bpf(b) => b.port_counters(),
        }
    }

    /// The port's slaves are all restored after a daemon restart (eBPF: what the earlier run
    /// left in the maps and no restored slave has goes now).
    pub fn restored(&self) {
        if let Forwarder::Bpf(b) = self {
            b.restored();
        }
    }

    /// Writes what could not be written before (eBPF maps); called at every settle.
    pub fn resync(&self) {
        if let Forwarder::Bpf(b) = self {
            b.resync();
        }
    }

    /// Userspace worker threads (0 for eBPF).
    pub fn workers(&self) -> usize {
        match self {
            Forwarder::User(dp) => dp.workers(),
            Forwarder::Bpf(_) => 0,
        }
    }

    /// Stops forwarding by this process (the daemon is stopping). Userspace: the workers stop,
    /// and frames wait until the next start. eBPF: nothing stops; the pinned programs go on.
    pub fn stop(&mut self) {
        match self {
            Forwarder::User(dp) => dp.stop(),
            Forwarder::Bpf(_) => {}
        }
    }

    /// Stops forwarding for good: the port is deleted (eBPF: detach and unpin).
    pub fn teardown(self) -> io::Result<()> {
        match self {
            Forwarder::User(mut dp) => {
                dp.stop();
                Ok(())
            }
            Forwarder::Bpf(b) => (*b).teardown(),
        }
    }
}
