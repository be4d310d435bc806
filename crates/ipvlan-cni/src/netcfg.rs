//! What happens inside the container's namespace: the move, the name, the announcements,
//! addresses, duplicate address detection, routes — CHECK's verification of them, and DEL's
//! removal when the daemon cannot do it. Modelled on the reference plugins' `ipvlan` and
//! `pkg/ipam.ConfigureIface` (containernetworking/plugins).

use std::time::{Duration, Instant};

use ipvlan_linux::netns::NetNsError;
use ipvlan_linux::rtnl::{IpFamily, LinkChange, Rtnl, TABLE_MAIN};
use ipvlan_linux::NetNs;

use crate::error::{CniError, Code};
use crate::result::{IpConfig, Route};

fn plugin(what: &str, e: impl std::fmt::Display) -> CniError {
    CniError::new(Code::Plugin, format!("{what}: {e}"))
}

/// The network namespace the daemon listening on `socket` runs in: the plugin may be run by a
/// runtime in another one (podman in the root namespace), and the slave is created in the
/// daemon's.
pub fn daemon_netns(socket: &std::path::Path) -> Result<NetNs, CniError> {
    let stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| {
        CniError::new(
            Code::TryAgainLater,
            format!(
                "cannot reach the ipvlan daemon at {}: {e}",
                socket.display()
            ),
        )
    })?;
    let cred = ipvlan_linux::cred::peer_credentials(&stream)
        .map_err(|e| plugin("asking the socket for the daemon's PID", e))?;
    NetNs::open(format!("/proc/{}/ns/net", cred.pid))
        .map_err(|e| plugin("opening the daemon's namespace", e))
}

/// The device of the IPv4 default route in `ns` (else the IPv6 one), the reference plugin's
/// default master (lowest metric when there are several).
pub fn default_route_device(ns: &NetNs) -> Result<String, CniError> {
    let mut r = Rtnl::open_in(ns).map_err(|e| plugin("rtnetlink in the daemon's namespace", e))?;
    let mut index = None;
    for family in [IpFamily::V4, IpFamily::V6] {
        index = r
            .default_route_device(family)
            .map_err(|e| plugin("finding the default route", e))?;
        if index.is_some() {
            break;
        }
    }
    let link = match index {
        Some(i) => r
            .link_by_index(i)
            .map_err(|e| plugin("finding the default route's device", e))?,
        None => None,
    };
    link.map(|l| l.name).ok_or_else(|| {
        CniError::new(
            Code::InvalidConfig,
            "no \"master\" given and no default route in the ipvlan-rs daemon's network namespace to take it from",
        )
    })
}

/// Moves the slave `name` from the daemon's namespace `from` into `netns`.
pub fn move_into(name: &str, from: &NetNs, netns: &NetNs) -> Result<(), CniError> {
    let mut r =
        Rtnl::open_in(from).map_err(|e| plugin("rtnetlink in the daemon's namespace", e))?;
    let link = r
        .link_by_name(name)
        .map_err(|e| plugin("finding the new slave", e))?
        .ok_or_else(|| {
            CniError::new(Code::Plugin, format!("the new slave {name} is not visible"))
        })?;
    r.move_to_netns(link.index, netns)
        .map_err(|e| plugin("moving the slave into the container", e))
}

/// Inside `netns`, renames the slave `temp` to the container's `ifname` (an error if the
/// container has one already): done before the IPAM plugin runs, as the reference ipvlan
/// plugin creates its link under the final name first — the `dhcp` IPAM plugin's daemon runs
/// its client on `CNI_IFNAME` in the container.
pub fn rename_in(netns: &NetNs, temp: &str, ifname: &str) -> Result<(), CniError> {
    if temp == ifname {
        return Ok(());
    }
    let (temp, ifname) = (temp.to_owned(), ifname.to_owned());
    netns
        .run(move || -> Result<(), CniError> {
            let mut r = Rtnl::open().map_err(|e| plugin("rtnetlink in the container", e))?;
            let link = r
                .link_by_name(&temp)
                .map_err(|e| plugin("finding the slave in the container", e))?
                .ok_or_else(|| {
                    CniError::new(Code::Plugin, "the slave did not arrive in the container")
                })?;
            if r.link_by_name(&ifname).ok().flatten().is_some() {
                return Err(CniError::new(
                    Code::Plugin,
                    format!("the container already has an interface named {ifname}"),
                ));
            }
            r.rename(link.index, &ifname)
                .map_err(|e| plugin(&format!("renaming the slave to {ifname}"), e))
        })
        .map_err(|e| plugin("entering the container's namespace", e))?
}

/// How long ADD waits for IPv6 duplicate address detection (the reference's
/// `dadSettleTimeout`).
pub const DAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes a sysctl under `/proc/sys/net` of the calling thread's namespace (`/proc/sys/net`
/// follows the task that looks it up).
fn sysctl(rel: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/net/{rel}"), value)
}

