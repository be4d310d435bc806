//! The JSON of netavark's plugin API: the subset of netavark's own types
//! (`src/network/types.rs`, `src/plugin.rs`, as of netavark 2.x) that `create`, `setup`,
//! `teardown` and `info` carry, field for field and with netavark's field names.
//!
//! As netavark does: an `Option` field may be missing or `null` on input, every other field is
//! required; the [`Network`] omits its `None` fields on output (netavark's
//! `skip_serializing_none`), the status block writes them as `null`. Maps are `BTreeMap`s (the
//! same JSON, in a stable order).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// netavark's `Network`: one network's configuration, as `podman network create` stores it
/// (`create` gets and returns it; `setup` and `teardown` get it inside [`NetworkPluginExec`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// Creation time (RFC 3339), set by netavark/podman; kept as the text it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Set up DNS (aardvark-dns) for this network.
    pub dns_enabled: bool,
    /// The driver: this plugin's file name (`ipvlan-rs-netavark`).
    pub driver: String,
    /// The network's ID (64 hex digits).
    pub id: String,
    /// No route out of the network (no default route in containers).
    pub internal: bool,
    /// The network has at least one IPv6 subnet.
    pub ipv6_enabled: bool,
    /// The network's name.
    pub name: String,
    /// The interface on the host: for this plugin, the ipvlan master (`parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<String>,
    /// Driver options (`podman network create -o KEY=VALUE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    /// IPAM options; `driver` is `host-local` (podman allocates), `none` or `dhcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_options: Option<BTreeMap<String, String>>,
    /// The network's subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<Subnet>>,
    /// Static routes for the containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// DNS servers for aardvark-dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_dns_servers: Option<Vec<IpAddr>>,
    /// User labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// netavark's `Subnet`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subnet {
    /// The gateway, the containers' default route when the network is not internal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The range podman allocates from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_range: Option<LeaseRange>,
    /// The subnet in CIDR form (`192.0.2.0/24`).
    pub subnet: IpNet,
}

/// netavark's `LeaseRange` (addresses as text, as netavark keeps them).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseRange {
    pub end_ip: Option<String>,
    pub start_ip: Option<String>,
}

/// netavark's `Route`: a static route of the network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Route {
    /// Next hop (required for unicast routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Destination in CIDR form.
    pub destination: IpNet,
    /// Route metric.
    #[serde(default)]
    pub metric: Option<u32>,
    /// `unicast` (the default), `blackhole`, `unreachable` or `prohibit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_type: Option<String>,
}

/// netavark's `PortMapping` (ipvlan has no port forwarding: carried, never honoured).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
    pub protocol: String,
    pub range: u16,
}

/// netavark's `PerNetworkOptions`: what one container asks of one network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PerNetworkOptions {
    /// DNS names of the container (DNS is not served on this network).
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// The interface's name in the container (`eth0`).
    pub interface_name: String,
    /// The container's addresses, allocated by podman from the network's subnets.
    #[serde(default)]
    pub static_ips: Option<Vec<IpAddr>>,
    /// A MAC address for the interface (not possible on ipvlan: slaves share the master's).
    #[serde(default)]
    pub static_mac: Option<String>,
    /// Driver options of this attachment.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

/// netavark's `NetworkPluginExec`: `setup`'s and `teardown`'s input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkPluginExec {
    pub container_id: String,
    pub container_name: String,
    #[serde(default)]
    pub port_mappings: Option<Vec<PortMapping>>,
    pub network: Network,
    pub network_options: PerNetworkOptions,
}

/// netavark's `StatusBlock`: `setup`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusBlock {
    pub dns_search_domains: Option<Vec<String>>,
    pub dns_server_ips: Option<Vec<IpAddr>>,
    /// Interface name in the container → its MAC and addresses.
    pub interfaces: Option<BTreeMap<String, NetInterface>>,
}

/// netavark's `NetInterface`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetInterface {
    /// `aa:bb:cc:dd:ee:ff`.
    pub mac_address: String,
    pub subnets: Option<Vec<NetAddress>>,
}

