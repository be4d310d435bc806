//! The network configuration and the runtime's environment variables.

use ipvlan::proto::Mode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{CniError, Code};

pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The reference ipvlan plugin's fields, and `socket` (ours).
#[derive(Debug, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub master: Option<String>,
    pub mode: Option<String>,
    pub mtu: Option<u32>,
    #[serde(rename = "linkInContainer", default)]
    pub link_in_container: bool,
    pub ipam: Option<Value>,
    #[serde(rename = "prevResult")]
    pub prev_result: Option<Value>,
    /// The ipvlan-rs daemon's control socket.
    pub socket: Option<String>,
}

impl NetConf {
    pub fn parse(raw: &[u8]) -> Result<NetConf, CniError> {
        let conf: NetConf = serde_json::from_slice(raw).map_err(|e| {
            CniError::new(
                Code::Decoding,
                format!("cannot decode the network configuration: {e}"),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!("cniVersion {} is not supported", conf.cni_version),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        match conf.mode.as_deref() {
            None | Some("l2" | "l3" | "l3s") => {}
            Some(m) => {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("unknown ipvlan mode {m:?}: must be l2, l3 or l3s"),
                ))
            }
        }
        if conf.link_in_container {
            return Err(CniError::new(
                Code::InvalidConfig,
                "linkInContainer is not supported: the ipvlan-rs daemon serves masters in its own namespace",
            ));
        }
        if conf.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "mtu must be between 68 and 65535",
            ));
        }
        if let Some(t) = conf.ipam.as_ref().map(|i| i["type"].clone()) {
            if !t.is_string() {
                return Err(CniError::new(Code::InvalidConfig, "ipam needs a \"type\""));
            }
        }
        Ok(conf)
    }

    /// The configured mode (validated by `parse`); the reference plugin's default is l2.
    pub fn mode(&self) -> Mode {
        self.mode
            .as_deref()
            .and_then(|m| m.parse().ok())
            .unwrap_or(Mode::L2)
    }
}

/// The CNI_* variables.
#[derive(Debug)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub path: String,
}

fn var(name: &str) -> Result<String, CniError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CniError::new(Code::InvalidEnv, format!("{name} is not set")))
}

impl Env {
    pub fn from_process() -> Result<Env, CniError> {
        let env = Env {
            container_id: var("CNI_CONTAINERID")?,
            netns: std::env::var("CNI_NETNS").unwrap_or_default(),
            ifname: var("CNI_IFNAME")?,
            path: std::env::var("CNI_PATH").unwrap_or_default(),
        };
        if env.ifname.len() > 15 || env.ifname.contains('/') {
            return Err(CniError::new(
                Code::InvalidEnv,
                format!("CNI_IFNAME {:?} is not a valid interface name", env.ifname),
            ));
        }
        Ok(env)
    }

    /// The container's namespace (required for ADD and CHECK).
    pub fn netns(&self) -> Result<ipvlan_linux::NetNs, CniError> {
        if self.netns.is_empty() {
            return Err(CniError::new(Code::InvalidEnv, "CNI_NETNS is not set"));
        }
        ipvlan_linux::NetNs::open(&self.netns).map_err(|e| {
            CniError::new(
                Code::InvalidEnv,
                format!("cannot open CNI_NETNS {}: {e}", self.netns),
            )
        })
    }

    /// The slave's name in the daemon's namespace before the move: derived from the container
    /// and interface, so DEL finds it without state of its own.
    pub fn slave_name(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
        for b in self
            .container_id
            .bytes()
            .chain([0])
            .chain(self.ifname.bytes())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("ipr{:010x}", h & 0xff_ffff_ffff)
    }
}

/// The ADD result in the configuration's CNI version.
pub fn result(conf: &NetConf, env: &Env, mac: &str, ipam: Option<&Value>) -> Value {
    let old = conf.cni_version.starts_with("0.");
    let ips: Vec<Value> = ipam
        .and_then(|r| r["ips"].as_array())
        .map(|ips| {
            ips.iter()
                .map(|ip| {
                    let mut v = json!({ "address": ip["address"], "interface": 0 });
                    if !ip["gateway"].is_null() {
                        v["gateway"] = ip["gateway"].clone();
                    }
                    if old {
                        let addr = ip["address"].as_str().unwrap_or("");
                        v["version"] = json!(if addr.contains(':') { "6" } else { "4" });
                    }
                    v
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [{ "name": env.ifname, "mac": mac, "sandbox": env.netns }],
        "ips": ips,
    });
    if let Some(r) = ipam {
        if r["routes"].is_array() {
            out["routes"] = r["routes"].clone();
        }
        if r["dns"].is_object() {
            out["dns"] = r["dns"].clone();
        }
    }
    out
}
