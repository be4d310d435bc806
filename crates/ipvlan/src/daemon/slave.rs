//! One slave's device as the control plane sees it: where it lives (namespace, ifindex), its
//! carrier, its address conflicts, and the operations on the device itself (settings applied
//! inside whatever namespace it is in now).
//!
//! The [`SlaveRuntime`] owns the device (whatever the backend, `crate::backend`). The data
//! plane holds a clone of the handle for I/O only; deleting the device
//! ([`SlaveRuntime::destroy`]) needs no unique ownership (the kernel deletes a non-persistent
//! TAP when its last descriptor closes) and waits until the workers have let go, so the device
//! is gone when `link del` answers.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipvlan_core::slave_id::link_local;
use ipvlan_core::{IfName, MacAddr, SlaveId};
use ipvlan_linux::rtnl::{LinkChange, Rtnl};
use ipvlan_linux::{NetNs, Tap};
use tracing::warn;

use crate::backend::SlaveDevice;

/// The `ifalias` naming a slave's TAP: unique per daemon instance, master and slave id, so that
/// a restarted daemon finds its slaves (and only its own) in any namespace.
pub fn alias_for(instance: &str, master_index: u32, id: SlaveId) -> String {
    format!("ipvlan-rs:{instance}:{master_index}:{}", id.get())
}

/// An address a slave configured while another slave of the port owned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrConflict {
    /// The owner's name.
    pub owner: String,
    /// When it was claimed, in the port's order of claims: the earliest claimant gets the
    /// address when the owner lets go of it.
    pub since: u64,
}

/// A slave's device and what the control plane knows of it.
#[derive(Debug)]
pub struct SlaveRuntime<D = Tap> {
    /// The name the slave was created with (the user may rename the device later).
    pub name: IfName,
    pub alias: String,
    device: Arc<D>,
    /// Id of the slave's namespace in the daemon's (`None`: the daemon's own).
    pub nsid: Option<i32>,
    /// Index of the device in its namespace (0 until known).
    pub ifindex: u32,
    pub carrier: bool,
    /// The TAP was re-attached from inside the slave's namespace (after a restart), so our
    /// descriptor keeps that namespace alive; the sweep notices when nobody else does.
    pub pinned: bool,
    /// Addresses configured on the slave that another slave owns: not served to it until the
    /// owner lets go of them (R-ADDR-3).
    pub conflicts: BTreeMap<IpAddr, AddrConflict>,
    /// Address claims refused so far.
    pub conflict_count: u64,
    /// The (address, prefix length) pairs configured on the device: the same IP may be there
    /// twice, and the slave holds it until the last one goes.
    pub configured: BTreeSet<(IpAddr, u8)>,
}

impl<D: SlaveDevice> SlaveRuntime<D> {
    pub fn new(name: IfName, alias: String, device: Arc<D>, carrier: bool) -> SlaveRuntime<D> {
        SlaveRuntime {
            name,
            alias,
            device,
            nsid: None,
            ifindex: 0,
            carrier,
            pinned: false,
            conflicts: BTreeMap::new(),
            conflict_count: 0,
            configured: BTreeSet::new(),
        }
    }

    /// The device handle, for the data plane's I/O.
    pub fn device(&self) -> Arc<D> {
        self.device.clone()
    }

    /// The namespace the device lives in now; an error once it is gone.
    pub fn netns(&self) -> io::Result<NetNs> {
        self.device.netns()
    }

    /// The device's current name (the user may have renamed it).
    pub fn current_name(&self) -> io::Result<String> {
        self.device.current_name()
    }

    /// What the device is made of.
    pub fn kind(&self) -> crate::backend::BackendKind {
        self.device.kind()
    }

    /// A veth slave's host end's name (`None` for TAP slaves).
    pub fn host_end(&self) -> Option<String> {
        self.device.host_end().map(|(name, _)| name)
    }

    /// Queues the data plane reads.
    pub fn queues(&self) -> usize {
        self.device.queues()
    }

    /// Runs `f` with a request socket inside the namespace the device lives in now.
    pub fn in_dev_ns<T: Send, E: Into<io::Error>>(
        &self,
        f: impl FnOnce(&mut Rtnl) -> Result<T, E> + Send,
    ) -> io::Result<T> {
        let ns = self.device.netns()?;
        ns.run(|| {
            let mut r = Rtnl::open()?;
            f(&mut r).map_err(Into::into)
        })?
    }

    /// Applies `change` to the device in its namespace.
    pub fn set_link(&self, change: LinkChange) -> io::Result<()> {
        let index = self.ifindex;
        self.in_dev_ns(move |r| r.set_link(index, &change))
    }

    /// Sets the device's MAC (always the master's, R-MAC-1).
    pub fn set_mac(&self, mac: MacAddr) -> io::Result<()> {
        self.device.set_mac(mac)
    }

    /// Sets the carrier (it follows the master's, R-LINK-1), remembering it.
    pub fn set_carrier(&mut self, on: bool) -> io::Result<()> {
        self.device.set_carrier(on)?;
        self.carrier = on;
        Ok(())
    }

    /// Gives an up slave its per-slave link-local address (R-DEVID-2) and removes the EUI-64
    /// one of the shared MAC if the kernel made it before address generation was turned off.
    pub fn ensure_link_local(&self, ll: Ipv6Addr, mac: MacAddr) {
        let eui = link_local(mac, 0);
        let index = self.ifindex;
        // SLAAC builds the slave's global addresses from the same per-slave identifier
        // (R-DEVID-2: the kernel derives both from dev_id, which a TAP cannot have): the
        // identifier becomes the device's IPv6 token. The kernel refuses a token on NOARP
        // (l3) slaves, which take no router advertisements anyway.
        let iid = u128::from(ll) & u128::from(u64::MAX);
        let token = Ipv6Addr::from(iid);
        let r = self.in_dev_ns(move |r| {
            let _ = r.set_link(
                index,
                &LinkChange {
                    token: Some(token),
                    ..LinkChange::default()
                },
            );
            let have = r.addresses(Some(index))?;
            if have.iter().any(|a| a.addr == IpAddr::V6(eui)) {
                let _ = r.del_address(index, IpAddr::V6(eui), 64);
            }
            if !have.iter().any(|a| a.addr == IpAddr::V6(ll)) {
                match r.add_address(index, IpAddr::V6(ll), 64, false) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            warn!(slave = %self.name, "adding the slave's link-local address: {e}");
        }
    }

    /// Deletes the device. Call after the data plane dropped its handle: waits (at most a
    /// second) until workers finishing a burst let go of theirs, so the device is gone when
    /// this returns.
    pub fn destroy(self) -> io::Result<()> {
        self.device.destroy()?;
        let mut device = self.device;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match Arc::try_unwrap(device) {
                Ok(d) => {
                    drop(d); // the last handle: the device goes now
                    return Ok(());
                }
                Err(shared) if Instant::now() < deadline => {
                    device = shared;
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Still held: the device goes when the holder drops it.
                Err(_) => return Ok(()),
            }
        }
    }
}
