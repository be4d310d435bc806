//! `create`, `setup` and `teardown`: the network checked against the host, the slave made by
//! the daemon and configured in the container, and removed again.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use ipvlan::client;
use ipvlan::proto::{Attachment, ErrorKind, LinkAdd, LinkDel, Request, Response};
use ipvlan_cni::error::{CniError, Code};
use ipvlan_cni::result::{Cidr, CniResult, IpConfig, Route as CniRoute};
use ipvlan_cni::{daemon, netcfg};
use ipvlan_linux::rtnl::Rtnl;
use ipvlan_linux::NetNs;

use crate::opts::{default_socket, Opts};
use crate::types::{NetAddress, NetInterface, Network, NetworkPluginExec, StatusBlock};

fn cni(e: CniError) -> anyhow::Error {
    anyhow!(e.msg)
}

/// The IPAM drivers podman may name: `host-local` (podman allocates, the addresses arrive in
/// `static_ips`; also when none is named) and `none` (no addresses).
fn ipam_driver(network: &Network) -> Result<&str> {
    match network
        .ipam_options
        .as_ref()
        .and_then(|o| o.get("driver"))
        .map(String::as_str)
    {
        None | Some("host-local") => Ok("host-local"),
        Some("none") => Ok("none"),
        Some(other) => bail!(
            "IPAM driver {other:?} is not supported: podman allocates the addresses (host-local), or there are none (none)"
        ),
    }
}

/// The master: the `parent` option, else `network_interface`; an error when both are given and
/// differ.
fn named_parent(o: &Opts, network: &Network) -> Result<Option<String>> {
    let iface = network
        .network_interface
        .as_deref()
        .filter(|n| !n.is_empty());
    match (o.parent.as_deref(), iface) {
        (Some(p), Some(n)) if p != n => {
            bail!("option parent={p} and the network interface {n} disagree")
        }
        (Some(p), _) | (None, Some(p)) => Ok(Some(p.to_owned())),
        (None, None) => Ok(None),
    }
}

/// The master in namespace `home`: the named one (which must exist there), else the device of
/// the default route (as the CNI plugin and the reference ipvlan plugin take it).
/// `home_is` says which namespace `home` is, for the errors.
fn parent_in(o: &Opts, network: &Network, home: &NetNs, home_is: &str) -> Result<String> {
    match named_parent(o, network)? {
        Some(p) => {
            let mut r = Rtnl::open_in(home).context("rtnetlink in the daemon's namespace")?;
            match r.link_by_name(&p).context("looking up the parent")? {
                Some(_) => Ok(p),
                None => {
                    bail!("parent interface {p} does not exist in {home_is}")
                }
            }
        }
        None => netcfg::default_route_device(home).map_err(|e| {
            anyhow!(
                "no parent given (-o parent=IFACE): {}",
                e.msg.replace("no \"master\" given and ", "")
            )
        }),
    }
}

/// `create`: validates the options, the IPAM driver (with `host-local`, podman allocates from
/// the subnets: at least one is needed) and the parent (in the daemon's namespace, or this one
/// while the daemon is not running) and returns the network with its defaults:
/// `network_interface` the parent, `options.mode` the mode, `dns_enabled` false (this driver
/// serves no DNS). Name, ID and driver are returned unchanged, as the API demands.
pub fn create(mut network: Network) -> Result<Network> {
    let o = Opts::parse(network.options.as_ref())?;
    if ipam_driver(&network)? == "host-local" && network.subnets.as_ref().is_none_or(Vec::is_empty)
    {
        bail!("a subnet is needed (--subnet), or no addresses at all (--ipam-driver none)");
    }
    if network
        .network_dns_servers
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        bail!("network DNS servers are not supported: ipvlan-rs networks serve no DNS");
    }
    let (home, home_is) = match netcfg::daemon_netns(&o.socket()) {
        Ok(ns) => (ns, "the ipvlan daemon's namespace".to_owned()),
        Err(e) if e.code == Code::TryAgainLater => (
            NetNs::current().context("opening this process's namespace")?,
            format!("this namespace (checked here because {})", e.msg),
        ),
        Err(e) => return Err(cni(e)),
    };
    let parent = parent_in(&o, &network, &home, &home_is)?;
    network.network_interface = Some(parent);
    network
        .options
        .get_or_insert_with(BTreeMap::new)
        .entry("mode".to_owned())
        .or_insert_with(|| o.mode.to_string());
    network.dns_enabled = false;
    Ok(network)
}

