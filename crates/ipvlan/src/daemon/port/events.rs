//! How a port follows the kernel: the master's MAC, MTU and carrier (R-MAC-3, R-MTU-3,
//! R-LINK-1); a slave's state, MAC and NOARP flag; a slave moved to another namespace
//! (R-LIFE-4); addresses configured on a slave (R-ADDR-2, R-ADDR-3).

use std::io;
use std::net::IpAddr;

use ipvlan_core::{Claim, PortError, SlaveId};
use ipvlan_linux::rtnl::{AddrGenMode, Link, LinkAddr, LinkChange, Rtnl};
use ipvlan_linux::{NetNs, NsId};
use tracing::{debug, info, warn};

use super::PortRuntime;
use crate::backend::SlaveBackend;
use crate::daemon::slave::{alias_names, device_alias, kernel_made_shared_identity, AddrConflict};

/// The smallest MTU IPv6 runs on (RFC 8200 §5).
const IPV6_MIN_MTU: u32 = 1280;

impl<B: SlaveBackend> PortRuntime<B> {
    /// The master changed: slaves follow its MAC, MTU and carrier; a rename is remembered.
    pub fn master_changed(&mut self, link: &Link) {
        let carrier = link.up && link.carrier.unwrap_or(true);
        let (mac_changed, mtu_changed) = {
            let mut port = self.dp.port();
            let mac_changed = link.mac.filter(|m| *m != port.master().mac);
            if let Some(mac) = mac_changed {
                port.set_master_mac(mac); // R-MAC-3
            }
            let mtu_changed = link.mtu != port.master().mtu && link.mtu > 0;
            if mtu_changed {
                port.set_master_mtu(link.mtu); // R-MTU-3
            }
            (mac_changed, mtu_changed)
        };
        if let Some(mac) = mac_changed {
            info!(master = %link.name, %mac, "master MAC changed: slaves follow");
        }
        if mtu_changed {
            info!(master = %link.name, mtu = link.mtu, "master MTU changed: slaves follow");
        }
        if self.master != link.name {
            info!(old = %self.master, new = %link.name, "master renamed");
            // The l3s rules match the master by name: install everything again under the new
            // one (at the next sync).
            self.master = link.name.clone();
            if let Err(e) = self.netfilter.teardown() {
                warn!(master = %self.master, "renamed master: removing the old netfilter state: {e}");
            }
            self.netfilter = ipvlan_linux::netfilter::Netfilter::new(&link.name, self.index);
            self.netfilter_dirty = true;
            self.owners_changed = true;
            // The slaves' aliases name their master.
            self.relabel();
        }
        for rt in self.slaves.values_mut() {
            if let Some(mac) = mac_changed {
                if let Err(e) = rt.set_mac(mac) {
                    warn!(slave = %rt.name, "following the master's MAC: {e}");
                }
            }
            if mtu_changed {
                let change = LinkChange {
                    mtu: Some(link.mtu),
                    ..LinkChange::default()
                };
                if let Err(e) = rt.set_link(change) {
                    warn!(slave = %rt.name, "following the master's MTU: {e}");
                }
            }
            if rt.carrier != carrier {
                // R-LINK-1: carrier follows the master.
                if let Err(e) = rt.set_carrier(carrier) {
                    warn!(slave = %rt.name, "setting carrier: {e}");
                }
            }
        }
    }

