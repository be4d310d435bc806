//! The network's driver options (`podman network create -o KEY=VALUE`, the network's `options`
//! map) and what they mean for the slave.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use ipvlan::proto::{BackendKind, Flag, Mode};

/// The options this plugin knows; any other is an error naming it.
pub const KNOWN: [&str; 9] = [
    "parent",
    "backend",
    "mode",
    "flag",
    "mtu",
    "spoofchk",
    "hostreach",
    "socket",
    "no_default_route",
];

/// The parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    /// `parent`: the ipvlan master in the daemon's namespace (else `network_interface`, else the
    /// default route's device).
    pub parent: Option<String>,
    /// `mode`: `l2` (default), `l3` or `l3s`.
    pub mode: Mode,
    /// `flag`: `bridge`, `private` or `vepa` (default: the port's, `bridge` for a new one).
    pub flag: Option<Flag>,
    /// `mtu`: bytes, 68..=65535 (default: the master's).
    pub mtu: Option<u32>,
    /// `spoofchk`: `true` or `false` (default: the daemon's).
    pub spoofchk: Option<bool>,
    /// `hostreach`: `true` or `false`: the port's option (`docs/hostreach.md`; default: left
    /// as it is, off for a new port).
    pub hostreach: Option<bool>,
    /// `socket`: the daemon's control socket (else `IPVLAN_SOCKET`, else the default).
    pub socket: Option<PathBuf>,
    /// `no_default_route`: `true` (or `1`) leaves out the default routes, as netavark's own
    /// ipvlan driver does.
    pub no_default_route: bool,
    /// `backend`: `tap` or `veth`, what the slave's device is made of (default: what the
    /// port's data path uses).
    pub backend: Option<BackendKind>,
}

fn boolean(key: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("option {key}: {v:?} is not a boolean (true or false)"),
    }
}

impl Opts {
    /// Parses the network's `options`. Errors: an unknown key (named), a bad mode or flag, an
    /// MTU out of range, a boolean that is not one.
    pub fn parse(options: Option<&BTreeMap<String, String>>) -> Result<Opts> {
        let empty = BTreeMap::new();
        let options = options.unwrap_or(&empty);
        if let Some(k) = options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            bail!("unknown option {k:?} (known: {})", KNOWN.join(", "));
        }
        let get = |k: &str| options.get(k).map(String::as_str);
        let mode = match get("mode") {
            None => Mode::L2,
            Some(m) => m
                .parse()
                .map_err(|_| anyhow!("unknown ipvlan mode {m:?}: must be l2, l3 or l3s"))?,
        };
        let flag = match get("flag") {
            None => None,
            Some("bridge") => Some(Flag::Bridge),
            Some("private") => Some(Flag::Private),
            Some("vepa") => Some(Flag::Vepa),
            Some(f) => bail!("unknown ipvlan flag {f:?}: must be bridge, private or vepa"),
        };
        let mtu = match get("mtu") {
            None => None,
            Some(m) => match m.parse::<u32>() {
                Ok(v) if (68..=65535).contains(&v) => Some(v),
                _ => bail!("option mtu: {m:?} is not a number between 68 and 65535"),
            },
        };
        let spoofchk = get("spoofchk")
            .map(|v| boolean("spoofchk", v))
            .transpose()?;
        let hostreach = get("hostreach")
            .map(|v| boolean("hostreach", v))
            .transpose()?;
        let no_default_route = get("no_default_route")
            .map(|v| boolean("no_default_route", v))
            .transpose()?
            .unwrap_or(false);
        let backend = match get("backend") {
            None => None,
            Some(b) => Some(
                BackendKind::parse(b)
                    .ok_or_else(|| anyhow!("unknown backend {b:?}: must be tap or veth"))?,
            ),
        };
        let parent = get("parent").filter(|p| !p.is_empty()).map(str::to_owned);
        if let Some(p) = &parent {
            if p.len() > 15 || p.contains('/') || p.contains(char::is_whitespace) {
                bail!("option parent: {p:?} is not an interface name");
            }
        }
        Ok(Opts {
            parent,
            mode,
            flag,
            mtu,
            spoofchk,
            hostreach,
            socket: get("socket").filter(|s| !s.is_empty()).map(PathBuf::from),
            no_default_route,
            backend,
        })
    }

    /// The daemon's control socket: the `socket` option, else `IPVLAN_SOCKET`, else
    /// [`ipvlan::proto::DEFAULT_SOCKET`].
    pub fn socket(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(default_socket)
    }
}

/// `IPVLAN_SOCKET`, else [`ipvlan::proto::DEFAULT_SOCKET`].
pub fn default_socket() -> PathBuf {
    ipvlan_cni::daemon::socket_path(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(kv: &[(&str, &str)]) -> Result<Opts> {
        let m: BTreeMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Opts::parse(Some(&m))
    }

    #[test]
    fn defaults() {
        let o = Opts::parse(None).unwrap();
        assert_eq!(o.mode, Mode::L2);
        assert_eq!(
            (o.parent, o.flag, o.mtu, o.spoofchk),
            (None, None, None, None)
        );
        assert!(!o.no_default_route);
        assert_eq!(o.hostreach, None);
    }

    #[test]
    fn every_option() {
        let o = parse(&[
            ("parent", "m0"),
            ("mode", "l3s"),
            ("flag", "private"),
            ("mtu", "1400"),
            ("spoofchk", "true"),
            ("hostreach", "true"),
            ("socket", "/tmp/x.sock"),
            ("no_default_route", "1"),
        ])
        .unwrap();
        assert_eq!(o.parent.as_deref(), Some("m0"));
        assert_eq!(o.mode, Mode::L3s);
        assert_eq!(o.flag, Some(Flag::Private));
        assert_eq!(o.mtu, Some(1400));
        assert_eq!(o.spoofchk, Some(true));
        assert_eq!(o.hostreach, Some(true));
        assert_eq!(o.socket(), PathBuf::from("/tmp/x.sock"));
        assert!(o.no_default_route);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        for (kv, needle) in [
            (("colour", "blue"), "unknown option \"colour\""),
            (("mode", "l4"), "unknown ipvlan mode \"l4\""),
            (("mode", "L2"), "unknown ipvlan mode"),
            (("flag", "passthru"), "unknown ipvlan flag"),
            (("mtu", "9"), "option mtu"),
            (("mtu", "big"), "option mtu"),
            (("spoofchk", "yes please"), "option spoofchk"),
            (("hostreach", "sometimes"), "option hostreach"),
            (("parent", "a/b"), "option parent"),
        ] {
            let e = parse(&[kv]).unwrap_err().to_string();
            assert!(e.contains(needle), "{kv:?}: {e}");
        }
    }
}
