//! The CNI result types (CNI spec, section 5 "Result Types"; libcni `pkg/types/100`), typed:
//! what an IPAM plugin returns, what a `prevResult` carries, and what ADD prints.
//!
//! The 1.x shape is the model; 0.3.x and 0.4.0 differ only by a `version` (`"4"`/`"6"`) on
//! each IP configuration, which [`CniResult::in_version`] adds. 0.1.0/0.2.0 (`ip4`/`ip6`
//! objects) are not supported (see the README).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address with its prefix length, written `ADDRESS/PREFIX` (`192.0.2.5/24`), as CNI
/// results carry `address` and `dst` (Go's `net.IPNet` form; the host bits are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an address"))?;
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|&p| p <= if addr.is_ipv4() { 32 } else { 128 })
            .ok_or_else(|| format!("{p:?} is not a prefix length for {addr}"))?;
        Ok(Cidr { addr, prefix_len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An interface of a result (`interfaces[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The container's namespace path (`CNI_NETNS`); empty for a host interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An IP configuration of a result (`ips[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// 0.3.x/0.4.0 only: `"4"` or `"6"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A route of a result (`routes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: Cidr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// The route's metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// `RT_SCOPE_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

/// DNS settings (`dns`), of a configuration or of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self == &Dns::default()
    }
}

/// A whole result: ADD's output, an IPAM plugin's, a `prevResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// This result as a configuration of `version` prints it: the version set, and each IP
    /// configuration's `version` field present for 0.3.x/0.4.0 and absent for 1.x.
    pub fn in_version(mut self, version: &str) -> CniResult {
        let old = version.starts_with("0.");
        for ip in &mut self.ips {
            ip.version = old.then(|| if ip.address.addr.is_ipv4() { "4" } else { "6" }.into());
        }
        self.cni_version = version.to_owned();
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn a_host_local_result_parses_and_prints_back_in_each_version() {
        let raw = json!({
            "cniVersion": "0.4.0",
            "ips": [
                {"version": "4", "address": "192.0.2.5/24", "gateway": "192.0.2.254"},
                {"version": "6", "address": "2001:db8::5/64"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "2001:db8:1::/48", "gw": "2001:db8::1", "priority": 10}],
            "dns": {"nameservers": ["192.0.2.53"]}
        });
        let r: CniResult = serde_json::from_value(raw).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "192.0.2.5/24");
        assert_eq!(r.routes[1].priority, Some(10));
        let v1 = serde_json::to_value(r.clone().in_version("1.1.0")).unwrap();
        assert_eq!(v1["cniVersion"], "1.1.0");
        assert!(v1["ips"][0].get("version").is_none(), "{v1}");
        assert_eq!(v1["routes"][0], json!({"dst": "0.0.0.0/0"}));
        let v0 = serde_json::to_value(r.in_version("0.3.1")).unwrap();
        assert_eq!(v0["ips"][1]["version"], "6");
        assert_eq!(v0["dns"]["nameservers"][0], "192.0.2.53");
    }

    #[test]
    fn bad_cidrs_are_refused_with_the_reason() {
        for (s, why) in [
            ("192.0.2.5", "not ADDRESS/PREFIX"),
            ("192.0.2.5/33", "not a prefix length"),
            ("2001:db8::/129", "not a prefix length"),
            ("nothing/24", "not an address"),
        ] {
            let e = s.parse::<Cidr>().unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
        assert_eq!(
            "2001:db8::1/128".parse::<Cidr>().unwrap().to_string(),
            "2001:db8::1/128"
        );
    }
}