    /// A slave's device changed (up/down, MTU, MAC, flags) in its namespace.
    pub fn slave_link_changed(&mut self, id: SlaveId, link: &Link) {
        let Some(rt) = self.slaves.get(&id) else {
            return;
        };
        let (was_up, old_mtu, mode, mac, ll, master_mtu) = {
            let mut port = self.dp.port();
            let was_up = port.slave(id).is_some_and(|s| s.is_up());
            let old_mtu = port.slave(id).map_or(0, |s| s.mtu());
            if was_up != link.up {
                let _ = port.set_slave_up(id, link.up);
            }
            if old_mtu != link.mtu && link.mtu > 0 {
                let _ = port.set_slave_mtu(id, link.mtu);
            }
            (
                was_up,
                old_mtu,
                port.mode(),
                port.master().mac,
                port.link_local(id),
                port.master().mtu,
            )
        };
        if old_mtu != link.mtu && link.mtu > master_mtu {
            // `ip link set SLAVE mtu N`: accepted as the kernel does (R-MTU-2), but said.
            let why = super::mtu_above_master(link.mtu, &self.master, master_mtu, mode);
            warn!(slave = %rt.name, "{why}");
        }
        if link.mac.is_some_and(|m| m != mac) {
            // R-MAC-2: a slave's MAC is the master's; undo the change (events may also be stale
            // reports from before we set it: re-setting is harmless).
            debug!(slave = %rt.name, "slave MAC differs from the master's: restoring it");
            let _ = rt.set_mac(mac);
        }
        if !alias_names(link.alias.as_deref(), &rt.alias) {
            // The alias carries the slave's identity, by which a restarted daemon finds it
            // (`persist`): a user's `ip link set SLAVE alias …` would lose the slave at the next
            // start. Put back like the MAC (a stale event from before we set it: harmless).
            info!(slave = %rt.name, alias = ?link.alias, "the device's alias carries the slave's identity: restoring it");
            let change = LinkChange {
                alias: Some(self.device_alias(&rt.alias, id)),
                ..LinkChange::default()
            };
            if let Err(e) = rt.set_link(change) {
                warn!(slave = %rt.name, "restoring the device's alias: {e}");
            }
        }
        if link.up && link.noarp != mode.is_noarp() {
            let _ = rt.set_link(LinkChange {
                noarp: Some(mode.is_noarp()),
                ..LinkChange::default()
            });
        }
        // IPv6 needs an MTU of 1280 (RFC 8200 §5): below it the kernel drops the device's IPv6
        // state, and back above it starts afresh with the namespace's defaults.
        let ipv6_back = old_mtu < IPV6_MIN_MTU && link.mtu >= IPV6_MIN_MTU;
        if link.up && (!was_up || ipv6_back) {
            rt.ensure_ipv6_identity(ll, mac);
        }
        if was_up != link.up {
            self.netfilter_dirty = true;
            self.owners_changed = true;
        }
    }