/// The container's addresses: each of `static_ips` with the prefix length of the subnet it
/// belongs to, and that subnet's gateway (none on an internal network). As netavark's
/// `get_ipam_addresses`: an address in no subnet is an error; so are missing `static_ips` with
/// IPAM `host-local`.
fn addresses(x: &NetworkPluginExec) -> Result<Vec<NetAddress>> {
    if ipam_driver(&x.network)? == "none" {
        return Ok(Vec::new());
    }
    let subnets = x.network.subnets.as_deref().unwrap_or_default();
    let ips = match &x.network_options.static_ips {
        Some(ips) => ips,
        None if subnets.is_empty() => return Ok(Vec::new()),
        None => bail!("no static ips provided"),
    };
    ips.iter()
        .map(|ip| {
            let s = subnets
                .iter()
                .find(|s| s.subnet.contains(ip))
                .ok_or_else(|| anyhow!("address {ip} is in none of the network's subnets"))?;
            Ok(NetAddress {
                gateway: s.gateway.filter(|_| !x.network.internal),
                ipnet: IpNet::new(*ip, s.subnet.prefix_len())?,
            })
        })
        .collect()
}

/// `configure`'s input, as a CNI IPAM result: the addresses with their gateways, a default
/// route through the first gateway of each family (unless `no_default_route` or the network
/// is internal), and the network's static routes (unicast only).
fn ipam_result(x: &NetworkPluginExec, o: &Opts, addrs: &[NetAddress]) -> Result<CniResult> {
    let cidr = |n: &IpNet| Cidr {
        addr: n.addr(),
        prefix_len: n.prefix_len(),
    };
    let route = |dst: Cidr, gw: Option<IpAddr>| CniRoute {
        dst,
        gw,
        mtu: None,
        advmss: None,
        priority: None,
        table: None,
        scope: None,
    };
    let ips = addrs
        .iter()
        .map(|a| IpConfig {
            address: cidr(&a.ipnet),
            gateway: a.gateway,
            interface: None,
            version: None,
        })
        .collect();
    let mut routes = Vec::new();
    if !o.no_default_route && !x.network.internal {
        for v4 in [true, false] {
            let addr: IpAddr = if v4 {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            if let Some(gw) = addrs
                .iter()
                .filter_map(|a| a.gateway)
                .find(|g| g.is_ipv4() == v4)
            {
                routes.push(route(
                    Cidr {
                        addr,
                        prefix_len: 0,
                    },
                    Some(gw),
                ));
            }
        }
    }
    for r in x.network.routes.iter().flatten() {
        if r.route_type.as_deref().is_some_and(|t| t != "unicast") {
            bail!(
                "route to {}: route type {:?} is not supported (unicast only)",
                r.destination,
                r.route_type.as_deref().unwrap_or_default()
            );
        }
        routes.push(route(cidr(&r.destination), r.gateway));
    }
    Ok(CniResult {
        ips,
        routes,
        ..CniResult::default()
    })
}

/// The slave's name in the daemon's namespace before the move: derived from the container and
/// the interface exactly as the CNI plugin derives it, so `teardown` finds it without state.
fn slave_name(x: &NetworkPluginExec) -> String {
    ipvlan_cni::conf::slave_name(&x.container_id, &x.network_options.interface_name)
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("no container interface name given");
    }
    if name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
        bail!("{name:?} is not a valid interface name");
    }
    Ok(())
}

