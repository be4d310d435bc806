//! `hostreach on|off`: the master's own namespace and the port's slaves reach each other
//! (`docs/hostreach.md`). The kernel's ipvlan keeps the master's stack from its slaves; with
//! the option on, the port gets a *host slave*: a slave device `ipvlh<master ifindex>` left in
//! the master's namespace (TAP or veth, as the port's data path makes slaves), marked in the
//! core ([`ipvlan_core::Slave::is_host`]) so that
//! - its address-table entries are the master's own addresses, and match frames sent by
//!   slaves only (the wire's frames for them stay the master's);
//! - what it sends reaches slaves only, never the master's wire;
//!
//! and the master's namespace routes each served slave address (`/32`, `/128`) to it, with
//! routing protocol [`HOSTREACH_PROTO`] (`ip route show proto 73`). Its IPv6 neighbour
//! solicitations for the master's addresses are answered by the master's stack through
//! `proxy_ndp` entries on the device. Everything is re-checked at every settle.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipvlan_core::{IfName, LinkTypeArgs};
use ipvlan_linux::rtnl::{IpFamily, LinkChange, Rtnl};
use tracing::{info, warn};

use super::{PortRuntime, SlaveSpec};
use crate::backend::SlaveBackend;
use crate::daemon::error::RequestError;

/// The routing protocol number (`rtm_protocol`) of the routes `hostreach` adds in the master's
/// namespace: `ip route show proto 73` lists them.
pub const HOSTREACH_PROTO: u8 = 73;

/// The host slave's device name for the master with ifindex `master` (`ipvlh<ifindex>`).
pub fn host_name(master: u32) -> String {
    format!("ipvlh{master}")
}

