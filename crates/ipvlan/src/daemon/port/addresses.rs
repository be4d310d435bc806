//! The addresses of ipvtap slaves, which live inside their guests where the daemon cannot see
//! them: `ipvlan address add|del ADDR[/LEN] dev NAME` gives them ([`PortRuntime::address_add`],
//! [`PortRuntime::address_del`]); they are persisted and claimed again after a restart or a
//! resync ([`PortRuntime::reclaim_manual`]). The conflict rules are those of addresses learnt
//! from a namespace (R-ADDR-3), except that a duplicate is refused at once, as the kernel
//! refuses `ip addr add` of an address another ipvlan slave of the port has
//! (`ipvlan_addr_busy` → `EADDRINUSE`, "Address already assigned to an ipvlan device.").

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipvlan_core::{Claim, DropReason, PortError, SlaveId};
use tracing::{info, warn};

use super::PortRuntime;
use crate::backend::{SlaveBackend, SlaveDevice};
use crate::daemon::error::RequestError;
use crate::daemon::slave::{AddrConflict, SlaveRuntime};

/// Ipvtap slave `id` of `slaves`: `NoSuchSlaveId`, or [`RequestError::NotIpvtap`] for
/// another kind of slave (its addresses are learnt in its namespace).
fn ipvtap_mut<D: SlaveDevice>(
    slaves: &mut BTreeMap<SlaveId, SlaveRuntime<D>>,
    id: SlaveId,
) -> Result<&mut SlaveRuntime<D>, RequestError> {
    let rt = slaves
        .get_mut(&id)
        .ok_or(RequestError::Port(PortError::NoSuchSlaveId(id.get())))?;
    if !rt.is_ipvtap() {
        return Err(RequestError::NotIpvtap {
            name: rt.name.to_string(),
            kind: rt.kind().name(),
        });
    }
    Ok(rt)
}

impl<B: SlaveBackend> PortRuntime<B> {
    /// `address add`: the guest of ipvtap slave `id` has `addr`. Errors:
    /// [`RequestError::NotIpvtap`] for another kind of slave, [`RequestError::AddressAssigned`]
    /// if another slave of the port owns it (or this one has it already), the core's error for
    /// an address no slave may have (multicast, unspecified).
    pub fn address_add(&mut self, id: SlaveId, addr: IpAddr) -> Result<(), RequestError> {
        let rt = ipvtap_mut(&mut self.slaves, id)?;
        if rt.manual.contains(&addr) {
            return Err(RequestError::AddressAssigned {
                addr,
                owner: rt.name.to_string(),
            });
        }
        // (The port's guard must be gone before the arms: they take it again.)
        let claimed = self.dp.port().add_address(id, addr);
        match claimed {
            Ok(Claim::New | Claim::AlreadyOwned) => {}
            Err(PortError::AddressInUse { owner, .. }) => {
                // The hostreach device's addresses are the master's: say so, not its name alone.
                let host = {
                    let port = self.dp.port();
                    port.host_slave()
                        .and_then(|h| port.slave(h).map(|s| s.name().to_string()))
                };
                return Err(match host {
                    Some(device) if device == owner => RequestError::MasterAddress { addr, device },
                    _ => RequestError::AddressAssigned { addr, owner },
                });
            }
            Err(e) => return Err(e.into()),
        }
        rt.manual.insert(addr);
        info!(slave = %rt.name, %addr, "address added");
        self.netfilter_dirty = true;
        self.owners_changed = true;
        Ok(())
    }

    /// `address del`: the guest of ipvtap slave `id` no longer has `addr`; the slave that
    /// claimed it earliest since gets it. Errors: [`RequestError::NotIpvtap`],
    /// `AddressNotAssigned` if it was not given.
    pub fn address_del(&mut self, id: SlaveId, addr: IpAddr) -> Result<(), RequestError> {
        let rt = ipvtap_mut(&mut self.slaves, id)?;
        if !rt.manual.remove(&addr) {
            return Err(RequestError::Port(PortError::AddressNotAssigned {
                addr,
                slave: rt.name.to_string(),
            }));
        }
        info!(slave = %rt.name, %addr, "address deleted");
        if rt.conflicts.remove(&addr).is_none() {
            let _ = self.dp.port().remove_address(id, addr);
            self.pass_on(&[addr]);
        }
        self.netfilter_dirty = true;
        self.owners_changed = true;
        Ok(())
    }

    /// Claims again the given addresses of ipvtap slave `id` (after a restart or a resync
    /// released them). One another slave owns meanwhile is a conflict, shown and served once
    /// the owner lets go of it, as for a learnt address.
    pub(super) fn reclaim_manual(&mut self, id: SlaveId) {
        let Some(rt) = self.slaves.get_mut(&id) else {
            return;
        };
        for addr in rt.manual.clone() {
            match self.dp.port().add_address(id, addr) {
                Ok(_) => {}
                Err(PortError::AddressInUse { owner, .. }) => {
                    warn!(slave = %rt.name, %addr, %owner, "address conflict: already owned by another slave of this master; not served");
                    self.claims += 1;
                    let since = self.claims;
                    rt.conflicts.insert(addr, AddrConflict { owner, since });
                    rt.conflict_count += 1;
                }
                Err(e) => warn!(slave = %rt.name, %addr, "address not used for steering: {e}"),
            }
        }
    }

    /// Warns once (when they start) about an ipvtap guest whose frames are dropped because
    /// its NIC does not carry the master's MAC, saying how to fix it. Called at every settle.
    pub fn warn_foreign_mac(&mut self) {
        if !self.slaves.values().any(|rt| rt.is_ipvtap()) {
            return;
        }
        let port = self.dp.port();
        let mac = port.master().mac;
        for (id, rt) in self.slaves.iter_mut().filter(|(_, rt)| rt.is_ipvtap()) {
            let n = self
                .dp
                .slave_counters(&port, *id)
                .tx_dropped
                .get(DropReason::ForeignSourceMac);
            if n > 0 && rt.foreign_mac_drops == 0 {
                warn!(
                    slave = %rt.name,
                    master = %self.master,
                    "the guest behind this ipvtap sends with a MAC other than the master's \
                     {mac}: its frames are dropped (foreign_source_mac); give the guest's NIC \
                     the master's MAC (QEMU -device virtio-net-pci,...,mac={mac}; Firecracker \
                     guest_mac \"{mac}\")"
                );
            }
            rt.foreign_mac_drops = n;
        }
    }
}
