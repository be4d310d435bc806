//! Slave lifecycle in the daemon: create, delete, change, show; following each slave into
//! whatever namespace it is moved to; learning its addresses; restoring after a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use ipvlan_core::slave_id::link_local;
use ipvlan_core::{
    Claim, IfName, LinkTypeArgs, MacAddr, Master, MissingMode, NewSlave, Port, PortError, SlaveId,
};
use ipvlan_linux::host::HostStack;
use ipvlan_linux::netns::all_namespaces;
use ipvlan_linux::rtnl::{Link, LinkChange, Rtnl, LINK_TYPE_ETHER};
use ipvlan_linux::steal::Steal;
use ipvlan_linux::{NetNs, PacketSocket, SlaveDevice, Tap};
use tracing::{info, warn};

use super::dataplane::{worker_count, DataPlane};
use super::state::{self, Loaded, PortState, SlaveState, State};
use super::{parse_mode_flag, system, Daemon, Failure, Outcome, PortRt, SlaveCtl};
use crate::proto::{Conflict, ErrorKind, LinkView, Response, Stats};

/// (master ifindex, slave id): how the daemon names a slave internally.
pub type SlaveKey = (u32, SlaveId);

/// The `ifalias` naming a slave's TAP: unique per daemon instance, master and slave id.
fn alias_for(instance: &str, master_index: u32, id: SlaveId) -> String {
    format!("ipvlan-rs:{instance}:{master_index}:{}", id.get())
}

/// Runs `f` with a request socket inside the namespace the device lives in now.
fn in_dev_ns<T: Send, E: Into<io::Error>>(
    tap: &Tap,
    f: impl FnOnce(&mut Rtnl) -> Result<T, E> + Send,
) -> io::Result<T> {
    let ns = tap.netns()?;
    ns.run(|| {
        let mut r = Rtnl::open()?;
        f(&mut r).map_err(Into::into)
    })?
}

fn ok(notes: Vec<String>) -> Outcome<Response> {
    Ok(Response::Ok {
        notes,
        links: Vec::new(),
    })
}

impl Daemon {
    // ------------------------------------------------------------------ requests

    pub(super) fn link_add(
        &mut self,
        master: &str,
        name: &str,
        mode: Option<&str>,
        flag: Option<&str>,
        mtu: Option<u32>,
        spoofchk: Option<bool>,
    ) -> Outcome<Response> {
        let (mode, flag) = parse_mode_flag(mode, flag)?;
        let name = IfName::new(name)?;
        if self.find_by_name(name.as_str()).is_some() {
            return Err(Failure::new(
                ErrorKind::Conflict,
                format!("slave {name} already exists"),
            ));
        }
        let master_link = self
            .rtnl
            .link_by_name(master)
            .map_err(|e| system("looking up the master", e))?
            .ok_or_else(|| {
                Failure::new(
                    ErrorKind::NotFound,
                    format!("Cannot find device \"{master}\""),
                )
            })?;
        if self
            .rtnl
            .link_by_name(name.as_str())
            .map_err(|e| system("looking up the name", e))?
            .is_some()
        {
            return Err(Failure::new(
                ErrorKind::Conflict,
                format!("a device named {name} already exists in the daemon's namespace"),
            ));
        }
        // R-CRT-2: a slave given as the link means its master.
        let master_link = match self.find_slave_at(None, master_link.index) {
            Some((mi, _)) => self
                .rtnl
                .link_by_index(mi)
                .map_err(|e| system("looking up the master", e))?
                .ok_or_else(|| Failure::new(ErrorKind::NotFound, "the slave's master is gone"))?,
            None => master_link,
        };
        let new_port = !self.ports.contains_key(&master_link.index);
        if new_port {
            self.check_master(&master_link)?;
            self.create_port(&master_link)?;
        }
        let mi = master_link.index;
        let args = LinkTypeArgs { mode, flag };
        let result = self.add_slave_to(mi, &master_link, name, args, mtu, spoofchk);
        if result.is_err() && new_port {
            self.teardown_port(mi);
        }
        let notes = result?;
        self.sync_steal(mi);
        self.save();
        ok(notes)
    }

    fn check_master(&self, link: &Link) -> Outcome<()> {
        if link.loopback || link.link_type != LINK_TYPE_ETHER {
            return Err(Failure::new(
                ErrorKind::Invalid,
                format!(
                    "{} cannot be an ipvlan master: it is a loopback or non-Ethernet device (R-CRT-3)",
                    link.name
                ),
            ));
        }
        if let Some(c) = link.controller {
            return Err(Failure::new(
                ErrorKind::Conflict,
                format!(
                    "{} is busy: it is a port of another device (ifindex {c}), e.g. a bridge or bond (R-CRT-4)",
                    link.name
                ),
            ));
        }
        Ok(())
    }