/// Whether `name` is reserved for host slaves (`ipvlh` followed by digits only).
pub fn is_host_name(name: &str) -> bool {
    name.strip_prefix("ipvlh")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

impl<B: SlaveBackend> PortRuntime<B> {
    /// Turns `hostreach` on (makes the host slave, or adopts the one an earlier run left, found
    /// by its name) or off (deletes it and its routes). The routes and the master's addresses
    /// follow at the next settle ([`PortRuntime::sync_hostreach`]).
    pub fn set_hostreach(
        &mut self,
        on: bool,
        backend: &B,
        instance: &str,
        carrier: bool,
    ) -> Result<(), RequestError> {
        let current = self.dp.port().host_slave();
        match (on, current) {
            (true, Some(_)) | (false, None) => {}
            (true, None) => {
                let name = host_name(self.index);
                let id = match self.slave_named(&name) {
                    Some(id) => id,
                    None => {
                        self.add_slave(
                            SlaveSpec {
                                name: IfName::new(&name)?,
                                args: LinkTypeArgs::default(),
                                mtu: None,
                                spoofchk: false,
                                backend: None,
                                attachment: None,
                                tap_owner: None,
                            },
                            backend,
                            instance,
                            carrier,
                        )?;
                        self.slave_named(&name)
                            .ok_or_else(|| RequestError::NoDevice(name.clone()))?
                    }
                };
                self.dp.port().set_host(id, true)?;
                self.host_addrs.clear();
                let noarp = self.dp.port().mode().is_noarp();
                // By its ifindex: the device may have been renamed by hand (it is adopted by
                // the name it was made with, which the slave keeps).
                let ifindex = self.slaves.get(&id).map_or(0, |rt| rt.ifindex);
                if let Err(e) = configure_device(ifindex, &name, noarp) {
                    self.remove_slave(id, true);
                    return Err(e);
                }
                info!(master = %self.master, device = %name, "hostreach on");
            }
            (false, Some(id)) => {
                if let Some(ifindex) = self.slaves.get(&id).map(|rt| rt.ifindex) {
                    remove_routes(Some(ifindex));
                }
                self.remove_slave(id, true);
                self.host_addrs.clear();
                self.host_conflicts.clear();
                self.host_route_failed.clear();
                info!(master = %self.master, "hostreach off");
            }
        }
        self.hostreach = on;
        Ok(())
    }

    /// `hostreach` is on but the port has no host slave: its device was deleted by hand (the
    /// sweep then removed the slave), so [`PortRuntime::set_hostreach`] must make it again.
    pub fn hostreach_lost(&self) -> bool {
        self.hostreach && self.dp.port().host_slave().is_none()
    }

    /// Keeps the host slave's table entries equal to the master's addresses, its proxy
    /// neighbour entries to the master's IPv6 addresses, and the master namespace's
    /// [`HOSTREACH_PROTO`] routes to the served addresses of the other slaves. A failure is
    /// logged and retried at the next settle.
    pub fn sync_hostreach(&mut self) {
        let Some(h) = self.dp.port().host_slave() else {
            return;
        };
        let Some((ifindex, own)) = self.slaves.get(&h).map(|rt| {
            let own: BTreeSet<IpAddr> = rt.configured.iter().map(|(a, _)| *a).collect();
            (rt.ifindex, own)
        }) else {
            return;
        };
        let mut r = match Rtnl::open() {
            Ok(r) => r,
            Err(e) => {
                warn!(master = %self.master, "hostreach: {e}");
                return;
            }
        };
        let master_nets: Vec<(IpAddr, u8)> = match r.addresses(Some(self.index)) {
            Ok(a) => a
                .iter()
                .filter(|a| !a.dad_failed)
                .map(|a| (a.addr, a.prefix_len))
                .collect(),
            Err(e) => {
                warn!(master = %self.master, "hostreach: reading the master's addresses: {e}");
                return;
            }
        };
        let master_addrs: BTreeSet<IpAddr> = master_nets.iter().map(|(a, _)| *a).collect();
        let added: Vec<IpAddr> = master_addrs.difference(&self.host_addrs).copied().collect();
        let gone: Vec<IpAddr> = self.host_addrs.difference(&master_addrs).copied().collect();
        for a in added {
            match self.dp.port().add_address(h, a) {
                Ok(_) => {
                    self.host_addrs.insert(a);
                    if a.is_ipv6() {
                        proxy_ndp(&mut r, true, a, ifindex);
                    }
                }
                Err(e) => {
                    // A slave had it first: it keeps it (R-ADDR-3); tried again next settle.
                    if self.host_conflicts.insert(a) {
                        warn!(master = %self.master, addr = %a, "hostreach: the master's address is not the host's: {e}");
                    }
                }
            }
        }
        for a in gone {
            self.host_addrs.remove(&a);
            self.host_conflicts.remove(&a);
            if !own.contains(&a) {
                let _ = self.dp.port().remove_address(h, a);
            }
            if a.is_ipv6() {
                proxy_ndp(&mut r, false, a, ifindex);
            }
        }
        // Each route carries the master address the host would answer from (`src`): the
        // host device has none of its own, and without it the kernel picks one from any
        // device, which a slave on another prefix of the master does not reach back.
        let wanted: BTreeSet<(IpAddr, u8, Option<IpAddr>)> = {
            let port = self.dp.port();
            port.slaves()
                .filter(|s| !s.is_host() && s.is_up())
                .flat_map(|s| port.addresses(s.id()).to_vec())
                .filter(|a| !is_link_local(*a))
                .map(|a| (a, host_len(a), source_for(a, &master_nets)))
                .collect()
        };
        let mut have = BTreeSet::new();
        for family in IpFamily::ALL {
            let routes = match r.proto_routes(family, HOSTREACH_PROTO) {
                Ok(r) => r,
                Err(e) => {
                    warn!(master = %self.master, "hostreach: reading routes: {e}");
                    return;
                }
            };
            for (dst, len, oif, src) in routes {
                if oif == Some(ifindex) && wanted.contains(&(dst, len, src)) {
                    have.insert((dst, len, src));
                } else if oif == Some(ifindex) {
                    let _ = r.del_proto_route(dst, len, ifindex, HOSTREACH_PROTO);
                }
            }
        }
        // Retried at every settle, but said once: a route that cannot be added stays so (e.g.
        // the same slave address on another port with `hostreach on`, whose route came first).
        self.host_route_failed
            .retain(|a| wanted.iter().any(|(d, _, _)| d == a));
        for (dst, len, src) in wanted.difference(&have) {
            match r.add_proto_route(*dst, *len, ifindex, HOSTREACH_PROTO, *src) {
                Ok(()) => {
                    self.host_route_failed.remove(dst);
                }
                Err(e) => {
                    if self.host_route_failed.insert(*dst) {
                        warn!(master = %self.master, %dst, "hostreach: adding the route (retried every second, said once): {e}");
                    }
                }
            }
        }
    }
}

/// A host route's prefix length: 32 or 128.
fn host_len(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        32
    } else {
        128
    }
}

/// The master address a route to slave address `a` should carry as its source: the one whose
/// prefix holds `a` (the longest, if several), else the master's first of the same family
/// that is not link-local; `None` if the master has none (the kernel then picks).
fn source_for(a: IpAddr, master: &[(IpAddr, u8)]) -> Option<IpAddr> {
    let same = || {
        master
            .iter()
            .filter(move |(m, _)| m.is_ipv4() == a.is_ipv4() && !is_link_local(*m))
    };
    same()
        .filter(|(m, len)| in_prefix(a, *m, *len))
        .max_by_key(|(_, len)| *len)
        .or_else(|| same().next())
        .map(|(m, _)| *m)
}