/// `setup NETNS`: asks the daemon for a slave of the parent (under a temporary name, with the
/// container's attachment), moves it into `netns`, names it `interface_name`, adds the
/// addresses and routes, waits until the daemon serves the addresses, and answers the status
/// block. Anything made is removed again on failure.
pub fn setup(netns: &str, x: &NetworkPluginExec) -> Result<StatusBlock> {
    let o = Opts::parse(x.network.options.as_ref())?;
    let ifname = &x.network_options.interface_name;
    check_ifname(ifname)?;
    if x.network_options.static_mac.is_some() {
        bail!("a static MAC address is not possible on ipvlan: slaves share their master's");
    }
    if x.port_mappings.as_ref().is_some_and(|p| !p.is_empty()) {
        bail!("port mappings are not supported on ipvlan-rs networks");
    }
    let addrs = addresses(x)?;
    let ipam = ipam_result(x, &o, &addrs)?;
    let ns = NetNs::open(netns).with_context(|| format!("opening the namespace {netns}"))?;
    let socket = o.socket();
    let home = netcfg::daemon_netns(&socket).map_err(cni)?;
    let master = parent_in(&o, &x.network, &home, "the ipvlan daemon's namespace")?;
    let temp = slave_name(x);
    let req = Request::LinkAdd(LinkAdd {
        master: master.clone(),
        name: temp.clone(),
        mode: Some(o.mode),
        flag: o.flag,
        mtu: o.mtu,
        spoofchk: o.spoofchk,
        hostreach: o.hostreach,
        backend: o.backend,
        tap_owner: None,
        attachment: Some(Attachment {
            network: x.network.name.clone(),
            container_id: x.container_id.clone(),
            ifname: ifname.clone(),
        }),
    });
    if let Response::Error { message, .. } = client::call(&socket, &req)? {
        bail!("creating the ipvlan slave on {master}: {message}");
    }
    let made = netcfg::move_into(&temp, &home, &ns)
        .and_then(|()| netcfg::configure(&ns, &temp, ifname, &ipam.ips, &ipam.routes))
        .and_then(|mac| {
            let want: Vec<IpAddr> = addrs.iter().map(|a| a.ipnet.addr()).collect();
            daemon::wait_served(&socket, &temp, &want).map(|()| mac)
        });
    let mac = match made {
        Ok(mac) => mac,
        Err(e) => {
            let _ = client::call(&socket, &Request::LinkDel(LinkDel { name: temp }));
            return Err(cni(e));
        }
    };
    Ok(StatusBlock {
        dns_search_domains: Some(Vec::new()),
        dns_server_ips: Some(Vec::new()),
        interfaces: Some(BTreeMap::from([(
            ifname.clone(),
            NetInterface {
                mac_address: mac,
                subnets: Some(addrs),
            },
        )])),
    })
}