    fn create_port(&mut self, link: &Link) -> Outcome<()> {
        let mac = link.mac.ok_or_else(|| {
            Failure::new(
                ErrorKind::Invalid,
                format!("{} has no MAC address", link.name),
            )
        })?;
        let packet = PacketSocket::open_fanout(link.index, worker_count())
            .map_err(|e| system("opening the master's packet sockets", e))?;
        let host = HostStack::open(&link.name)
            .map_err(|e| system("opening raw sockets to the host stack", e))?;
        let steal = Steal::install(&link.name, link.index)
            .map_err(|e| system("installing the steal table", e))?;
        let port = Port::new(Master {
            name: IfName::new(&link.name)?,
            mac,
            mtu: link.mtu,
        });
        let dp = DataPlane::start(port, packet, host)
            .map_err(|e| system("starting the data plane", e))?;
        info!(master = %link.name, workers = dp.workers(), "port created");
        self.ports.insert(
            link.index,
            PortRt {
                master: link.name.clone(),
                dp,
                steal,
                stolen: BTreeSet::new(),
                l3s: None,
                l3s_set: BTreeSet::new(),
                slaves: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn add_slave_to(
        &mut self,
        mi: u32,
        master: &Link,
        name: IfName,
        args: LinkTypeArgs,
        mtu: Option<u32>,
        spoofchk: Option<bool>,
    ) -> Outcome<Vec<String>> {
        let carrier = master.up && master.carrier.unwrap_or(true);
        let p = self
            .ports
            .get_mut(&mi)
            .ok_or_else(|| Failure::new(ErrorKind::NotFound, "port vanished"))?;
        let (added, others, mac, slave_mtu, port_mode, port_flag) = {
            let mut sh = p.dp.port();
            let others: Vec<String> = sh.slaves().map(|s| s.name().to_string()).collect();
            let req = NewSlave {
                name: name.clone(),
                args,
                mtu,
                missing_mode: MissingMode::KeepPort,
            };
            let added = sh.add_slave(req)?;
            // Guarded from its first frame: set before the device exists.
            sh.set_source_guard(added.id, spoofchk.unwrap_or(false))?;
            let s = sh.slave(added.id).map(|s| s.mtu()).unwrap_or(1500);
            (added, others, sh.master().mac, s, sh.mode(), sh.flag())
        };
        let id = added.id;
        let alias = alias_for(&self.instance, mi, id);
        let made = (|| -> io::Result<(Tap, u32)> {
            let tap = self.queues.create(name.as_str())?;
            tap.enable_offloads()?;
            tap.set_mac(mac)?;
            tap.set_carrier(carrier)?;
            let mut r = Rtnl::open()?;
            let link = r
                .link_by_name(name.as_str())?
                .ok_or_else(|| io::Error::other("the new TAP is not visible"))?;
            r.set_link(
                link.index,
                &LinkChange {
                    mtu: Some(slave_mtu),
                    alias: Some(alias.clone()),
                    addrgen_none: true,
                    ..LinkChange::default()
                },
            )?;
            Ok((tap, link.index))
        })();
        let (tap, ifindex) = match made {
            Ok(x) => x,
            Err(e) => {
                let _ = p.dp.port().remove_slave(id);
                let kind = if e.kind() == io::ErrorKind::AlreadyExists {
                    ErrorKind::Conflict
                } else {
                    ErrorKind::System
                };
                let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                    " (each slave holds a descriptor per data-plane worker: raise the daemon's \
                     open-file limit, e.g. LimitNOFILE= in its unit)"
                } else {
                    ""
                };
                return Err(Failure::new(
                    kind,
                    format!("creating TAP device {name}: {e}{hint}"),
                ));
            }
        };
        let tap = Arc::new(tap);
        if let Err(e) = p.dp.add_slave(id, tap.clone()) {
            let _ = p.dp.port().remove_slave(id);
            if let Ok(t) = Arc::try_unwrap(tap) {
                let _ = t.destroy();
            }
            return Err(system("serving the new slave", e));
        }
        p.slaves.insert(
            id,
            SlaveCtl {
                name: name.clone(),
                alias,
                tap,
                nsid: None,
                ifindex,
                carrier,
                pinned: false,
                conflicts: BTreeMap::new(),
                conflict_count: 0,
            },
        );
        info!(slave = %name, master = %p.master, mode = %port_mode, flag = %port_flag, "slave created");
        let mut notes = Vec::new();
        if args.mode.is_none() && !others.is_empty() {
            notes.push(format!(
                "no mode given: {name} joins master {}'s port in its mode {port_mode} {port_flag} \
                 (the kernel would have reset every slave of {} to l3)",
                p.master, p.master
            ));
        }
        if added.change.changed() && !others.is_empty() {
            notes.push(format!(
                "master {} changed from {} {} to {port_mode} {port_flag}: every slave of it changed too: {}",
                p.master,
                added.change.old_mode,
                added.change.old_flag,
                others.join(", ")
            ));
            self.apply_noarp(mi);
        }
        Ok(notes)
    }

    pub(super) fn link_del(&mut self, name: &str) -> Outcome<Response> {
        let (mi, id) = self.find_by_name(name).ok_or_else(|| {
            Failure::new(
                ErrorKind::NotFound,
                format!("Cannot find device \"{name}\""),
            )
        })?;
        self.remove_slave((mi, id), true);
        self.save();
        ok(Vec::new())
    }

    pub(super) fn link_set(
        &mut self,
        name: &str,
        mode: Option<&str>,
        flag: Option<&str>,
        spoofchk: Option<bool>,
    ) -> Outcome<Response> {
        let (mode, flag) = parse_mode_flag(mode, flag)?;
        let (mi, id) = self.find_by_name(name).ok_or_else(|| {
            Failure::new(
                ErrorKind::NotFound,
                format!("Cannot find device \"{name}\""),
            )
        })?;
        let p = self
            .ports
            .get_mut(&mi)
            .ok_or_else(|| Failure::new(ErrorKind::NotFound, "port vanished"))?;
        let (change, names) = {
            let mut sh = p.dp.port();
            if let Some(on) = spoofchk {
                sh.set_source_guard(id, on)?;
            }
            let change = sh.change_link(LinkTypeArgs { mode, flag });
            let names: Vec<String> = sh.slaves().map(|s| s.name().to_string()).collect();
            (change, names)
        };
        let mut notes = Vec::new();
        if change.changed() {
            notes.push(format!(
                "master {} changed from {} {} to {} {}: every slave of it changed: {}",
                p.master,
                change.old_mode,
                change.old_flag,
                change.new_mode,
                change.new_flag,
                names.join(", ")
            ));
            info!(master = %p.master, mode = %change.new_mode, flag = %change.new_flag, "port changed");
        }
        self.apply_noarp(mi);
        self.sync_steal(mi);
        self.save();
        ok(notes)
    }

    pub(super) fn link_show(&mut self, name: Option<&str>) -> Outcome<Response> {
        let mut links = Vec::new();
        for p in self.ports.values() {
            let sh = p.dp.port();
            for s in sh.slaves() {
                let Some(ctl) = p.slaves.get(&s.id()) else {
                    continue;
                };
                if name.is_some_and(|n| n != ctl.name.as_str()) {
                    continue;
                }
                links.push(view(p, &sh, s, ctl));
            }
        }
        if let Some(n) = name {
            if links.is_empty() {
                return Err(Failure::new(
                    ErrorKind::NotFound,
                    format!("Cannot find device \"{n}\""),
                ));
            }
        }
        Ok(Response::Ok {
            notes: Vec::new(),
            links,
        })
    }

    // ------------------------------------------------------------------ internals

    pub(super) fn find_by_name(&self, name: &str) -> Option<SlaveKey> {
        self.ports.iter().find_map(|(mi, p)| {
            p.slaves
                .iter()
                .find(|(_, c)| c.name.as_str() == name)
                .map(|(id, _)| (*mi, *id))
        })
    }

    /// The slave whose device has `ifindex` in the namespace with id `nsid` (`None`: ours).
    pub(super) fn find_slave_at(&self, nsid: Option<i32>, ifindex: u32) -> Option<SlaveKey> {
        self.ports.iter().find_map(|(mi, p)| {
            p.slaves
                .iter()
                .find(|(_, c)| c.nsid == nsid && c.ifindex == ifindex)
                .map(|(id, _)| (*mi, *id))
        })
    }

    /// Removes a slave from its port (and the port if it was the last); `destroy` also deletes
    /// its device.
    pub(super) fn remove_slave(&mut self, (mi, id): SlaveKey, destroy: bool) {
        let Some(p) = self.ports.get_mut(&mi) else {
            return;
        };
        p.dp.remove_slave(id);
        let ctl = p.slaves.remove(&id);
        let empty = {
            let mut sh = p.dp.port();
            sh.remove_slave(id)
                .map(|(_, empty)| empty)
                .unwrap_or(sh.is_empty())
        };
        if let Some(ctl) = ctl {
            if destroy {
                match Arc::try_unwrap(ctl.tap) {
                    Ok(tap) => {
                        if let Err(e) = tap.destroy() {
                            warn!(slave = %ctl.name, "deleting the device: {e}");
                        }
                    }
                    Err(_) => warn!(slave = %ctl.name, "device still in use; not deleted"),
                }
            }
            info!(slave = %ctl.name, "slave removed");
        }
        if empty {
            self.teardown_port(mi);
        } else {
            self.sync_steal(mi);
        }
    }

    /// Stops a port's data plane and removes its steal table (R-OBJ-1).
    pub(super) fn teardown_port(&mut self, mi: u32) {
        if let Some(mut p) = self.ports.remove(&mi) {
            if let Some((hooks, _)) = p.l3s.take() {
                let _ = p.dp.set_sink(None);
                if let Err(e) = hooks.uninstall() {
                    warn!(master = %p.master, "removing the l3s hooks: {e}");
                }
            }
            p.dp.stop();
            if let Err(e) = p.steal.uninstall() {
                warn!(master = %p.master, "removing the steal table: {e}");
            }
            info!(master = %p.master, "port removed");
        }
    }

    /// Makes the nftables sets equal to the port's active addresses: the steal table in modes
    /// that claim frames (l2, l3), the l3s hooks in l3s (where the host must see everything
    /// first, R-RX-L3S-1), installing or removing the l3s plumbing as the mode changes.
    pub(super) fn sync_steal(&mut self, mi: u32) {
        let Some(p) = self.ports.get_mut(&mi) else {
            return;
        };
        let (l3s, active): (bool, BTreeSet<IpAddr>) = {
            let sh = p.dp.port();
            let active = sh
                .slaves()
                .filter(|s| s.is_up())
                .flat_map(|s| sh.addresses(s.id()).to_vec())
                .collect();
            (sh.mode() == ipvlan_core::Mode::L3s, active)
        };
        sync_l3s(p, mi, l3s, &active);
        let want: BTreeSet<IpAddr> = if l3s { BTreeSet::new() } else { active };
        for a in p.stolen.difference(&want).copied().collect::<Vec<_>>() {
            match p.steal.remove(a) {
                Ok(()) => {
                    p.stolen.remove(&a);
                }
                Err(e) => warn!(master = %p.master, "steal table: removing {a}: {e}"),
            }
        }
        for a in want.difference(&p.stolen).copied().collect::<Vec<_>>() {
            match p.steal.add(a) {
                Ok(()) => {
                    p.stolen.insert(a);
                }
                Err(e) => warn!(master = %p.master, "steal table: adding {a}: {e}"),
            }
        }
    }

    /// Sets every slave's NOARP flag from the port mode (R-MODE-2).
    fn apply_noarp(&mut self, mi: u32) {
        let Some(p) = self.ports.get(&mi) else { return };
        let noarp = p.dp.port().mode().is_noarp();
        for ctl in p.slaves.values() {
            let index = ctl.ifindex;
            let r = in_dev_ns(&ctl.tap, move |r| {
                r.set_link(
                    index,
                    &LinkChange {
                        noarp: Some(noarp),
                        ..LinkChange::default()
                    },
                )
            });
            if let Err(e) = r {
                warn!(slave = %ctl.name, "setting NOARP: {e}");
            }
        }
    }

    // ------------------------------------------------------------------ events

    pub(super) fn master_changed(&mut self, link: &Link) {
        let Some(p) = self.ports.get_mut(&link.index) else {
            return;
        };
        let carrier = link.up && link.carrier.unwrap_or(true);
        let (mac_changed, mtu_changed) = {
            let mut sh = p.dp.port();
            let mac_changed = link.mac.filter(|m| *m != sh.master().mac);
            if let Some(mac) = mac_changed {
                sh.set_master_mac(mac); // R-MAC-3
            }
            let mtu_changed = link.mtu != sh.master().mtu && link.mtu > 0;
            if mtu_changed {
                sh.set_master_mtu(link.mtu); // R-MTU-3
            }
            (mac_changed, mtu_changed)
        };
        p.master = link.name.clone();
        for ctl in p.slaves.values_mut() {
            if let Some(mac) = mac_changed {
                if let Err(e) = ctl.tap.set_mac(mac) {
                    warn!(slave = %ctl.name, "following the master's MAC: {e}");
                }
            }
            if mtu_changed {
                let (index, mtu) = (ctl.ifindex, link.mtu);
                if let Err(e) = in_dev_ns(&ctl.tap, move |r| {
                    r.set_link(
                        index,
                        &LinkChange {
                            mtu: Some(mtu),
                            ..LinkChange::default()
                        },
                    )
                }) {
                    warn!(slave = %ctl.name, "following the master's MTU: {e}");
                }
            }
            if ctl.carrier != carrier {
                // R-LINK-1: carrier follows the master.
                if let Err(e) = ctl.tap.set_carrier(carrier) {
                    warn!(slave = %ctl.name, "setting carrier: {e}");
                }
                ctl.carrier = carrier;
            }
        }
    }

    /// The master left the daemon's namespace: its slaves go with it (R-LIFE-1).
    pub(super) fn master_gone(&mut self, mi: u32) {
        let Some(p) = self.ports.get(&mi) else { return };
        warn!(master = %p.master, "master device is gone: deleting its slaves");
        let ids: Vec<SlaveId> = p.slaves.keys().copied().collect();
        for id in ids {
            self.remove_slave((mi, id), true);
        }
        self.teardown_port(mi);
        self.save();
    }

    pub(super) fn slave_link_changed(&mut self, (mi, id): SlaveKey, link: &Link) {
        let Some(p) = self.ports.get_mut(&mi) else {
            return;
        };
        let Some(ctl) = p.slaves.get(&id) else { return };
        let (was_up, mode, mac, ll) = {
            let mut sh = p.dp.port();
            let was_up = sh.slave(id).is_some_and(|s| s.is_up());
            if was_up != link.up {
                let _ = sh.set_slave_up(id, link.up);
            }
            if sh.slave(id).is_some_and(|s| s.mtu() != link.mtu) && link.mtu > 0 {
                let _ = sh.set_slave_mtu(id, link.mtu);
            }
            (was_up, sh.mode(), sh.master().mac, sh.link_local(id))
        };
        let index = ctl.ifindex;
        let fix_mac = link.mac.filter(|m| *m != mac).is_some();
        let fix_noarp = link.up && link.noarp != mode.is_noarp();
        if fix_mac {
            // R-MAC-2: a slave's MAC is the master's; undo the change (events may also be stale
            // reports from before we set it: re-setting is harmless).
            tracing::debug!(slave = %ctl.name, "slave MAC differs from the master's: restoring it");
            let _ = ctl.tap.set_mac(mac);
        }
        if fix_noarp {
            let _ = in_dev_ns(&ctl.tap, move |r| {
                r.set_link(
                    index,
                    &LinkChange {
                        noarp: Some(mode.is_noarp()),
                        ..LinkChange::default()
                    },
                )
            });
        }
        if link.up && !was_up {
            ensure_link_local(&ctl.tap, index, ll, mac);
        }
        self.sync_steal(mi);
    }

    /// The slave's device left the namespace we knew: find where it went, or notice it is gone.
    pub(super) fn relocate(&mut self, key: SlaveKey) {
        let (mi, id) = key;
        let Some(ctl) = self.ports.get(&mi).and_then(|p| p.slaves.get(&id)) else {
            return;
        };
        let name = ctl.name.clone();
        match ctl.tap.netns() {
            Ok(ns) => {
                if let Err(e) = self.resync(key, &ns) {
                    warn!(slave = %name, "following the slave into its new namespace: {e}");
                }
            }
            Err(_) => {
                // R-LIFE-5: its namespace was deleted and the device with it.
                warn!(slave = %name, "slave device is gone (its namespace was deleted): removed from its port");
                self.remove_slave(key, false);
                self.save();
            }
        }
    }

    /// Re-reads everything about a slave from the namespace `ns` it is in: index, state, MTU,
    /// addresses (a move flushed the old ones, R-LIFE-4); re-applies our link settings.
    pub(super) fn resync(&mut self, (mi, id): SlaveKey, ns: &NetNs) -> io::Result<()> {
        let nsid = if ns.id() == self.ns.id() {
            None
        } else {
            Some(self.rtnl.nsid_of(ns)?)
        };
        let Some(p) = self.ports.get_mut(&mi) else {
            return Ok(());
        };
        let Some(ctl) = p.slaves.get_mut(&id) else {
            return Ok(());
        };
        let name = ctl.tap.current_name()?;
        let (mac, ll, mtu) = {
            let sh = p.dp.port();
            (
                sh.master().mac,
                sh.link_local(id),
                sh.slave(id).map(|s| s.mtu()),
            )
        };
        let alias = ctl.alias.clone();
        let (link, addrs) = ns.run(move || -> io::Result<_> {
            let mut r = Rtnl::open()?;
            let link = r
                .link_by_name(&name)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "device not found"))?;
            // A move resets per-device IPv6 settings: no EUI-64 link-local from the shared MAC.
            r.set_link(
                link.index,
                &LinkChange {
                    addrgen_none: true,
                    alias: Some(alias),
                    mac: link.mac.filter(|m| *m != mac).map(|_| mac),
                    ..LinkChange::default()
                },
            )?;
            let addrs = r.addresses(Some(link.index))?;
            Ok((link, addrs))
        })??;
        ctl.nsid = nsid;
        ctl.ifindex = link.index;
        if ns.id() == self.ns.id() {
            ctl.pinned = false;
        }
        ctl.conflicts.clear();
        let tap = ctl.tap.clone();
        let slave_name = ctl.name.clone();
        {
            let mut sh = p.dp.port();
            for a in sh.addresses(id).to_vec() {
                let _ = sh.remove_address(id, a);
            }
            let _ = sh.set_slave_up(id, link.up);
            if mtu != Some(link.mtu) {
                let _ = sh.set_slave_mtu(id, link.mtu);
            }
        }
        let where_ = ns
            .name()
            .unwrap_or_else(|| format!("nsid {}", nsid.unwrap_or(-1)));
        info!(slave = %slave_name, netns = %where_, ifindex = link.index, "slave is in namespace");
        for a in addrs {
            self.learn_address((mi, id), a.addr);
        }
        if link.up {
            ensure_link_local(&tap, link.index, ll, mac);
        }
        self.sync_steal(mi);
        Ok(())
    }

