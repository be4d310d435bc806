//! Delegating addresses to the configured IPAM plugin (CNI spec, section 4 "Plugin
//! Delegation"): the same environment and configuration, `CNI_COMMAND` set to the command
//! delegated, the plugin found on `CNI_PATH`; its error passed on with its own code.
//!
//! Beyond libcni's delegation: an IPAM plugin older than the configuration (Debian 12's
//! host-local speaks CNI up to 1.0.0, and refuses a 1.1.0 configuration with code 1) is
//! given the configuration in the newest version it speaks, and its result read in that
//! version; STATUS and GC go only to plugins that speak 1.1.0. For GC, host-local's leases
//! are read ([`host_local_leases`]): no host-local release has a GC of its own.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::conf::Env;
use crate::error::{CniError, Code};

fn find(kind: &str, path: &str) -> Result<PathBuf, CniError> {
    if kind.contains('/') {
        return Err(CniError::new(
            Code::InvalidConfig,
            format!("bad ipam type {kind:?}"),
        ));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                Code::InvalidConfig,
                format!("IPAM plugin {kind:?} not found on CNI_PATH {path:?}"),
            )
        })
}

/// Runs IPAM plugin `kind` with `command` and the configuration `raw`; returns what it
/// printed (ADD's result) or `Null`. Its error object's code and message are passed on.
pub fn exec(command: &str, kind: &str, env: &Env, raw: &[u8]) -> Result<Value, CniError> {
    let plugin = find(kind, &env.path)?;
    let mut cmd = Command::new(&plugin);
    cmd.env("CNI_COMMAND", command);
    // The attachment's parameters as this invocation has them (GC's IPAM DEL of a stale
    // attachment sets its own; the others are the runtime's, inherited unchanged).
    for (k, v) in [
        ("CNI_CONTAINERID", &env.container_id),
        ("CNI_IFNAME", &env.ifname),
        ("CNI_NETNS", &env.netns),
    ] {
        if !v.is_empty() {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::new(Code::Plugin, format!("running {}: {e}", plugin.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(raw);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(Code::Plugin, format!("running {}: {e}", plugin.display())))?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let msg = parsed
            .as_ref()
            .and_then(|v| v["msg"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned());
        let code = parsed
            .as_ref()
            .and_then(|v| v["code"].as_u64())
            .and_then(|c| u32::try_from(c).ok())
            .map_or(Code::Plugin, Code::Delegated);
        let details = parsed
            .as_ref()
            .and_then(|v| v["details"].as_str())
            .unwrap_or_default()
            .to_owned();
        return Err(
            CniError::new(code, format!("IPAM plugin {kind} {command} failed: {msg}"))
                .with_details(details),
        );
    }
    Ok(parsed.unwrap_or(Value::Null))
}

/// Every CNI version IPAM plugin `kind` speaks (its VERSION answer's `supportedVersions`).
pub fn versions(kind: &str, env: &Env) -> Result<Vec<String>, CniError> {
    let answer = exec("VERSION", kind, env, br#"{"cniVersion":"1.1.0"}"#)?;
    Ok(answer["supportedVersions"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Whether IPAM plugin `kind` speaks CNI `version`.
pub fn supports(kind: &str, env: &Env, version: &str) -> Result<bool, CniError> {
    Ok(versions(kind, env)?.iter().any(|v| v == version))
}

/// Runs `command` of IPAM plugin `kind` (ADD, DEL, CHECK) with configuration `raw` of CNI
/// `version`: as is if the plugin speaks that version, else with `cniVersion` lowered to the
/// newest version it speaks below it (0.4.0 at least for CHECK). An error naming both when
/// there is none.
pub fn delegate(
    command: &str,
    kind: &str,
    env: &Env,
    raw: &[u8],
    version: &str,
) -> Result<Value, CniError> {
    delegate_to(&versions(kind, env)?, command, kind, env, raw, version)
}

/// [`delegate`] to a plugin known to speak the versions `speaks` (its [`versions`], asked
/// once by a caller that delegates several times).
pub fn delegate_to(
    speaks: &[String],
    command: &str,
    kind: &str,
    env: &Env,
    raw: &[u8],
    version: &str,
) -> Result<Value, CniError> {
    if speaks.iter().any(|v| v == version) {
        return exec(command, kind, env, raw);
    }
    let want = crate::conf::version_tuple(version);
    let floor = if command == "CHECK" {
        (0, 4, 0)
    } else {
        (0, 3, 0)
    };
    let best = speaks
        .iter()
        .filter_map(|v| crate::conf::version_tuple(v).map(|t| (t, v)))
        .filter(|(t, _)| Some(*t) < want && *t >= floor)
        .max()
        .map(|(_, v)| v.clone())
        .ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "IPAM plugin {kind} speaks CNI {} and none of them can serve a {version} configuration",
                    speaks.join(", ")
                ),
            )
        })?;
    let mut conf: Value = serde_json::from_slice(raw).map_err(|e| {
        CniError::new(
            Code::Decoding,
            format!("cannot decode the network configuration: {e}"),
        )
    })?;
    conf["cniVersion"] = Value::String(best);
    exec(command, kind, env, conf.to_string().as_bytes())
}

/// Where host-local keeps its leases when `ipam.dataDir` is not given.
pub const HOST_LOCAL_DATA_DIR: &str = "/var/lib/cni/networks";

/// The attachments (container id, interface) host-local holds addresses for in network
/// `network`, read from its disk store as host-local writes it (containernetworking/plugins
/// `plugins/ipam/host-local/backend/disk`): one file per address, named by the address,
/// under `DATADIR/NETWORK` (`ipam.dataDir`, default [`HOST_LOCAL_DATA_DIR`]), holding
/// `CONTAINERID\r\nIFNAME`. Sorted, without repeats; files that are not leases (`lock`,
/// `last_reserved_ip.N`), cannot be read, or hold a container id alone (host-local before
/// 0.7) are skipped; a missing directory is no leases.
///
/// No host-local release has a GC of its own (up to 1.1.0 it does not speak CNI 1.1; later
/// it answers GC without doing anything), so this is how GC finds the leases of containers
/// whose namespace went without DEL.
pub fn host_local_leases(ipam: &Value, network: &str) -> Vec<(String, String)> {
    let dir =
        std::path::Path::new(ipam["dataDir"].as_str().unwrap_or(HOST_LOCAL_DATA_DIR)).join(network);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut leases: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| {
            let (id, ifname) = text.trim().split_once("\r\n")?;
            let (id, ifname) = (id.trim(), ifname.trim());
            (!id.is_empty() && !ifname.is_empty()).then(|| (id.to_owned(), ifname.to_owned()))
        })
        .collect();
    leases.sort();
    leases.dedup();
    leases
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn host_local_leases_are_read_as_host_local_writes_them() {
        let data = std::env::temp_dir().join(format!("ipvlan-cni-leases-{}", std::process::id()));
        let dir = data.join("net-1");
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("192.0.2.100", "id-a\r\neth0"),
            ("2001:db8::100", "id-a\r\neth0"),
            ("192.0.2.101", "id-b\r\nnet1"),
            ("192.0.2.102", "id-old"),
            ("last_reserved_ip.0", "192.0.2.101"),
            ("lock", ""),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let leases = host_local_leases(&json!({"type": "host-local", "dataDir": data}), "net-1");
        assert_eq!(
            leases,
            vec![
                ("id-a".to_owned(), "eth0".to_owned()),
                ("id-b".to_owned(), "net1".to_owned())
            ]
        );
        assert!(host_local_leases(&json!({"dataDir": data}), "net-2").is_empty());
        std::fs::remove_dir_all(&data).unwrap();
    }
}
