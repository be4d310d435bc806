//! `ipvlan-rs-netavark`: a netavark plugin (netavark's `plugin-API.md`, `src/plugin.rs`) that
//! attaches podman containers to ipvlan-rs networks — the way podman 5 and later reach a
//! network driver, since they ship without the CNI backend.
//!
//! Subcommands, JSON on stdin and stdout:
//! - `create`: a [`types::Network`] in, the same network back with its defaults filled in;
//! - `setup NETNS`: a [`types::NetworkPluginExec`] in, a [`types::StatusBlock`] out;
//! - `teardown NETNS`: the same input, nothing out;
//! - `info` (or no subcommand): a [`types::Info`].
//!
//! On failure: `{"error": "message"}` on stdout and exit status 1 (netavark shows the message to
//! the podman user). Driver options: see [`opts`].

mod opts;
mod plugin;
mod types;

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;

use crate::types::{Info, JsonError, API_VERSION};

/// The largest input read from stdin (a network with many subnets and routes is a few KiB).
const MAX_INPUT: u64 = 1 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let err = JsonError {
                error: format!("{e:#}"),
            };
            // A struct of one string always serializes; the fallback is valid JSON regardless.
            let out = serde_json::to_string(&err)
                .unwrap_or_else(|_| r#"{"error":"ipvlan-rs-netavark failed"}"#.to_owned());
            println!("{out}");
            ExitCode::from(1)
        }
    }
}

/// Reads and decodes stdin.
fn input<T: DeserializeOwned>() -> Result<T> {
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_end(&mut raw)
        .context("reading stdin")?;
    serde_json::from_slice(&raw).context("cannot decode the JSON on stdin")
}

fn netns_arg(args: &[String]) -> Result<&str> {
    args.get(1)
        .map(String::as_str)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("netns path argument is missing"))
}

/// Runs one subcommand: its JSON answer, if it has one.
fn run(args: &[String]) -> Result<Option<String>> {
    let out = match args.first().map(String::as_str) {
        Some("create") => serde_json::to_string(&plugin::create(input()?)?)?,
        Some("setup") => {
            let netns = netns_arg(args)?;
            serde_json::to_string(&plugin::setup(netns, &input()?)?)?
        }
        Some("teardown") => {
            let netns = netns_arg(args)?;
            plugin::teardown(netns, &input()?)?;
            return Ok(None);
        }
        Some("info") | None => serde_json::to_string(&info())?,
        Some(other) => bail!("unknown subcommand: {other}"),
    };
    Ok(Some(out))
}

fn info() -> Info {
    Info {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api_version: API_VERSION.to_owned(),
        extra_info: BTreeMap::from([(
            "description".to_owned(),
            "ipvlan-rs: ipvlan slaves served by the ipvlan-rs daemon (options: parent, mode, flag, mtu, spoofchk, hostreach, socket, backend, no_default_route)".to_owned(),
        )]),
    }
}