    pub(super) fn resync_all(&mut self) {
        let keys: Vec<SlaveKey> = self
            .ports
            .iter()
            .flat_map(|(mi, p)| p.slaves.keys().map(move |id| (*mi, *id)))
            .collect();
        for key in keys {
            self.relocate(key);
        }
    }

    /// An address appeared on a slave (R-ADDR-2).
    pub(super) fn learn_address(&mut self, (mi, id): SlaveKey, addr: IpAddr) {
        let Some(p) = self.ports.get_mut(&mi) else {
            return;
        };
        let Some(ctl) = p.slaves.get_mut(&id) else {
            return;
        };
        let result = {
            let mut sh = p.dp.port();
            let mac = sh.master().mac;
            if addr == IpAddr::V6(link_local(mac, 0)) {
                // The kernel's EUI-64 link-local of the shared MAC: every slave and the master
                // would share it. Replace it with the per-slave one (R-DEVID-2).
                drop(sh);
                let (tap, index) = (ctl.tap.clone(), ctl.ifindex);
                let _ = in_dev_ns(&tap, move |r| r.del_address(index, addr, 64));
                return;
            }
            sh.add_address(id, addr)
        };
        match result {
            Ok(Claim::New) => info!(slave = %ctl.name, %addr, "address learned"),
            Ok(Claim::AlreadyOwned) => {}
            Err(PortError::AddressInUse { owner, .. }) => {
                // Userspace cannot veto `ip addr add`: the first owner keeps it (R-ADDR-3).
                warn!(slave = %ctl.name, %addr, %owner, "address conflict: already owned by another slave of this master; not served");
                ctl.conflicts.insert(addr, owner);
                ctl.conflict_count += 1;
            }
            Err(e) => info!(slave = %ctl.name, %addr, "address not used for steering: {e}"),
        }
        self.sync_steal(mi);
    }