/// Whether `a` lies in `net/len` (same family; an impossible length holds nothing).
fn in_prefix(a: IpAddr, net: IpAddr, len: u8) -> bool {
    ipnet::IpNet::new(net, len).is_ok_and(|n| n.contains(&a))
}

fn is_link_local(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    }
}

/// Brings the host slave's device up with the port's NOARP flag, and lets it answer IPv6
/// neighbour solicitations for the master's addresses (`proxy_ndp` needs `forwarding` on the
/// device, `ndisc_recv_ns`; `proxy_delay` 0 answers at once); no DAD on it.
/// `index` is the device's ifindex, `made_as` the name it was made with (for the error).
fn configure_device(index: u32, made_as: &str, noarp: bool) -> Result<(), RequestError> {
    let what = "configuring the hostreach device";
    let mut r = Rtnl::open().map_err(RequestError::system(what))?;
    let link = r
        .link_by_index(index)
        .map_err(RequestError::system(what))?
        .ok_or_else(|| RequestError::NoDevice(made_as.to_owned()))?;
    let name = link.name.as_str();
    for (path, value) in [
        (format!("/proc/sys/net/ipv6/conf/{name}/forwarding"), "1"),
        (format!("/proc/sys/net/ipv6/conf/{name}/proxy_ndp"), "1"),
        (format!("/proc/sys/net/ipv6/neigh/{name}/proxy_delay"), "0"),
        // Its link-local is unique by construction (the slave id, R-DEVID-2) and only slaves
        // see it: no DAD, so its first neighbour solicitation is not held back (a tentative
        // link-local cannot be the source of one, `ndisc_send_ns`).
        (format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0"),
    ] {
        if let Err(e) = std::fs::write(&path, value) {
            warn!(device = %name, "hostreach: writing {path}: {e}");
        }
    }
    r.set_link(
        link.index,
        &LinkChange {
            up: Some(true),
            noarp: Some(noarp),
            ..LinkChange::default()
        },
    )
    .map_err(RequestError::system(what))
}

/// `ip -6 neigh replace|del proxy ADDR dev DEV`. A failure is logged.
fn proxy_ndp(r: &mut Rtnl, add: bool, addr: IpAddr, index: u32) {
    let done = if add {
        r.add_proxy_neighbour(addr, index)
    } else {
        r.del_proxy_neighbour(addr, index)
    };
    if let Err(e) = done {
        warn!(%addr, "hostreach: {e}");
    }
}

/// Removes every [`HOSTREACH_PROTO`] route (on `oif` only, if given).
pub fn remove_routes(oif: Option<u32>) {
    let Ok(mut r) = Rtnl::open() else {
        return;
    };
    for family in IpFamily::ALL {
        let Ok(routes) = r.proto_routes(family, HOSTREACH_PROTO) else {
            continue;
        };
        for (dst, len, o, _) in routes {
            if let Some(o) = o.filter(|o| oif.is_none_or(|want| want == *o)) {
                let _ = r.del_proto_route(dst, len, o, HOSTREACH_PROTO);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{host_name, in_prefix, is_host_name, source_for};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_route_takes_the_master_address_whose_prefix_holds_the_slave() {
        let master = [
            (ip("192.0.2.1"), 24),
            (ip("203.0.113.1"), 24),
            (ip("fe80::1"), 64),
            (ip("2001:db8::1"), 64),
        ];
        assert_eq!(
            source_for(ip("203.0.113.13"), &master),
            Some(ip("203.0.113.1"))
        );
        assert_eq!(source_for(ip("192.0.2.11"), &master), Some(ip("192.0.2.1")));
        // Outside every prefix: the first of its family.
        assert_eq!(
            source_for(ip("198.51.100.7"), &master),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            source_for(ip("2001:db8:9::7"), &master),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(source_for(ip("2001:db8::7"), &master[..2]), None);
        assert!(in_prefix(ip("10.1.2.3"), ip("10.0.0.0"), 8));
        assert!(!in_prefix(ip("11.1.2.3"), ip("10.0.0.0"), 8));
        assert!(in_prefix(ip("2001:db8::5"), ip("::"), 0));
    }

    #[test]
    fn host_names_are_reserved() {
        assert_eq!(host_name(7), "ipvlh7");
        assert!(is_host_name("ipvlh7"));
        assert!(!is_host_name("ipvlh"));
        assert!(!is_host_name("ipvlhx"));
        assert!(!is_host_name("ipvl0"));
    }
}
