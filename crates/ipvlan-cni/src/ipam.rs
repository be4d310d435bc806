//! Delegating addresses to the configured IPAM plugin, as the CNI rules say: the same
//! environment and configuration, the plugin found on CNI_PATH.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::conf::{Env, NetConf};
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

/// Runs the IPAM plugin with `command`; returns its result (ADD) or `Null`.
pub fn exec(command: &str, conf: &NetConf, env: &Env, raw: &[u8]) -> Result<Value, CniError> {
    let kind = conf
        .ipam
        .as_ref()
        .and_then(|i| i["type"].as_str())
        .unwrap_or_default();
    let plugin = find(kind, &env.path)?;
    let mut child = Command::new(&plugin)
        .env("CNI_COMMAND", command)
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
        return Err(CniError::new(
            Code::Plugin,
            format!("IPAM plugin {kind} {command} failed: {msg}"),
        ));
    }
    Ok(parsed.unwrap_or(Value::Null))
}