    /// An address went away from a slave.
    pub(super) fn forget_address(&mut self, (mi, id): SlaveKey, addr: IpAddr) {
        let Some(p) = self.ports.get_mut(&mi) else {
            return;
        };
        let Some(ctl) = p.slaves.get_mut(&id) else {
            return;
        };
        if ctl.conflicts.remove(&addr).is_none() {
            let removed = p.dp.port().remove_address(id, addr).is_ok();
            if removed {
                info!(slave = %ctl.name, %addr, "address forgotten");
            }
        }
        self.sync_steal(mi);
    }

    /// Once a second: notice slaves whose device disappeared without an event we could see,
    /// and slaves whose namespace only we keep alive (its owner deleted it: R-LIFE-5).
    pub(super) fn sweep(&mut self) {
        let pinned: Vec<SlaveKey> = self
            .ports
            .iter()
            .flat_map(|(mi, p)| {
                p.slaves
                    .iter()
                    .filter(|(_, c)| c.pinned)
                    .map(move |(id, _)| (*mi, *id))
            })
            .collect();
        if !pinned.is_empty() {
            let alive = ipvlan_linux::netns::referenced_elsewhere();
            for key in pinned {
                let Some(ctl) = self.ports.get(&key.0).and_then(|p| p.slaves.get(&key.1)) else {
                    continue;
                };
                let orphan = ctl
                    .tap
                    .netns()
                    .is_ok_and(|ns| ns.id() != self.ns.id() && !alive.contains(&ns.id().ino));
                if orphan {
                    warn!(slave = %ctl.name, "slave's namespace was deleted (only the daemon still held it): slave removed");
                    self.remove_slave(key, true);
                    self.save();
                }
            }
        }
        let gone: Vec<SlaveKey> = self
            .ports
            .iter()
            .flat_map(|(mi, p)| {
                p.slaves
                    .iter()
                    .filter(|(_, c)| c.tap.netns().is_err())
                    .map(move |(id, _)| (*mi, *id))
            })
            .collect();
        for key in gone {
            self.relocate(key);
        }
    }

