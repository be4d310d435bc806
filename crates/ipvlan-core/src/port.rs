//! A port: the per-master state shared by all its slaves (spec §1): mode, flag, slaves in creation
//! order, the address table, slave ids, counters.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::addr_table::{AddressTable, Claim};
use crate::counters::{PortCounters, SlaveCounters};
use crate::dhcp::XidTable;
use crate::error::{ConfigError, PortError};
use crate::ifname::IfName;
use crate::link_args::LinkTypeArgs;
use crate::mode::{Flag, Mode};
use crate::multicast::McFilter;
use crate::slave_id::{self, SlaveId, SlaveIdAllocator};
use crate::wire::MacAddr;

/// Slave MTU range (R-MTU-2). No check against the master's MTU.
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535;
/// What a local delivery may exceed the receiver's MTU by: Ethernet header + one VLAN tag
/// (R-MTU-4).
pub const MTU_SLACK: usize = 14 + 4;

/// Checks a slave MTU against R-MTU-2.
pub fn check_mtu(mtu: u32) -> Result<u32, ConfigError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(mtu)
    } else {
        Err(ConfigError::Mtu(mtu))
    }
}

/// What the port knows about its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub name: IfName,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// One slave of a port.
#[derive(Debug, Clone)]
pub struct Slave {
    id: SlaveId,
    name: IfName,
    mtu: u32,
    up: bool,
    noarp: bool,
    source_guard: bool,
    /// With the guard on, may send router advertisements and redirects.
    router: bool,
    /// The port's host slave (`hostreach on`): a device in the master's namespace whose
    /// addresses are the master's own, reached by slaves only.
    host: bool,
    /// Frames whose Ethernet source is not the master's MAC are dropped (ipvtap guests).
    mac_guard: bool,
    /// The device's own multicast filter.
    pub mc_filter: McFilter,
    pub counters: SlaveCounters,
}

impl Slave {
    pub fn id(&self) -> SlaveId {
        self.id
    }
    pub fn name(&self) -> &IfName {
        &self.name
    }
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// The NOARP device flag (R-MODE-2, R-MODE-4).
    pub fn noarp(&self) -> bool {
        self.noarp
    }
    /// Frames with a source address the slave does not own are dropped (opt-in).
    pub fn source_guard(&self) -> bool {
        self.source_guard
    }
    /// With the guard on, the slave may still send router advertisements and redirects (it
    /// is the network's router).
    pub fn router(&self) -> bool {
        self.router
    }
    /// The port's host slave (`hostreach on`), made by the daemon, not by a user: its table
    /// entries are the master's addresses and match frames sent by slaves only; what it sends
    /// goes to slaves only, never out of the master (see `docs/hostreach.md`).
    pub fn is_host(&self) -> bool {
        self.host
    }
    /// Frames whose Ethernet source is not the master's MAC are dropped
    /// (`foreign_source_mac`): the slave is a VM's NIC (ipvtap), whose MAC the daemon cannot
    /// set, and to which nothing addressed to the master's MAC would get through otherwise.
    pub fn mac_guard(&self) -> bool {
        self.mac_guard
    }
    /// Whether a frame of `len` bytes may be delivered locally to this slave (R-MTU-4).
    pub fn fits(&self, len: usize, gso: bool) -> bool {
        gso || len <= self.mtu as usize + MTU_SLACK
    }
}

/// What to do when a new slave's request names no mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingMode {
    /// The kernel's rule (R-CRT-5): the port is set to `l3`, for every slave.
    #[default]
    ResetToL3,
    /// Keep the port's current mode (ipvlan-rs's CLI default: no silent flip of other slaves).
    KeepPort,
}

/// A request to add a slave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSlave {
    pub name: IfName,
    pub args: LinkTypeArgs,
    /// `None`: the master's MTU (R-MTU-1).
    pub mtu: Option<u32>,
    pub missing_mode: MissingMode,
}

impl NewSlave {
    pub fn new(name: IfName, args: LinkTypeArgs) -> NewSlave {
        NewSlave {
            name,
            args,
            mtu: None,
            missing_mode: MissingMode::default(),
        }
    }
}