/// netavark's `NetAddress`: the container's address with its subnet's prefix length.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetAddress {
    pub gateway: Option<IpAddr>,
    /// The address (not the network's) with the subnet's prefix length: `192.0.2.10/24`.
    pub ipnet: IpNet,
}

/// netavark's `plugin::Info`: `info`'s answer.
#[derive(Clone, Debug, Serialize)]
pub struct Info {
    /// The plugin's version.
    pub version: String,
    /// The plugin API's version, [`API_VERSION`].
    pub api_version: String,
    /// Extra fields, shown as they are.
    #[serde(flatten)]
    pub extra_info: BTreeMap<String, String>,
}

/// netavark's `plugin::API_VERSION`.
pub const API_VERSION: &str = "1.0.0";

/// netavark's `JsonError`: the answer of a failed subcommand (exit status non-zero).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JsonError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The setup input of netavark's `plugin-API.md`, verbatim.
    const SETUP_EXAMPLE: &str = r#"{
        "container_id": "752947ff91f961eb3cb47ffe9315016979f3ffbec09e4d96a4fae3fb03391697",
        "container_name": "testctr",
        "port_mappings": [ { "container_port": 80, "host_ip": "127.0.0.1", "host_port": 8080,
                             "protocol": "tcp", "range": 1 } ],
        "network": {
            "dns_enabled": false, "driver": "bridge",
            "id": "2f259bab93aaaaa2542ba43ef33eb990d0999ee1b9924b557b7be53c0b7a1bb9",
            "internal": false, "ipv6_enabled": false, "name": "podman",
            "network_interface": "podman0", "options": null,
            "ipam_options": { "driver": "host-local" },
            "subnets": [ { "gateway": "10.88.0.1", "lease_range": null, "subnet": "10.88.0.0/16" } ],
            "network_dns_servers": null
        },
        "network_options": {
            "aliases": [ "752947ff91f9" ], "interface_name": "eth0",
            "static_ips": [ "10.88.0.50" ], "static_mac": "aa:bb:cc:dd:aa:00"
        }
    }"#;

    #[test]
    fn the_apis_setup_example_parses() {
        let x: NetworkPluginExec = serde_json::from_str(SETUP_EXAMPLE).unwrap();
        assert_eq!(x.network_options.interface_name, "eth0");
        assert_eq!(
            x.network_options.static_ips,
            Some(vec!["10.88.0.50".parse().unwrap()])
        );
        let subnets = x.network.subnets.unwrap();
        assert_eq!(subnets[0].subnet, "10.88.0.0/16".parse::<IpNet>().unwrap());
        assert_eq!(subnets[0].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(x.port_mappings.unwrap()[0].host_port, 8080);
    }

    #[test]
    fn a_network_round_trips_without_its_none_fields() {
        let raw = r#"{"name":"n","id":"i","driver":"d","network_interface":"m0",
                      "ipv6_enabled":false,"internal":false,"dns_enabled":false,
                      "created":"2024-01-01T00:00:00.000000000Z",
                      "subnets":[{"subnet":"192.0.2.0/24","gateway":"192.0.2.254"}]}"#;
        let n: Network = serde_json::from_str(raw).unwrap();
        let out = serde_json::to_value(&n).unwrap();
        assert_eq!(out["created"], "2024-01-01T00:00:00.000000000Z");
        assert_eq!(out["subnets"][0]["subnet"], "192.0.2.0/24");
        assert!(out.get("options").is_none() && out.get("routes").is_none());
        assert!(out["subnets"][0].get("lease_range").is_none());
    }

    #[test]
    fn a_missing_required_field_is_an_error() {
        let raw = r#"{"name":"n","id":"i","driver":"d","ipv6_enabled":false,"internal":false}"#;
        let e = serde_json::from_str::<Network>(raw).unwrap_err();
        assert!(e.to_string().contains("dns_enabled"), "{e}");
    }

    #[test]
    fn info_flattens_its_extra_fields() {
        let info = Info {
            version: "0.1.0".into(),
            api_version: API_VERSION.into(),
            extra_info: BTreeMap::from([("description".into(), "d".into())]),
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"version":"0.1.0","api_version":"1.0.0","description":"d"}"#
        );
    }
}