    // ------------------------------------------------------------------ persistence

    pub(super) fn save(&self) {
        let mut st = State {
            instance: self.instance.clone(),
            ..State::default()
        };
        for (mi, p) in &self.ports {
            let sh = p.dp.port();
            st.ports.push(PortState {
                master: p.master.clone(),
                master_ifindex: *mi,
                mode: sh.mode().to_string(),
                flag: sh.flag().to_string(),
                slaves: sh
                    .slaves()
                    .filter_map(|s| {
                        p.slaves.get(&s.id()).map(|c| SlaveState {
                            name: c.name.to_string(),
                            id: s.id().get(),
                            mtu: s.mtu(),
                            alias: c.alias.clone(),
                            spoofchk: s.source_guard(),
                        })
                    })
                    .collect(),
            });
        }
        if let Err(e) = state::save(&self.cfg.state_dir, &st) {
            warn!("saving state: {e:#}");
        }
    }

    /// Serves again every slave of the saved state that still exists, wherever it now lives.
    pub(super) fn restore(&mut self) {
        let st = match state::load(&self.cfg.state_dir) {
            Ok(Loaded::Fresh) => return,
            Ok(Loaded::State(s)) => s,
            Ok(Loaded::Corrupt { kept_as, why }) => {
                warn!(
                    "state file is corrupt ({why}); kept aside as {}; starting empty",
                    kept_as.display()
                );
                return;
            }
            Err(e) => {
                warn!("cannot read state: {e:#}; starting empty");
                return;
            }
        };
        if !st.instance.is_empty() {
            self.instance = st.instance.clone();
        }
        let namespaces = all_namespaces();
        for ps in st.ports {
            if let Err(e) = self.restore_port(&ps, &namespaces) {
                warn!(master = %ps.master, "cannot restore port: {}", e.message);
            }
        }
        self.save();
    }