    /// Re-reads everything about a slave from the namespace `ns` it is in now (`nsid` its id in
    /// the daemon's, `None` when it is the daemon's own): index, state, MTU, addresses (a move
    /// flushed the old ones, R-LIFE-4); re-applies our link settings.
    pub fn resync(&mut self, id: SlaveId, ns: &NetNs, nsid: Option<i32>) -> io::Result<()> {
        let Some(rt) = self.slaves.get_mut(&id) else {
            return Ok(());
        };
        let name = rt.current_name()?;
        // An ipvtap's TAP keeps a MAC of its own: the master's is the guest's.
        let ipvtap = rt.is_ipvtap();
        let (mac, ll, mtu) = {
            let port = self.dp.port();
            (
                port.master().mac,
                port.link_local(id),
                port.slave(id).map(|s| s.mtu()),
            )
        };
        let identity = rt.alias.clone();
        let (mode, flag) = {
            let port = self.dp.port();
            (port.mode(), port.flag())
        };
        let alias = device_alias(&identity, mode, flag, &self.master, id);
        let (link, addrs) = ns.run(move || -> io::Result<_> {
            let mut r = Rtnl::open()?;
            // By its alias first: a runtime may rename it (CNI: to eth0) right after the move,
            // before we look; the alias goes wherever the device goes. Either form: a device
            // from an older version gets the labelled one here.
            let by_alias = r
                .links()?
                .into_iter()
                .find(|l| alias_names(l.alias.as_deref(), &identity));
            let link = match by_alias {
                Some(l) => l,
                None => r
                    .link_by_name(&name)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "device not found"))?,
            };
            // A move resets per-device IPv6 settings to the namespace's defaults: no EUI-64
            // link-local from the shared MAC (RFC 7217 modes stay: they never use the MAC; and
            // a device without IPv6 state would refuse the whole change).
            let eui64 = matches!(
                link.addrgen,
                Some(AddrGenMode::Eui64 | AddrGenMode::Other(_))
            );
            r.set_link(
                link.index,
                &LinkChange {
                    addrgen_none: eui64,
                    alias: Some(alias),
                    mac: link.mac.filter(|m| *m != mac && !ipvtap).map(|_| mac),
                    ..LinkChange::default()
                },
            )?;
            let addrs = r.addresses(Some(link.index))?;
            Ok((link, addrs))
        })??;
        rt.nsid = nsid;
        rt.ifindex = link.index;
        self.dp.set_local(id, nsid.is_none() && !ipvtap);
        if nsid.is_none() {
            rt.pinned = false;
        }
        rt.conflicts.clear();
        let released = {
            let mut port = self.dp.port();
            let released = port.addresses(id).to_vec();
            for a in &released {
                let _ = port.remove_address(id, *a);
            }
            let _ = port.set_slave_up(id, link.up);
            if mtu != Some(link.mtu) {
                let _ = port.set_slave_mtu(id, link.mtu);
            }
            released
        };
        let place = ns
            .name()
            .unwrap_or_else(|| format!("nsid {}", nsid.unwrap_or(-1)));
        info!(slave = %rt.name, netns = %place, ifindex = link.index, "slave is in namespace");
        if let Some(rt) = self.slaves.get_mut(&id) {
            rt.configured.clear();
        }
        for a in &addrs {
            self.learn_address(id, a);
        }
        self.reclaim_manual(id);
        // What it held before the move and does not hold now goes to the next claimant.
        self.pass_on(&released);
        if link.up {
            if let Some(rt) = self.slaves.get(&id) {
                rt.ensure_ipv6_identity(ll, mac);
            }
        }
        self.netfilter_dirty = true;
        self.owners_changed = true;
        Ok(())
    }

    /// An address appeared on a slave, or changed (R-ADDR-2). The first owner keeps a
    /// contested address (R-ADDR-3): the claim is recorded as a conflict and not served; a
    /// claim keeps its place in line however often the kernel reports the address again
    /// (lifetimes, DAD). An address whose DAD failed is no claim: the stack will not use it.
    pub fn learn_address(&mut self, id: SlaveId, a: &LinkAddr) {
        if self.slaves.get(&id).is_some_and(|rt| rt.is_ipvtap()) {
            // Addresses on an ipvtap's TAP are the host's, not the guest's: the guest's are
            // given by `ipvlan address add` (`PortRuntime::address_add`).
            return;
        }
        if a.dad_failed {
            self.forget_address(id, a);
            return;
        }
        let addr = a.addr;
        let Some(rt) = self.slaves.get_mut(&id) else {
            return;
        };
        rt.configured.insert((addr, a.prefix_len));
        let result = {
            let mut port = self.dp.port();
            let mac = port.master().mac;
            if kernel_made_shared_identity(a, mac) {
                // The master's own identity, which every slave would share. Its IPv6 state was
                // reset (or address generation turned back on): give it its per-slave
                // identity again (R-DEVID-2).
                let ll = port.link_local(id);
                drop(port);
                rt.configured.remove(&(addr, a.prefix_len));
                info!(slave = %rt.name, %addr, "the kernel made the shared MAC's IPv6 address: replacing it with the slave's own");
                rt.ensure_ipv6_identity(ll, mac);
                return;
            }
            port.add_address(id, addr)
        };
        match result {
            Ok(Claim::New) => {
                info!(slave = %rt.name, %addr, "address learned");
                self.netfilter_dirty = true;
                self.owners_changed = true;
            }
            Ok(Claim::AlreadyOwned) => {}
            Err(PortError::AddressInUse { owner, .. }) => {
                if let Some(c) = rt.conflicts.get_mut(&addr) {
                    c.owner = owner; // the same claim reported again
                    return;
                }
                // Userspace cannot veto `ip addr add`: the first owner keeps it (R-ADDR-3).
                warn!(slave = %rt.name, %addr, %owner, "address conflict: already owned by another slave of this master; not served");
                self.claims += 1;
                let since = self.claims;
                rt.conflicts.insert(addr, AddrConflict { owner, since });
                rt.conflict_count += 1;
            }
            Err(e) => info!(slave = %rt.name, %addr, "address not used for steering: {e}"),
        }
    }

    /// An address went away from a slave (or failed DAD). The slave still holds the IP while
    /// it is configured with another prefix length.
    pub fn forget_address(&mut self, id: SlaveId, a: &LinkAddr) {
        if self.slaves.get(&id).is_some_and(|rt| rt.is_ipvtap()) {
            return;
        }
        let addr = a.addr;
        let Some(rt) = self.slaves.get_mut(&id) else {
            return;
        };
        rt.configured.remove(&(addr, a.prefix_len));
        let (up, ll) = {
            let port = self.dp.port();
            (
                port.slave(id).is_some_and(|s| s.is_up()),
                port.link_local(id),
            )
        };
        if up && addr == IpAddr::V6(ll) && rt.ipv6_restarting() {
            // `disable_ipv6` took it (and may already be off again): turning IPv6 back on
            // makes the kernel regenerate addresses, and nothing tells us when: the sweep
            // watches.
            rt.ipv6_pending = true;
        }
        if rt.configured.iter().any(|(other, _)| *other == addr) {
            return;
        }
        if rt.conflicts.remove(&addr).is_none() && self.dp.port().remove_address(id, addr).is_ok() {
            info!(slave = %rt.name, %addr, "address forgotten");
            self.netfilter_dirty = true;
            self.owners_changed = true;
            self.pass_on(&[addr]);
        }
    }

    /// Addresses whose owner let go of them (removed them, was deleted, moved away) pass at
    /// once to the slave that claimed each earliest among those still configuring it; the
    /// other claimants' conflicts then name the new owner. (The kernel refuses a second claim
    /// with EADDRINUSE, so it never has to choose; we must, because `ip addr add` succeeds.)
    pub(super) fn pass_on(&mut self, released: &[IpAddr]) {
        for &addr in released {
            if self.dp.port().table().owner(addr).is_some() {
                continue;
            }
            let next = self
                .slaves
                .iter()
                .filter_map(|(id, rt)| rt.conflicts.get(&addr).map(|c| (*id, c.since)))
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id);
            let Some(next) = next else { continue };
            if let Err(e) = self.dp.port().add_address(next, addr) {
                warn!(%addr, "passing the address on: {e}");
                continue;
            }
            let mut new_owner = String::new();
            if let Some(rt) = self.slaves.get_mut(&next) {
                rt.conflicts.remove(&addr);
                new_owner = rt.name.to_string();
            }
            for rt in self.slaves.values_mut() {
                if let Some(c) = rt.conflicts.get_mut(&addr) {
                    c.owner.clone_from(&new_owner);
                }
            }
            info!(slave = %new_owner, %addr, "address passed on: its owner let go of it; served now");
            self.netfilter_dirty = true;
            self.owners_changed = true;
        }
    }

    /// Slaves whose namespace only our descriptor keeps alive: re-attached after a restart
    /// into a namespace (other than `ours`) that nobody else references (R-LIFE-5).
    pub fn orphaned_slaves(
        &self,
        ours: NsId,
        referenced: &std::collections::HashSet<u64>,
    ) -> Vec<SlaveId> {
        self.slaves
            .iter()
            .filter(|(_, rt)| rt.pinned)
            .filter(|(_, rt)| {
                rt.netns()
                    .is_ok_and(|ns| ns.id() != ours && !referenced.contains(&ns.id().ino))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Up slaves whose IPv6 was turned off get their identity back once it is on again (the
    /// kernel regenerates a device's addresses then, R-DEVID-2, and sends no event).
    pub fn retry_ipv6_identity(&mut self) {
        let (mac, lls): (_, Vec<_>) = {
            let port = self.dp.port();
            let lls = self
                .slaves
                .iter()
                .filter(|(_, rt)| rt.ipv6_pending)
                .map(|(id, _)| {
                    (
                        *id,
                        port.link_local(*id),
                        port.slave(*id).is_some_and(|s| s.is_up()),
                    )
                })
                .collect();
            (port.master().mac, lls)
        };
        for (id, ll, up) in lls {
            let Some(rt) = self.slaves.get_mut(&id) else {
                continue;
            };
            match rt.ipv6_disabled() {
                Ok(true) if up => continue,
                Ok(_) => {
                    rt.ipv6_pending = false;
                    if up {
                        info!(slave = %rt.name, "IPv6 is on again: the slave's own identity is back");
                        rt.ensure_ipv6_identity(ll, mac);
                    }
                }
                // Gone, or its namespace is: the sweep handles that.
                Err(_) => rt.ipv6_pending = false,
            }
        }
    }

    /// Whether any slave was re-attached inside another namespace (see `orphaned_slaves`).
    pub fn has_pinned_slaves(&self) -> bool {
        self.slaves.values().any(|rt| rt.pinned)
    }

    /// Slaves whose device is gone (its namespace was deleted with it).
    pub fn vanished_slaves(&self) -> Vec<SlaveId> {
        self.slaves
            .iter()
            .filter(|(_, rt)| rt.netns().is_err())
            .map(|(id, _)| *id)
            .collect()
    }
}
