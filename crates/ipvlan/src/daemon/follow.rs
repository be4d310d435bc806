//! Following the kernel: rtnetlink events from every namespace are routed to the port they
//! concern; a slave whose device left the namespace we knew is found again (or removed); once a
//! second a sweep notices what no event reported.

use std::io;

use ipvlan_linux::rtnl::Event;
use ipvlan_linux::NetNs;
use tracing::warn;

use super::slave::log_gone;
use super::{Daemon, SlaveKey};

impl Daemon {
    /// Reads the monitor's pending events and routes each.
    pub(super) fn netlink_events(&mut self) {
        match self.monitor.events_all() {
            Ok(events) => {
                for (nsid, ev) in events {
                    self.on_event(nsid, ev);
                }
            }
            Err(e) => {
                // ENOBUFS: events were lost; resynchronise everything.
                warn!("rtnetlink monitor: {e}; resynchronising all slaves");
                self.resync_all();
            }
        }
    }

    fn on_event(&mut self, nsid: Option<i32>, ev: Event) {
        match ev {
            Event::LinkChanged(link) if nsid.is_none() && self.ports.contains_key(&link.index) => {
                if let Some(p) = self.ports.get_mut(&link.index) {
                    p.master_changed(&link);
                }
            }
            Event::LinkGone { index, .. } if nsid.is_none() && self.ports.contains_key(&index) => {
                self.master_gone(index)
            }
            Event::LinkChanged(link) => {
                if let Some((master, id)) = self.find_slave_at(nsid, link.index) {
                    if let Some(p) = self.ports.get_mut(&master) {
                        p.slave_link_changed(id, &link);
                    }
                }
            }
            Event::LinkGone { index, .. } => {
                if let Some(key) = self.find_slave_at(nsid, index) {
                    self.relocate(key);
                }
            }
            Event::AddrAdded(a) => {
                if let Some((master, id)) = self.find_slave_at(nsid, a.index) {
                    if let Some(p) = self.ports.get_mut(&master) {
                        p.learn_address(id, &a);
                    }
                }
            }
            Event::AddrRemoved(a) => {
                if let Some((master, id)) = self.find_slave_at(nsid, a.index) {
                    if let Some(p) = self.ports.get_mut(&master) {
                        p.forget_address(id, &a);
                    }
                }
            }
        }
    }

    /// The slave whose device has `ifindex` in the namespace with id `nsid` (`None`: ours).
    pub(super) fn find_slave_at(&self, nsid: Option<i32>, ifindex: u32) -> Option<SlaveKey> {
        self.ports
            .iter()
            .find_map(|(m, p)| p.slave_at(nsid, ifindex).map(|id| (*m, id)))
    }

    /// The master left the daemon's namespace or was deleted: its slaves go with it
    /// (R-LIFE-1).
    fn master_gone(&mut self, master: u32) {
        let Some(p) = self.ports.get_mut(&master) else {
            return;
        };
        warn!(master = %p.master(), "master device is gone: deleting its slaves");
        for id in p.slave_ids() {
            p.remove_slave(id, true);
        }
        self.state_dirty = true;
    }

    /// The slave's device left the namespace we knew: find where it went, or notice it is gone.
    pub(super) fn relocate(&mut self, (master, id): SlaveKey) {
        let Some(rt) = self.ports.get(&master).and_then(|p| p.slave(id)) else {
            self.resync_pending.remove(&(master, id));
            return;
        };
        let name = rt.name.clone();
        match rt.netns() {
            Ok(ns) => match self.resync((master, id), &ns) {
                Ok(()) => {
                    self.resync_pending.remove(&(master, id));
                }
                Err(e) => {
                    // Retried by the sweep until it works (the device may be mid-rename).
                    if self.resync_pending.insert((master, id)) {
                        warn!(slave = %name, "following the slave into its new namespace (retried every second): {e}");
                    }
                }
            },
            Err(_) => {
                // R-LIFE-5: the device was deleted, or its namespace and the device with it.
                if rt.is_ipvtap() {
                    // An ipvtap's TAP is served in the master's namespace only (its eBPF
                    // redirects, its packet socket, its sysctls are that namespace's); one moved
                    // elsewhere (`ip link set vmtap0 netns …`) cannot be followed there.
                    warn!(slave = %name, "ipvtap's TAP left the master's namespace (deleted, or moved to another namespace, where it is not served): removed from its port; a moved TAP is left where it is (delete it there, or move it back and `ipvlan link del` / add it again)");
                } else {
                    log_gone(
                        name.as_str(),
                        rt.attachment.as_ref(),
                        "container gone: slave removed",
                        "slave device is gone (the device, or its namespace was deleted): removed from its port",
                    );
                }
                self.resync_pending.remove(&(master, id));
                if let Some(p) = self.ports.get_mut(&master) {
                    p.remove_slave(id, false);
                }
                self.state_dirty = true;
            }
        }
    }

    /// Re-reads a slave from the namespace `ns` it is in now.
    pub(super) fn resync(&mut self, (master, id): SlaveKey, ns: &NetNs) -> io::Result<()> {
        let nsid = if ns.id() == self.ns.id() {
            None
        } else {
            Some(self.rtnl.nsid_of(ns)?)
        };
        match self.ports.get_mut(&master) {
            Some(p) => p.resync(id, ns, nsid),
            None => Ok(()),
        }
    }

    pub(super) fn resync_all(&mut self) {
        let keys: Vec<SlaveKey> = self
            .ports
            .iter()
            .flat_map(|(m, p)| p.slave_ids().into_iter().map(move |id| (*m, id)))
            .collect();
        for key in keys {
            self.relocate(key);
        }
    }

    /// Once a second: notice slaves whose device disappeared without an event we could see,
    /// slaves whose namespace only we keep alive (its owner deleted it: R-LIFE-5), and slaves
    /// whose IPv6 was turned back on (no event says so).
    pub(super) fn sweep(&mut self) {
        for p in self.ports.values_mut() {
            p.retry_ipv6_identity();
        }
        for key in std::mem::take(&mut self.resync_pending) {
            // Put back by `relocate` if it fails again.
            self.resync_pending.insert(key);
            self.relocate(key);
        }
        if self.ports.values().any(|p| p.has_pinned_slaves()) {
            let referenced = ipvlan_linux::netns::referenced_elsewhere();
            let ours = self.ns.id();
            for p in self.ports.values_mut() {
                for id in p.orphaned_slaves(ours, &referenced) {
                    if let Some(rt) = p.slave(id) {
                        log_gone(
                            rt.name.as_str(),
                            rt.attachment.as_ref(),
                            "container gone: slave removed",
                            "slave's namespace was deleted (only the daemon still held it): slave removed",
                        );
                    }
                    p.remove_slave(id, true);
                    self.state_dirty = true;
                }
            }
        }
        let gone: Vec<SlaveKey> = self
            .ports
            .iter()
            .flat_map(|(m, p)| p.vanished_slaves().into_iter().map(move |id| (*m, id)))
            .collect();
        for key in gone {
            self.relocate(key);
        }
    }
}