    fn restore_port(&mut self, ps: &PortState, namespaces: &[NetNs]) -> Outcome<()> {
        let link = self
            .rtnl
            .link_by_index(ps.master_ifindex)
            .ok()
            .flatten()
            .filter(|l| l.name == ps.master)
            .or_else(|| self.rtnl.link_by_name(&ps.master).ok().flatten());
        let Some(link) = link else {
            warn!(master = %ps.master, "master is gone: its slaves are deleted (R-LIFE-1)");
            for s in &ps.slaves {
                if let Some((ns, name)) = locate(namespaces, &s.alias) {
                    let _ = ns.run(move || Tap::attach(&name, 1).and_then(|t| t.destroy()));
                }
            }
            return Ok(());
        };
        let (mode, flag) = parse_mode_flag(Some(&ps.mode), Some(&ps.flag))?;
        self.create_port(&link)?;
        let mi = link.index;
        let carrier = link.up && link.carrier.unwrap_or(true);
        if let Some(p) = self.ports.get(&mi) {
            p.dp.port()
                .set_mode_flag(mode.unwrap_or_default(), flag.unwrap_or_default());
        }
        for s in &ps.slaves {
            let Some((ns, name)) = locate(namespaces, &s.alias) else {
                warn!(slave = %s.name, "slave no longer exists (its namespace was deleted?): dropped");
                continue;
            };
            let attach_name = name.clone();
            let queues = &self.queues;
            let tap = match ns
                .run(move || queues.attach(&attach_name))
                .map_err(io::Error::from)
            {
                Ok(Ok(t)) => Arc::new(t),
                Ok(Err(e)) | Err(e) => {
                    warn!(slave = %s.name, "cannot re-attach: {e}");
                    continue;
                }
            };
            let id = SlaveId::from_raw(s.id);
            let Some(p) = self.ports.get_mut(&mi) else {
                break;
            };
            let restored = {
                let mut sh = p.dp.port();
                IfName::new(&s.name)
                    .map_err(PortError::from)
                    .and_then(|n| sh.restore_slave(id, n, s.mtu))
                    .and_then(|()| sh.set_source_guard(id, s.spoofchk))
            };
            if let Err(e) = restored {
                warn!(slave = %s.name, "cannot restore: {e}");
                continue;
            }
            let _ = tap.set_carrier(carrier);
            let _ = tap.enable_offloads();
            let _ = tap.set_mac(link.mac.unwrap_or(MacAddr::ZERO));
            if p.dp.add_slave(id, tap.clone()).is_err() {
                continue;
            }
            p.slaves.insert(
                id,
                SlaveCtl {
                    name: IfName::new(&s.name)?,
                    alias: s.alias.clone(),
                    tap,
                    nsid: None,
                    ifindex: 0,
                    carrier,
                    pinned: ns.id() != self.ns.id(),
                    conflicts: BTreeMap::new(),
                    conflict_count: 0,
                },
            );
            if let Err(e) = self.resync((mi, id), &ns) {
                warn!(slave = %s.name, "resynchronising: {e}");
            }
            info!(slave = %s.name, "slave restored");
        }
        let empty = self.ports.get(&mi).is_some_and(|p| p.slaves.is_empty());
        if empty {
            self.teardown_port(mi);
        }
        Ok(())
    }
}