fn sysctl_get(rel: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/sys/net/{rel}"))?
        .trim()
        .to_owned())
}

/// Inside `netns`, as the reference plugin does it: renames `temp` to `ifname` (an error if
/// the container has one already); sets `arp_notify` and `ndisc_notify` so that bringing the
/// link up announces the addresses (gratuitous ARP, unsolicited NA: stale neighbour entries
/// on the LAN are fixed at once); with IPv6 addresses, turns IPv6 on for `lo` and the link
/// and sets `keep_addr_on_down`; adds the addresses before the link goes up, with duplicate
/// address detection; brings it up; waits up to [`DAD_TIMEOUT`] for IPv6 DAD and fails on a
/// `dadfailed` address (the address is someone else's on the LAN); adds the routes, each
/// through the gateway of its family when it names none. Returns the interface's MAC.
pub fn configure(
    netns: &NetNs,
    temp: &str,
    ifname: &str,
    ips: &[IpConfig],
    routes: &[Route],
) -> Result<String, CniError> {
    let (temp, ifname) = (temp.to_owned(), ifname.to_owned());
    let (ips, routes) = (ips.to_vec(), routes.to_vec());
    netns
        .run(move || -> Result<String, CniError> {
            let mut r = Rtnl::open().map_err(|e| plugin("rtnetlink in the container", e))?;
            let link = r
                .link_by_name(&temp)
                .map_err(|e| plugin("finding the slave in the container", e))?
                .ok_or_else(|| {
                    CniError::new(Code::Plugin, "the slave did not arrive in the container")
                })?;
            if temp != ifname {
                if r.link_by_name(&ifname).ok().flatten().is_some() {
                    return Err(CniError::new(
                        Code::Plugin,
                        format!("the container already has an interface named {ifname}"),
                    ));
                }
                r.rename(link.index, &ifname)
                    .map_err(|e| plugin(&format!("renaming the slave to {ifname}"), e))?;
            }
            // Best effort, as the reference: IPv6 may be off in the container.
            let _ = sysctl(&format!("ipv4/conf/{ifname}/arp_notify"), "1");
            let _ = sysctl(&format!("ipv6/conf/{ifname}/ndisc_notify"), "1");
            let v6 = ips.iter().any(|ip| ip.address.addr.is_ipv6());
            if v6 {
                for dev in ["lo", ifname.as_str()] {
                    let rel = format!("ipv6/conf/{dev}/disable_ipv6");
                    if sysctl_get(&rel).is_ok_and(|v| v != "0") {
                        sysctl(&rel, "0")
                            .map_err(|e| plugin(&format!("enabling IPv6 on {dev}"), e))?;
                    }
                }
                sysctl(&format!("ipv6/conf/{ifname}/keep_addr_on_down"), "1")
                    .map_err(|e| plugin(&format!("keep_addr_on_down on {ifname}"), e))?;
            }
            for ip in &ips {
                let a = ip.address;
                r.add_address(link.index, a.addr, a.prefix_len, false)
                    .map_err(|e| plugin(&format!("adding {a} to {ifname}"), e))?;
            }
            r.set_link(
                link.index,
                &LinkChange {
                    up: Some(true),
                    ..LinkChange::default()
                },
            )
            .map_err(|e| plugin(&format!("bringing {ifname} up"), e))?;
            if v6 {
                settle(&mut r, link.index, &ifname)?;
            }
            let gateway = |v4: bool| {
                ips.iter()
                    .filter_map(|ip| ip.gateway)
                    .find(|g| g.is_ipv4() == v4)
            };
            for route in &routes {
                let d = route.dst;
                let gw = route.gw.or_else(|| gateway(d.addr.is_ipv4()));
                let rt = ipvlan_linux::rtnl::Route {
                    dst: d.addr,
                    prefix_len: d.prefix_len,
                    gateway: gw,
                    oif: Some(link.index),
                    priority: route.priority.unwrap_or(0),
                    table: route.table.unwrap_or(TABLE_MAIN),
                    scope: route.scope,
                };
                r.add_route_full(&rt).map_err(|e| {
                    let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
                    plugin(&format!("adding the route to {d}{via} dev {ifname}"), e)
                })?;
            }
            Ok(link.mac.map(|m| m.to_string()).unwrap_or_default())
        })
        .map_err(|e| plugin("entering the container's namespace", e))?
}