/// What a mode/flag request changed on the port, for the CLI to report (R-MODE-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortChange {
    pub old_mode: Mode,
    pub new_mode: Mode,
    pub old_flag: Flag,
    pub new_flag: Flag,
    /// Existing slaves whose NOARP flag flipped (R-MODE-2).
    pub noarp_changed: Vec<SlaveId>,
}

impl PortChange {
    pub fn changed(&self) -> bool {
        self.old_mode != self.new_mode || self.old_flag != self.new_flag
    }
}

/// A slave added: its id and what the request did to the rest of the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub id: SlaveId,
    pub change: PortChange,
}

/// An address recorded or refused by [`Port::add_address`].
pub type AddressResult = Result<Claim, PortError>;

/// The port of one master.
#[derive(Debug, Clone)]
pub struct Port {
    master: Master,
    mode: Mode,
    flag: Flag,
    slaves: Vec<Slave>,
    index: HashMap<SlaveId, usize>,
    table: AddressTable,
    ids: SlaveIdAllocator,
    /// DHCPv4 transactions of the slaves' clients, by xid (`crate::dhcp`).
    dhcp_xids: XidTable,
    pub counters: PortCounters,
}

impl Port {
    /// A fresh port: mode `l3`, flag `bridge`, no slaves (R-OBJ-6). It should live only while it
    /// has slaves (R-OBJ-1); [`Port::remove_slave`] says when the last one is gone.
    pub fn new(master: Master) -> Port {
        Port {
            master,
            mode: Mode::L3,
            flag: Flag::Bridge,
            slaves: Vec::new(),
            index: HashMap::new(),
            table: AddressTable::default(),
            ids: SlaveIdAllocator::default(),
            dhcp_xids: XidTable::default(),
            counters: PortCounters::default(),
        }
    }