/// Installs, updates or removes a port's l3s plumbing (see `ipvlan_linux::l3s`).
fn sync_l3s(p: &mut PortRt, mi: u32, l3s: bool, active: &BTreeSet<IpAddr>) {
    if !l3s {
        if let Some((hooks, sink)) = p.l3s.take() {
            let _ = p.dp.set_sink(None);
            if let Err(e) = hooks.uninstall() {
                warn!(master = %p.master, "removing the l3s hooks: {e}");
            }
            info!(master = %p.master, %sink, "l3s hooks removed");
            p.l3s_set.clear();
        }
        return;
    }
    if p.l3s.is_none() {
        let sink = format!("ipvls{mi}");
        let made = (|| -> io::Result<ipvlan_linux::l3s::L3sHooks> {
            let tap = Arc::new(Tap::create_transient(&sink)?);
            let mut r = Rtnl::open()?;
            let link = r
                .link_by_name(&sink)?
                .ok_or_else(|| io::Error::other("sink TAP not visible"))?;
            r.set_link(
                link.index,
                &LinkChange {
                    up: Some(true),
                    noarp: Some(true),
                    addrgen_none: true,
                    ..LinkChange::default()
                },
            )?;
            p.dp.set_sink(Some(tap))?;
            ipvlan_linux::l3s::L3sHooks::install(&p.master, mi, &sink)
        })();
        match made {
            Ok(hooks) => {
                info!(master = %p.master, %sink, "l3s hooks installed: the master namespace's netfilter sees slave traffic");
                p.l3s = Some((hooks, sink));
                p.l3s_set.clear();
            }
            Err(e) => {
                let _ = p.dp.set_sink(None);
                warn!(master = %p.master, "cannot install the l3s hooks: {e}");
                return;
            }
        }
    }
    let Some((hooks, _)) = &p.l3s else { return };
    for a in p.l3s_set.difference(active).copied().collect::<Vec<_>>() {
        if hooks.remove(a).is_ok() {
            p.l3s_set.remove(&a);
        }
    }
    for a in active.difference(&p.l3s_set).copied().collect::<Vec<_>>() {
        match hooks.add(a) {
            Ok(()) => {
                p.l3s_set.insert(a);
            }
            Err(e) => warn!(master = %p.master, "l3s set: adding {a}: {e}"),
        }
    }
}

