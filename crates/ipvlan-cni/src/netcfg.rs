//! What happens inside the container's namespace: the move, the name, addresses, routes — and
//! CHECK's verification of them.

use std::net::IpAddr;

use ipvlan_linux::rtnl::{IpFamily, LinkChange, Rtnl};
use ipvlan_linux::NetNs;
use serde_json::Value;

use crate::error::{CniError, Code};

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
            "no \"master\" given and no default route to take it from",
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

pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok()?))
}

/// Inside `netns`: renames `temp` to `ifname`, brings it up, adds the IPAM addresses and
/// routes. Returns the interface's MAC.
pub fn configure(
    netns: &NetNs,
    temp: &str,
    ifname: &str,
    ipam: Option<&Value>,
) -> Result<String, CniError> {
    let (temp, ifname) = (temp.to_owned(), ifname.to_owned());
    let ipam = ipam.cloned();
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
                r.rename(link.index, &ifname)
                    .map_err(|e| plugin(&format!("renaming the slave to {ifname}"), e))?;
            }
            r.set_link(
                link.index,
                &LinkChange {
                    up: Some(true),
                    ..LinkChange::default()
                },
            )
            .map_err(|e| plugin("bringing the slave up", e))?;
            let ips = ipam
                .as_ref()
                .and_then(|v| v["ips"].as_array().cloned())
                .unwrap_or_default();
            let mut gateways = Vec::new();
            for ip in &ips {
                let (addr, plen) =
                    ip["address"].as_str().and_then(parse_cidr).ok_or_else(|| {
                        CniError::new(
                            Code::Plugin,
                            format!("IPAM returned a bad address {}", ip["address"]),
                        )
                    })?;
                r.add_address(link.index, addr, plen, addr.is_ipv6())
                    .map_err(|e| plugin(&format!("adding {addr}/{plen}"), e))?;
                if let Some(gw) = ip["gateway"]
                    .as_str()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                {
                    gateways.push(gw);
                }
            }
            let routes = ipam
                .as_ref()
                .and_then(|v| v["routes"].as_array().cloned())
                .unwrap_or_default();
            for route in &routes {
                let Some((dst, plen)) = route["dst"].as_str().and_then(parse_cidr) else {
                    continue;
                };
                let gw = route["gw"]
                    .as_str()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .or_else(|| {
                        gateways
                            .iter()
                            .copied()
                            .find(|g| g.is_ipv4() == dst.is_ipv4())
                    });
                r.add_route(dst, plen, gw, link.index)
                    .map_err(|e| plugin(&format!("adding the route to {dst}/{plen}"), e))?;
            }
            Ok(link.mac.map(|m| m.to_string()).unwrap_or_default())
        })
        .map_err(|e| plugin("entering the container's namespace", e))?
}

/// CHECK: the interface exists in the container with every address of `prev`.
pub fn verify(netns: &NetNs, ifname: &str, prev: &Value) -> Result<(), CniError> {
    let ifname = ifname.to_owned();
    let want: Vec<(IpAddr, u8)> = prev["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().and_then(parse_cidr))
                .collect()
        })
        .unwrap_or_default();
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
            let have = r
                .addresses(Some(link.index))
                .map_err(|e| plugin("reading addresses", e))?;
            for (addr, plen) in want {
                if !have.iter().any(|a| a.addr == addr && a.prefix_len == plen) {
                    return Err(CniError::new(
                        Code::Plugin,
                        format!("address {addr}/{plen} is missing on {ifname}"),
                    ));
                }
            }
            Ok(())
        })
        .map_err(|e| plugin("entering the container's namespace", e))?
}

/// Returns once the daemon listening on `socket` serves every address of `want` on its slave
/// `name` (lists it in `link show` as the slave's, which it does only once its netfilter state
/// is in place), so that the container's first packet is not lost. Errors: the daemon
/// unreachable (`TryAgainLater`) or refusing (`Plugin`), or after `timeout` an error naming
/// the addresses still missing (another slave owning one, say). The netavark plugin's wait;
/// the CNI plugin's `wait_served` is the same loop over an IPAM result.
pub fn wait_served(
    socket: &std::path::Path,
    name: &str,
    want: &[IpAddr],
    timeout: std::time::Duration,
) -> Result<(), CniError> {
    use ipvlan::proto::{LinkShow, Request, Response};
    if want.is_empty() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + timeout;
    let show = Request::LinkShow(LinkShow {
        name: Some(name.to_owned()),
    });
    loop {
        let served: Vec<IpAddr> = match ipvlan::client::call(socket, &show)
            .map_err(|e| CniError::new(Code::TryAgainLater, format!("{e:#}")))?
        {
            Response::Ok { links, .. } => links
                .into_iter()
                .flat_map(|l| l.addresses)
                .filter_map(|a| a.parse().ok())
                .collect(),
            Response::Error { message, .. } => return Err(CniError::new(Code::Plugin, message)),
        };
        let missing: Vec<String> = want
            .iter()
            .filter(|a| !served.contains(a))
            .map(IpAddr::to_string)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "the daemon does not serve {} on the new interface after {} s (owned by another slave? see `ipvlan link show`)",
                    missing.join(", "),
                    timeout.as_secs()
                ),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