/// Waits until no IPv6 address of link `index` is tentative (the reference's
/// `ip.SettleAddresses`): an error at once for a `dadfailed` one, and after [`DAD_TIMEOUT`]
/// if one is still tentative on a link that is up. On an l3/l3s slave (NOARP) the kernel does
/// no DAD and this returns at once.
fn settle(r: &mut Rtnl, index: u32, ifname: &str) -> Result<(), CniError> {
    let deadline = Instant::now() + DAD_TIMEOUT;
    loop {
        let addrs = r
            .addresses(Some(index))
            .map_err(|e| plugin("reading the addresses", e))?;
        let v6 = addrs.iter().filter(|a| a.addr.is_ipv6());
        if let Some(a) = v6.clone().find(|a| a.dad_failed) {
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "{}/{} on {ifname} is in use on the LAN: duplicate address detection failed",
                    a.addr, a.prefix_len
                ),
            ));
        }
        let Some(tentative) = v6.clone().find(|a| a.tentative) else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            let up = r
                .link_by_index(index)
                .ok()
                .flatten()
                .is_some_and(|l| l.oper_up);
            if !up {
                return Ok(());
            }
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "{} on {ifname} is still tentative after {} s of duplicate address detection",
                    tentative.addr,
                    DAD_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What CHECK expects of the container's interface (from the `prevResult`).
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Empty: not checked.
    pub mac: String,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

/// CHECK, in `netns`: interface `ifname` exists, has `want.mac` (if given), every address of
/// `want.ips`, and every route of `want.routes` is in the namespace (destination and, when
/// given, gateway), as the reference's `ValidateExpectedInterfaceIPs` and
/// `ValidateExpectedRoute` check.
pub fn verify(netns: &NetNs, ifname: &str, want: &Expected) -> Result<(), CniError> {
    let ifname = ifname.to_owned();
    let want = want.clone();
    netns
        .run(move || -> Result<(), CniError> {
            let mut r = Rtnl::open().map_err(|e| plugin("rtnetlink in the container", e))?;
            let link = r
                .link_by_name(&ifname)
                .map_err(|e| plugin("looking up the interface", e))?
                .ok_or_else(|| {
                    CniError::new(
                        Code::Plugin,
                        format!("interface {ifname} is missing in the container"),
                    )
                })?;
            let mac = link.mac.map(|m| m.to_string()).unwrap_or_default();
            if !want.mac.is_empty() && !want.mac.eq_ignore_ascii_case(&mac) {
                return Err(CniError::new(
                    Code::Plugin,
                    format!(
                        "interface {ifname} has MAC {mac}, the result says {}",
                        want.mac
                    ),
                ));
            }
            let have = r
                .addresses(Some(link.index))
                .map_err(|e| plugin("reading addresses", e))?;
            for ip in &want.ips {
                let a = ip.address;
                if !have
                    .iter()
                    .any(|h| h.addr == a.addr && h.prefix_len == a.prefix_len)
                {
                    return Err(CniError::new(
                        Code::Plugin,
                        format!("address {a} is missing on {ifname}"),
                    ));
                }
            }
            let mut routes = Vec::new();
            for family in [IpFamily::V4, IpFamily::V6] {
                if want
                    .routes
                    .iter()
                    .any(|rt| rt.dst.addr.is_ipv4() == (family == IpFamily::V4))
                {
                    routes.extend(
                        r.unicast_routes(family)
                            .map_err(|e| plugin("reading routes", e))?,
                    );
                }
            }
            for rt in &want.routes {
                let d = rt.dst;
                let found = routes.iter().any(|h| {
                    h.dst == d.addr
                        && h.prefix_len == d.prefix_len
                        && rt.gw.is_none_or(|g| h.gateway == Some(g))
                });
                if !found {
                    let via = rt.gw.map(|g| format!(" via {g}")).unwrap_or_default();
                    return Err(CniError::new(
                        Code::Plugin,
                        format!("route to {d}{via} is missing in the container"),
                    ));
                }
            }
            Ok(())
        })
        .map_err(|e| plugin("entering the container's namespace", e))?
}

/// DEL without the daemon: deletes `ifname` in the namespace at `netns_path`, as the reference
/// plugin does. `Ok(false)` when there is nothing to delete (no such namespace any more, a
/// path that is no namespace any more — a runtime's unmounted bind mount, which the
/// reference fails on —, or no such interface): DEL is best effort and idempotent.
pub fn delete_in(netns_path: &str, ifname: &str) -> Result<bool, CniError> {
    if netns_path.is_empty() || !std::path::Path::new(netns_path).exists() {
        return Ok(false);
    }
    let Ok(netns) = NetNs::open(netns_path) else {
        return Ok(false);
    };
    let ifname = ifname.to_owned();
    match netns.run(move || -> Result<bool, CniError> {
        let mut r = Rtnl::open().map_err(|e| plugin("rtnetlink in the container", e))?;
        match r.link_by_name(&ifname) {
            Ok(Some(link)) => r
                .del_link(link.index)
                .map(|()| true)
                .map_err(|e| plugin(&format!("deleting {ifname} in the container"), e)),
            _ => Ok(false),
        }
    }) {
        Ok(deleted) => deleted,
        // setns refuses what is not a network namespace (EINVAL): nothing of ours is there.
        Err(NetNsError::Enter { source, .. })
            if source.kind() == std::io::ErrorKind::InvalidInput =>
        {
            Ok(false)
        }
        Err(e) => Err(plugin("entering the container's namespace", e)),
    }
}