    pub fn master(&self) -> &Master {
        &self.master
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn flag(&self) -> Flag {
        self.flag
    }
    pub fn table(&self) -> &AddressTable {
        &self.table
    }
    /// The DHCPv4 transactions of the slaves' clients (`crate::dhcp`).
    pub fn dhcp_xids(&self) -> &XidTable {
        &self.dhcp_xids
    }
    pub(crate) fn dhcp_xids_mut(&mut self) -> &mut XidTable {
        &mut self.dhcp_xids
    }

    /// Slaves in creation order.
    pub fn slaves(&self) -> impl Iterator<Item = &Slave> {
        self.slaves.iter()
    }

    pub fn len(&self) -> usize {
        self.slaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slaves.is_empty()
    }

    pub fn slave(&self, id: SlaveId) -> Option<&Slave> {
        self.index.get(&id).map(|&i| &self.slaves[i])
    }

    pub fn slave_mut(&mut self, id: SlaveId) -> Option<&mut Slave> {
        self.index.get(&id).map(|&i| &mut self.slaves[i])
    }

    pub fn slave_by_name(&self, name: &str) -> Option<&Slave> {
        self.slaves.iter().find(|s| s.name.as_str() == name)
    }

    fn existing(&self, id: SlaveId) -> Result<usize, PortError> {
        self.index
            .get(&id)
            .copied()
            .ok_or(PortError::NoSuchSlaveId(id.get()))
    }

    /// The slave an address steers to (active entries only).
    pub fn lookup(&self, addr: IpAddr) -> Option<SlaveId> {
        self.table.lookup(addr)
    }

    /// The slave a frame from the master's wire steers to: [`Port::lookup`] without the host
    /// slave's entries (the master's own addresses stay the master's, `hostreach`).
    pub fn lookup_rx(&self, addr: IpAddr) -> Option<SlaveId> {
        self.lookup(addr)
            .filter(|&id| self.slave(id).is_some_and(|s| !s.host))
    }

    /// The host slave (`hostreach on`), if the port has one.
    pub fn host_slave(&self) -> Option<SlaveId> {
        self.slaves.iter().find(|s| s.host).map(|s| s.id)
    }

    /// The link-local address the slave's kernel stack should use (R-DEVID-2).
    pub fn link_local(&self, id: SlaveId) -> std::net::Ipv6Addr {
        slave_id::link_local(self.master.mac, id.get())
    }

    /// Adds a slave, applying R-CRT-5: flags overwritten when given, then the mode (or `l3`, or
    /// the port's mode with [`MissingMode::KeepPort`]) through the mode-change procedure on the
    /// *existing* slaves, then the new slave is appended. Nothing changes if it fails.
    pub fn add_slave(&mut self, req: NewSlave) -> Result<Added, PortError> {
        if self.slave_by_name(req.name.as_str()).is_some() {
            return Err(PortError::SlaveExists(req.name.to_string()));
        }
        let mtu = match req.mtu {
            Some(mtu) => check_mtu(mtu)?,
            None => self.master.mtu, // R-MTU-1
        };
        let id = self.ids.allocate().ok_or(PortError::TooManySlaves)?;
        let mode = match (req.args.mode, req.missing_mode) {
            (Some(m), _) => m,
            (None, MissingMode::ResetToL3) => Mode::L3,
            (None, MissingMode::KeepPort) if self.slaves.is_empty() => Mode::L3,
            (None, MissingMode::KeepPort) => self.mode,
        };
        let change = self.apply(Some(mode), req.args.flag);
        self.index.insert(id, self.slaves.len());
        self.slaves.push(Slave {
            id,
            name: req.name,
            mtu,
            up: false,
            noarp: false, // R-MODE-4: set at the first up, not before.
            source_guard: false,
            router: false,
            host: false,
            mac_guard: false,
            mc_filter: McFilter::accept_all(),
            counters: SlaveCounters::default(),
        });
        Ok(Added { id, change })
    }

    /// Restores a persisted slave with its id, as down, without touching the port mode.
    pub fn restore_slave(&mut self, id: SlaveId, name: IfName, mtu: u32) -> Result<(), PortError> {
        if self.slave_by_name(name.as_str()).is_some() {
            return Err(PortError::SlaveExists(name.to_string()));
        }
        let mtu = check_mtu(mtu)?;
        if !self.ids.reserve(id) {
            return Err(PortError::SlaveExists(format!("id {id}")));
        }
        self.index.insert(id, self.slaves.len());
        self.slaves.push(Slave {
            id,
            name,
            mtu,
            up: false,
            noarp: false,
            source_guard: false,
            router: false,
            host: false,
            mac_guard: false,
            mc_filter: McFilter::accept_all(),
            counters: SlaveCounters::default(),
        });
        Ok(())
    }

    /// `ip link set dev S type ipvlan …` (R-MODE-5): no attribute → no-op; the mode first, then
    /// the flag, which replaces the old one.
    pub fn change_link(&mut self, args: LinkTypeArgs) -> PortChange {
        self.apply(args.mode, args.flag)
    }

    /// Sets the port's mode and/or flag directly (restoring state, tests).
    pub fn set_mode_flag(&mut self, mode: Mode, flag: Flag) -> PortChange {
        self.apply(Some(mode), Some(flag))
    }

    fn apply(&mut self, mode: Option<Mode>, flag: Option<Flag>) -> PortChange {
        let (old_mode, old_flag) = (self.mode, self.flag);
        let mut noarp_changed = Vec::new();
        if let Some(mode) = mode.filter(|&m| m != self.mode) {
            // R-MODE-2: every existing slave's NOARP follows the new mode.
            for s in &mut self.slaves {
                if s.noarp != mode.is_noarp() {
                    s.noarp = mode.is_noarp();
                    noarp_changed.push(s.id);
                }
            }
            self.mode = mode;
        }
        if let Some(flag) = flag {
            self.flag = flag;
        }
        PortChange {
            old_mode,
            new_mode: self.mode,
            old_flag,
            new_flag: self.flag,
            noarp_changed,
        }
    }

    /// Removes a slave and its addresses, freeing its id (R-LIFE-3). Returns the slave and
    /// whether the port is now empty (and should be destroyed, R-OBJ-1).
    pub fn remove_slave(&mut self, id: SlaveId) -> Result<(Slave, bool), PortError> {
        let i = self.existing(id)?;
        let slave = self.slaves.remove(i);
        self.table.release_all(id);
        self.dhcp_xids.forget_slave(id);
        self.ids.release(id);
        self.index = self
            .slaves
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        Ok((slave, self.slaves.is_empty()))
    }

    /// Admin up/down: activates or withdraws the slave's addresses (R-ADDR-6); going up
    /// recomputes NOARP from the mode (R-MODE-4).
    pub fn set_slave_up(&mut self, id: SlaveId, up: bool) -> Result<(), PortError> {
        let i = self.existing(id)?;
        let mode = self.mode;
        let s = &mut self.slaves[i];
        s.up = up;
        if up {
            s.noarp = mode.is_noarp();
        }
        self.table.set_active(id, up);
        Ok(())
    }

    /// Allows (or not) a guarded slave to send router advertisements and redirects
    /// (`router on|off`).
    pub fn set_router(&mut self, id: SlaveId, on: bool) -> Result<(), PortError> {
        let i = self.existing(id)?;
        self.slaves[i].router = on;
        Ok(())
    }

    /// Makes a slave the port's host slave, or an ordinary one again (`hostreach`; see
    /// [`Slave::is_host`]). One port has at most one: `PortError::SlaveExists` names the other.
    pub fn set_host(&mut self, id: SlaveId, on: bool) -> Result<(), PortError> {
        let i = self.existing(id)?;
        if let Some(other) = self.host_slave().filter(|&h| on && h != id) {
            let name = self
                .slave(other)
                .map_or_else(String::new, |s| s.name.to_string());
            return Err(PortError::SlaveExists(name));
        }
        self.slaves[i].host = on;
        Ok(())
    }

    /// Turns a slave's source-MAC guard on or off ([`Slave::mac_guard`]; ipvtap slaves).
    pub fn set_mac_guard(&mut self, id: SlaveId, on: bool) -> Result<(), PortError> {
        let i = self.existing(id)?;
        self.slaves[i].mac_guard = on;
        Ok(())
    }

    /// Turns a slave's source-address guard on or off (`spoofchk`).
    pub fn set_source_guard(&mut self, id: SlaveId, on: bool) -> Result<(), PortError> {
        let i = self.existing(id)?;
        self.slaves[i].source_guard = on;
        Ok(())
    }

    /// Sets one slave's MTU within 68…65535, regardless of the master's (R-MTU-2).
    pub fn set_slave_mtu(&mut self, id: SlaveId, mtu: u32) -> Result<(), PortError> {
        let mtu = check_mtu(mtu)?;
        let i = self.existing(id)?;
        self.slaves[i].mtu = mtu;
        Ok(())
    }

    /// The master's MTU changed: every slave's MTU is overwritten (R-MTU-3).
    pub fn set_master_mtu(&mut self, mtu: u32) {
        self.master.mtu = mtu;
        for s in &mut self.slaves {
            s.mtu = mtu;
        }
    }

    /// The master's MAC changed: slaves carry it from now on (R-MAC-3); their link-local
    /// addresses change with it.
    pub fn set_master_mac(&mut self, mac: MacAddr) {
        self.master.mac = mac;
    }

    /// Records an address configured on a slave. A second slave claiming it is refused with an
    /// error naming the owner (R-ADDR-3); the same slave again is `Claim::AlreadyOwned`.
    pub fn add_address(&mut self, id: SlaveId, addr: IpAddr) -> AddressResult {
        let i = self.existing(id)?;
        if addr.is_unspecified()
            || addr.is_multicast()
            || addr == IpAddr::from([255, 255, 255, 255])
        {
            return Err(PortError::AddressNotUnicast(addr));
        }
        let active = self.slaves[i].up;
        self.table.claim(addr, id, active).map_err(|owned| {
            let owner = self
                .slave(owned.owner)
                .map_or_else(|| owned.owner.to_string(), |s| s.name.to_string());
            PortError::AddressInUse { addr, owner }
        })
    }

    /// Forgets an address of a slave (R-ADDR-7).
    pub fn remove_address(&mut self, id: SlaveId, addr: IpAddr) -> Result<(), PortError> {
        let i = self.existing(id)?;
        if self.table.release(addr, id) {
            Ok(())
        } else {
            Err(PortError::AddressNotAssigned {
                addr,
                slave: self.slaves[i].name.to_string(),
            })
        }
    }

    /// A slave's addresses, in the order they were recorded.
    pub fn addresses(&self, id: SlaveId) -> &[IpAddr] {
        self.table.addresses_of(id)
    }
}

#[cfg(test)]
mod tests;
