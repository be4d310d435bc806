//! The network configuration (CNI spec, section 1 "Plugin configuration objects") and the
//! runtime's `CNI_*` parameters (section 2 "Parameters"), validated as libcni's `skel` and
//! `pkg/utils` validate them, so that a runtime gets the same error codes from this plugin as
//! from the reference ones.

use std::collections::BTreeMap;

use ipvlan::proto::{BackendKind, Flag, Mode};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};
use crate::result::{CniResult, Dns};

/// The CNI versions this plugin speaks. 0.1.0/0.2.0 (results with `ip4`/`ip6` objects) are
/// not among them: no runtime still supported sends them.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// `MAJOR.MINOR.PATCH` as numbers, for the version gates of CHECK (0.4.0), STATUS and GC
/// (1.1.0); `None` for anything else.
pub fn version_tuple(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let t = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(t)
}

/// One still-valid attachment of a GC request (`cni.dev/valid-attachments`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GcAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The reference ipvlan plugin's fields (`master`, `mode`, `mtu`, `linkInContainer`), the
/// well-known ones (`ipam`, `dns`), the protocol's (`prevResult`,
/// `cni.dev/valid-attachments`), and ipvlan-rs's extensions (`flag`, `spoofchk`, `hostreach`, `socket`,
/// `backend`).
#[derive(Debug, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub master: Option<String>,
    pub mode: Option<String>,
    /// `bridge` (default), `private` or `vepa`: not in the reference plugin.
    pub flag: Option<String>,
    pub mtu: Option<u32>,
    /// The slave's source-address guard: not in the reference plugin.
    pub spoofchk: Option<bool>,
    /// `hostreach`: the master's namespace and the slaves reach each other (the whole port;
    /// `docs/hostreach.md`): not in the reference plugin.
    pub hostreach: Option<bool>,
    #[serde(rename = "linkInContainer", default)]
    pub link_in_container: bool,
    /// The IPAM plugin's own configuration; only `type` is ours to read.
    pub ipam: Option<Value>,
    pub dns: Option<Dns>,
    #[serde(rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// The same list under the name the tagged CNI 1.1.0 spec gives it (`spec-v1.1.0`,
    /// section 2 `GC`; renamed since, and libcni sends both): see [`NetConf::gc_valid`].
    #[serde(rename = "cni.dev/attachments")]
    pub attachments: Option<Vec<GcAttachment>>,
    /// The ipvlan-rs daemon's control socket.
    pub socket: Option<String>,
    /// What the slave's device is made of, `tap` or `veth` (the daemon's `link add … backend`;
    /// default: what the port's data path uses).
    pub backend: Option<String>,
    /// Every other key: reported on stderr as ignored (see [`NetConf::ignored_keys`]).
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Keys a runtime or a configuration may carry that this plugin does not use and need not
/// mention: the protocol's (section 1: `runtimeConfig`, `args`, `capabilities`, any
/// `cni.dev/…`), a configuration list's own (`disableCheck`, `disableGC`, `plugins`…), and
/// `cniVersions`.
const QUIETLY_IGNORED: [&str; 8] = [
    "runtimeConfig",
    "args",
    "capabilities",
    "cniVersions",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
    "plugins",
];

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`: a valid container id or network name (libcni
/// `pkg/utils.cniValidNameChars`).
fn valid_cni_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl NetConf {
    /// Decodes and validates a configuration: code 6 if it is not the JSON object it should
    /// be, 1 for a version not in [`SUPPORTED_VERSIONS`], 7 for a missing or invalid `name`
    /// or a bad value, 2 for a field this plugin cannot honour (`linkInContainer: true`).
    /// `"mtu": 0` is read as no `mtu`.
    pub fn parse(raw: &[u8]) -> Result<NetConf, CniError> {
        let mut conf: NetConf = serde_json::from_slice(raw).map_err(|e| {
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
        if conf.name.is_empty() {
            return Err(CniError::new(Code::InvalidConfig, "missing network name"));
        }
        if !valid_cni_name(&conf.name) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "invalid characters found in network name",
            )
            .with_details(conf.name.clone()));
        }
        if conf.mode.as_deref().is_some_and(|m| !m.is_empty()) && conf.mode().is_none() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "unknown ipvlan mode {:?}: must be l2, l3 or l3s",
                    conf.mode.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some(f) = &conf.flag {
            if f.parse::<Flag>().is_err() {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("unknown ipvlan flag {f:?}: must be bridge, private or vepa"),
                ));
            }
        }
        if let Some(b) = &conf.backend {
            if BackendKind::parse(b).is_none() {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    format!("unknown backend {b:?}: must be tap or veth"),
                ));
            }
        }
        if conf.link_in_container {
            return Err(CniError::new(
                Code::UnsupportedField,
                "unsupported field linkInContainer=true: the ipvlan-rs daemon serves masters in its own namespace",
            ));
        }
        // `"mtu": 0` is no MTU (the master's), as in the reference plugin, where it is a Go
        // int's zero value and never reaches the kernel.
        if conf.mtu == Some(0) {
            conf.mtu = None;
        }
        if conf.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
            return Err(CniError::new(
                Code::InvalidConfig,
                "mtu must be between 68 and 65535 (R-MTU-2)",
            ));
        }
        if let Some(ipam) = &conf.ipam {
            if !ipam.is_object() || !(ipam["type"].is_string() || ipam["type"].is_null()) {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    "ipam must be an object whose \"type\" names the IPAM plugin",
                ));
            }
        }
        Ok(conf)
    }

    /// The configured mode; the reference plugin's default (no `mode`, or `""`) is l2.
    /// `None` for an unknown mode (refused by [`NetConf::parse`]).
    pub fn mode(&self) -> Option<Mode> {
        match self.mode.as_deref() {
            None | Some("") => Some(Mode::L2),
            Some(m) => m.parse().ok(),
        }
    }

    /// The configured flag, if any (validated by [`NetConf::parse`]).
    pub fn flag(&self) -> Option<Flag> {
        self.flag.as_deref().and_then(|f| f.parse().ok())
    }

    /// The configured backend, if any (validated by [`NetConf::parse`]).
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend.as_deref().and_then(BackendKind::parse)
    }

    /// The IPAM plugin to delegate to: `ipam.type`, if present and not empty (an `ipam`
    /// without a type means none, as in the reference plugin).
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .and_then(|i| i["type"].as_str())
            .filter(|t| !t.is_empty())
    }

    /// The `prevResult`, typed; code 6 if it is not a result.
    pub fn prev(&self) -> Result<Option<CniResult>, CniError> {
        self.prev_result
            .as_ref()
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    CniError::new(Code::Decoding, format!("could not parse prevResult: {e}"))
                })
            })
            .transpose()
    }

    /// The configuration's keys this plugin ignores and a user may have meant something by
    /// (a misspelt `mode`, `ipMasq`): the caller reports them on stderr. Unknown keys are not
    /// an error (the spec allows one, section 1 "Other keys"), because the reference plugin
    /// ignores them too and a configuration that works with it must work here.
    pub fn ignored_keys(&self) -> Vec<&str> {
        self.other
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with("cni.dev/") && !QUIETLY_IGNORED.contains(k))
            .collect()
    }

    /// GC's still-valid attachments: `cni.dev/valid-attachments`, else `cni.dev/attachments`
    /// (a runtime that follows the tagged 1.1.0 spec sends only that one: reading none would
    /// take every container of the network for stale); neither, or `null` (what libcni sends
    /// for "none"), is none.
    pub fn gc_valid(&self) -> &[GcAttachment] {
        self.valid_attachments
            .as_deref()
            .or(self.attachments.as_deref())
            .unwrap_or_default()
    }

    /// Whether this configuration's version is at least `min` (CHECK needs 0.4.0, STATUS and
    /// GC 1.1.0: libcni `skel` answers code 1 below that).
    pub fn at_least(&self, min: (u32, u32, u32)) -> bool {
        version_tuple(&self.cni_version).is_some_and(|v| v >= min)
    }
}

/// The `CNI_*` parameters of one invocation.
#[derive(Debug, Default)]
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub path: String,
}

/// Which parameters each command requires (libcni `skel.getCmdArgsFromEnv`): `CNI_NETNS`
/// only for ADD and CHECK; container id and interface for ADD, CHECK, DEL; `CNI_PATH` for
/// all.
fn required(command: &str) -> &'static [&'static str] {
    match command {
        "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
        "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
        _ => &["CNI_PATH"],
    }
}

impl Env {
    /// Reads the parameters of `command` through `get` (the process environment in the
    /// plugin), as libcni does: code 4 naming every required one that is missing, code 4
    /// for a container id or interface name with characters the spec does not allow.
    pub fn read(command: &str, get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let val = |n: &str| get(n).unwrap_or_default();
        let missing: Vec<&str> = required(command)
            .iter()
            .copied()
            .filter(|n| val(n).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                Code::InvalidEnv,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let env = Env {
            container_id: val("CNI_CONTAINERID"),
            netns: val("CNI_NETNS"),
            ifname: val("CNI_IFNAME"),
            path: val("CNI_PATH"),
        };
        if matches!(command, "ADD" | "CHECK" | "DEL") {
            if !valid_cni_name(&env.container_id) {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    "invalid characters in CNI_CONTAINERID",
                )
                .with_details(env.container_id.clone()));
            }
            validate_ifname(&env.ifname)?;
        }
        Ok(env)
    }

    /// The container's namespace (ADD, CHECK): code 4 if `CNI_NETNS` cannot be opened or is
    /// not a network namespace (a regular file or a directory opens too; entering it, as
    /// `setns(CLONE_NEWNET)` does, tells), so that ADD fails before the daemon makes a slave.
    pub fn netns(&self) -> Result<ipvlan_linux::NetNs, CniError> {
        let bad = |e: &dyn std::fmt::Display| {
            CniError::new(
                Code::InvalidEnv,
                format!("cannot open CNI_NETNS {}: {e}", self.netns),
            )
        };
        let ns = ipvlan_linux::NetNs::open(&self.netns).map_err(|e| bad(&e))?;
        ns.run(|| ()).map_err(|e| bad(&e))?;
        Ok(ns)
    }

    /// The slave's name in the daemon's namespace before the move: derived from the container
    /// and interface, so DEL finds it without state of its own.
    pub fn slave_name(&self) -> String {
        slave_name(&self.container_id, &self.ifname)
    }
}

/// The daemon-side name of the slave for container `container_id`'s interface `ifname`
/// (`ipr` and 40 bits of an FNV-1a hash of both): what ADD asks the daemon for and DEL
/// deletes, without state of the plugin's own.
pub fn slave_name(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("ipr{:010x}", h & 0xff_ffff_ffff)
}

/// `CNI_IFNAME` as libcni `pkg/utils.ValidateInterfaceName` checks it (the kernel's
/// `dev_valid_name`): not empty, at most 15 bytes, not `.` or `..`, no `/`, `:` or white
/// space; and, beyond libcni, no `%`: the kernel takes such a name for a pattern and picks
/// its own (`net%d` becomes `net0`), so the result would name an interface that is not there.
fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        "interface name is empty"
    } else if name.len() > 15 {
        "interface name is too long"
    } else if name == "." || name == ".." {
        "interface name is . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "interface name contains / or : or whitespace characters"
    } else if name.contains('%') {
        "interface name contains %, which the kernel replaces with a number of its choice"
    } else {
        return Ok(());
    };
    Err(CniError::new(Code::InvalidEnv, format!("CNI_IFNAME: {why}")).with_details(name))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({"cniVersion": "1.1.0", "name": "net-1", "type": "ipvlan-rs"})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = base();
        b[k] = v;
        b
    }

    #[test]
    fn names_and_values_are_checked_as_libcni_checks_them() {
        for (conf, code, needle) in [
            (json!({"cniVersion": "1.1.0"}), 7, "missing network name"),
            (with("name", json!("-lead")), 7, "invalid characters"),
            (with("name", json!("a/b")), 7, "invalid characters"),
            (with("cniVersion", json!("0.2.0")), 1, "not supported"),
            (with("mode", json!("l4")), 7, "unknown ipvlan mode"),
            (with("flag", json!("hairpin")), 7, "unknown ipvlan flag"),
            (with("backend", json!("macvtap")), 7, "unknown backend"),
            (
                with("linkInContainer", json!(true)),
                2,
                "linkInContainer=true",
            ),
            (with("mtu", json!(67)), 7, "between 68 and 65535"),
            (with("mtu", json!(1)), 7, "between 68 and 65535"),
            (with("mtu", json!(-1)), 6, "decode"),
            (
                with("ipam", json!("host-local")),
                7,
                "ipam must be an object",
            ),
            (json!([1]), 6, "decode"),
        ] {
            let e = parse(conf.clone()).unwrap_err();
            assert_eq!(e.code.value(), code, "{conf}: {e:?}");
            assert!(e.msg.contains(needle), "{conf}: {e:?}");
        }
        assert!(parse(with("name", json!("a_b.c-1"))).is_ok());
        // As the reference plugin (a Go int's zero value): 0 is no MTU, the master's.
        assert_eq!(parse(with("mtu", json!(0))).unwrap().mtu, None);
        assert!(parse(with("mode", json!(""))).unwrap().mode() == Some(Mode::L2));
        assert!(parse(with("ipam", json!({})))
            .unwrap()
            .ipam_type()
            .is_none());
        assert_eq!(
            parse(with("flag", json!("vepa"))).unwrap().flag(),
            Some(Flag::Vepa)
        );
    }

    #[test]
    fn unknown_keys_are_reported_but_the_protocols_are_not() {
        let mut c = base();
        c["mdoe"] = json!("l3");
        c["ipMasq"] = json!(true);
        c["runtimeConfig"] = json!({});
        c["cni.dev/valid-attachments"] = json!([]);
        c["args"] = json!({});
        let conf = parse(c).unwrap();
        assert_eq!(conf.ignored_keys(), vec!["ipMasq", "mdoe"]);
    }

    #[test]
    fn environment_is_required_per_command_and_validated() {
        let full: HashMap<&str, &str> = [
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
        .into();
        fn env(m: HashMap<&'static str, &'static str>) -> impl Fn(&str) -> Option<String> {
            move |k| m.get(k).map(|v| v.to_string())
        }
        assert!(Env::read("ADD", env(full.clone())).is_ok());
        let mut no_ns = full.clone();
        no_ns.remove("CNI_NETNS");
        assert!(Env::read("DEL", env(no_ns.clone())).is_ok());
        let e = Env::read("ADD", env(no_ns)).unwrap_err();
        assert_eq!(
            (e.code.value(), e.msg.as_str()),
            (4, "required env variables [CNI_NETNS] missing")
        );
        let e = Env::read("ADD", env(HashMap::new())).unwrap_err();
        assert!(
            e.msg
                .contains("[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH]"),
            "{e:?}"
        );
        assert!(Env::read("STATUS", env([("CNI_PATH", "/x")].into())).is_ok());
        assert!(Env::read("GC", env(HashMap::new())).is_err());
        for (k, v, needle) in [
            (
                "CNI_CONTAINERID",
                "_x",
                "invalid characters in CNI_CONTAINERID",
            ),
            (
                "CNI_CONTAINERID",
                "a b",
                "invalid characters in CNI_CONTAINERID",
            ),
            ("CNI_IFNAME", "a-very-long-name0", "too long"),
            ("CNI_IFNAME", "..", ". or .."),
            ("CNI_IFNAME", "et:h0", "contains / or :"),
            ("CNI_IFNAME", "eth 0", "contains / or :"),
            ("CNI_IFNAME", "eth%d", "contains %"),
        ] {
            let mut m = full.clone();
            m.insert(k, v);
            let e = Env::read("ADD", env(m)).unwrap_err();
            assert_eq!(e.code.value(), 4);
            assert!(e.msg.contains(needle), "{k}={v}: {e:?}");
        }
    }

    #[test]
    fn a_cni_netns_that_is_no_namespace_is_code_4() {
        let file =
            std::env::temp_dir().join(format!("ipvlan-cni-not-a-netns-{}", std::process::id()));
        std::fs::write(&file, "").unwrap();
        for path in [file.to_str().unwrap(), "/", "/nonexistent/netns"] {
            let env = Env {
                netns: path.to_owned(),
                ..Env::default()
            };
            let e = env.netns().unwrap_err();
            assert_eq!(e.code.value(), 4, "{path}: {e:?}");
            assert!(e.msg.contains(&format!("CNI_NETNS {path}")), "{e:?}");
        }
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn gc_takes_either_name_of_the_valid_list() {
        let one = json!([{"containerID": "c1", "ifname": "eth0"}]);
        let two = json!([{"containerID": "c2", "ifname": "eth0"}]);
        let names = |c: &NetConf| -> Vec<String> {
            c.gc_valid()
                .iter()
                .map(|a| a.container_id.clone())
                .collect()
        };
        assert_eq!(
            names(&parse(with("cni.dev/attachments", one.clone())).unwrap()),
            ["c1"]
        );
        let mut both = with("cni.dev/valid-attachments", two);
        both["cni.dev/attachments"] = one;
        assert_eq!(
            names(&parse(both).unwrap()),
            ["c2"],
            "the current name wins"
        );
        assert!(names(&parse(with("cni.dev/valid-attachments", Value::Null)).unwrap()).is_empty());
        assert!(names(&parse(base()).unwrap()).is_empty());
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(version_tuple("1.10.0"), Some((1, 10, 0)));
        assert!(version_tuple("1.1").is_none() && version_tuple("1.1.0.0").is_none());
        let conf = parse(with("cniVersion", json!("0.4.0"))).unwrap();
        assert!(conf.at_least((0, 4, 0)) && !conf.at_least((1, 1, 0)));
    }

    #[test]
    fn slave_names_are_stable_and_fit_ifnamsiz() {
        let a = slave_name("c1", "eth0");
        assert_eq!(a, slave_name("c1", "eth0"));
        assert_ne!(a, slave_name("c1", "eth1"));
        assert_ne!(slave_name("c1e", "th0"), slave_name("c1", "eth0"));
        assert_eq!(a.len(), 13);
    }
}