/// Finds the device whose alias is `alias` in any namespace: (namespace, current name).
fn locate(namespaces: &[NetNs], alias: &str) -> Option<(NetNs, String)> {
    namespaces.iter().find_map(|ns| {
        let links = ns
            .run(|| Rtnl::open().and_then(|mut r| r.links()))
            .ok()?
            .ok()?;
        let l = links
            .into_iter()
            .find(|l| l.alias.as_deref() == Some(alias))?;
        Some((ns.try_clone().ok()?, l.name))
    })
}

/// Gives an up slave its per-slave link-local address (R-DEVID-2) and removes the EUI-64 one
/// of the shared MAC if the kernel made it before we could turn address generation off.
fn ensure_link_local(tap: &Tap, index: u32, ll: std::net::Ipv6Addr, mac: MacAddr) {
    let eui = link_local(mac, 0);
    let r = in_dev_ns(tap, move |r| {
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
        warn!("adding the slave's link-local address: {e}");
    }
}

fn view(p: &PortRt, port: &Port, s: &ipvlan_core::Slave, ctl: &SlaveCtl) -> LinkView {
    let c = s.counters;
    let mut drops = Vec::new();
    for (r, n) in c.rx_dropped.nonzero() {
        drops.push(crate::proto::Drop {
            direction: "rx".into(),
            reason: r.name().into(),
            count: n,
        });
    }
    for (r, n) in c.tx_dropped.nonzero() {
        drops.push(crate::proto::Drop {
            direction: "tx".into(),
            reason: r.name().into(),
            count: n,
        });
    }
    let netns = ctl.nsid.map(|id| {
        ctl.tap
            .netns()
            .ok()
            .and_then(|ns| ns.name())
            .unwrap_or_else(|| format!("nsid {id}"))
    });
    let mut addresses: Vec<String> = port
        .addresses(s.id())
        .iter()
        .map(ToString::to_string)
        .collect();
    addresses.sort();
    LinkView {
        name: ctl.name.to_string(),
        current_name: ctl
            .tap
            .current_name()
            .unwrap_or_else(|_| ctl.name.to_string()),
        master: p.master.clone(),
        mode: port.mode().to_string(),
        flag: port.flag().to_string(),
        id: s.id().get(),
        mtu: s.mtu(),
        mac: port.master().mac.to_string(),
        netns,
        ifindex: ctl.ifindex,
        up: s.is_up(),
        noarp: port.mode().is_noarp() && s.is_up(),
        carrier: ctl.carrier,
        spoofchk: s.source_guard(),
        queues: u32::try_from(ctl.tap.queues()).unwrap_or(u32::MAX),
        addresses,
        conflicts: ctl
            .conflicts
            .iter()
            .map(|(a, o)| Conflict {
                address: a.to_string(),
                owner: o.clone(),
            })
            .collect(),
        stats: Stats {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            rx_multicast: c.rx_multicast,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            tx_errors: c.tx_errors,
            rx_dropped: c.rx_dropped.total(),
            tx_dropped: c.tx_dropped.total(),
            drops,
            address_conflicts: ctl.conflict_count,
        },
    }
}