/// `teardown NETNS`: asks the daemon to delete the slave (already gone is fine). With the
/// daemon unreachable, best effort as CNI DEL: deletes `interface_name` in `netns` itself (a
/// namespace or interface already gone is fine) and succeeds. Options are not validated: a
/// network is torn down whatever it holds.
pub fn teardown(netns: &str, x: &NetworkPluginExec) -> Result<()> {
    let socket = x
        .network
        .options
        .as_ref()
        .and_then(|o| o.get("socket"))
        .filter(|s| !s.is_empty())
        .map(Into::into)
        .unwrap_or_else(default_socket);
    let temp = slave_name(x);
    match client::call(&socket, &Request::LinkDel(LinkDel { name: temp.clone() })) {
        Ok(Response::Ok { .. })
        | Ok(Response::Error {
            kind: ErrorKind::NotFound,
            ..
        }) => Ok(()),
        Ok(Response::Error { message, .. }) => bail!("deleting the ipvlan slave {temp}: {message}"),
        Err(e) => {
            let ifname = &x.network_options.interface_name;
            eprintln!("ipvlan-rs-netavark: {e:#}; deleting {ifname} in {netns} instead");
            if let Err(e) = netcfg::delete_in(netns, ifname) {
                eprintln!("ipvlan-rs-netavark: {e}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn exec(network: serde_json::Value, opts: serde_json::Value) -> NetworkPluginExec {
        serde_json::from_value(json!({
            "container_id": "c0ffee", "container_name": "ctr",
            "network": network, "network_options": opts,
        }))
        .unwrap()
    }

    fn net(extra: serde_json::Value) -> serde_json::Value {
        let mut n = json!({
            "name": "n", "id": "i", "driver": "ipvlan-rs-netavark", "dns_enabled": false,
            "internal": false, "ipv6_enabled": true, "network_interface": "m0",
            "ipam_options": { "driver": "host-local" },
            "subnets": [ { "subnet": "192.0.2.0/24", "gateway": "192.0.2.254" },
                         { "subnet": "2001:db8:1::/64", "gateway": "2001:db8:1::fe" } ],
        });
        for (k, v) in extra.as_object().unwrap() {
            n[k] = v.clone();
        }
        n
    }

    #[test]
    fn addresses_take_their_subnets_prefix_and_gateway() {
        let x = exec(
            net(json!({})),
            json!({ "interface_name": "eth0", "static_ips": ["192.0.2.10", "2001:db8:1::10"] }),
        );
        let a = addresses(&x).unwrap();
        assert_eq!(a[0].ipnet.to_string(), "192.0.2.10/24");
        assert_eq!(a[0].gateway, Some("192.0.2.254".parse().unwrap()));
        assert_eq!(a[1].ipnet.to_string(), "2001:db8:1::10/64");
        let r = serde_json::to_value(ipam_result(&x, &Opts::parse(None).unwrap(), &a).unwrap())
            .unwrap();
        assert_eq!(
            r["routes"],
            json!([{ "dst": "0.0.0.0/0", "gw": "192.0.2.254" },
                   { "dst": "::/0", "gw": "2001:db8:1::fe" }])
        );
        assert_eq!(r["ips"][1]["address"], "2001:db8:1::10/64");
    }

    #[test]
    fn internal_networks_and_no_default_route_have_no_default_route() {
        let x = exec(
            net(json!({ "internal": true,
                        "routes": [ { "destination": "198.51.100.0/24", "gateway": "192.0.2.1" } ] })),
            json!({ "interface_name": "eth0", "static_ips": ["192.0.2.10"] }),
        );
        let a = addresses(&x).unwrap();
        assert_eq!(a[0].gateway, None);
        let r = serde_json::to_value(ipam_result(&x, &Opts::parse(None).unwrap(), &a).unwrap())
            .unwrap();
        assert_eq!(
            r["routes"],
            json!([{ "dst": "198.51.100.0/24", "gw": "192.0.2.1" }])
        );
        let x = exec(
            net(json!({ "options": { "no_default_route": "true" } })),
            json!({ "interface_name": "eth0", "static_ips": ["192.0.2.10"] }),
        );
        let o = Opts::parse(x.network.options.as_ref()).unwrap();
        let r =
            serde_json::to_value(ipam_result(&x, &o, &addresses(&x).unwrap()).unwrap()).unwrap();
        assert!(r.get("routes").is_none(), "{r}");
    }

    #[test]
    fn address_errors() {
        let x = exec(
            net(json!({})),
            json!({ "interface_name": "eth0", "static_ips": ["203.0.113.1"] }),
        );
        let e = addresses(&x).unwrap_err().to_string();
        assert!(e.contains("203.0.113.1 is in none"), "{e}");
        let x = exec(net(json!({})), json!({ "interface_name": "eth0" }));
        assert!(addresses(&x).is_err());
        let x = exec(
            net(json!({ "ipam_options": { "driver": "dhcp" } })),
            json!({ "interface_name": "eth0", "static_ips": ["192.0.2.10"] }),
        );
        let e = addresses(&x).unwrap_err().to_string();
        assert!(e.contains("\"dhcp\" is not supported"), "{e}");
        let x = exec(
            net(json!({ "ipam_options": { "driver": "none" } })),
            json!({ "interface_name": "eth0", "static_ips": ["192.0.2.10"] }),
        );
        assert!(addresses(&x).unwrap().is_empty());
    }

    #[test]
    fn the_parent_is_named_once() {
        let n: Network = serde_json::from_value(net(json!({}))).unwrap();
        let parse = |kv: &[(&str, &str)]| {
            let m: BTreeMap<String, String> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Opts::parse(Some(&m)).unwrap()
        };
        assert_eq!(
            named_parent(&parse(&[]), &n).unwrap().as_deref(),
            Some("m0")
        );
        assert_eq!(
            named_parent(&parse(&[("parent", "m0")]), &n)
                .unwrap()
                .as_deref(),
            Some("m0")
        );
        let e = named_parent(&parse(&[("parent", "m1")]), &n).unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
    }

    #[test]
    fn the_slave_name_is_the_cni_plugins() {
        let x = exec(net(json!({})), json!({ "interface_name": "eth0" }));
        assert_eq!(
            slave_name(&x),
            ipvlan_cni::conf::slave_name("c0ffee", "eth0")
        );
        assert!(slave_name(&x).len() <= 15);
    }
}
