//! `ipvlan-rs`: a CNI plugin (spec 1.1.0; 0.3.0, 0.3.1, 0.4.0 and 1.0.0 configurations too)
//! with the reference `ipvlan` plugin's network configuration (`master`, `mode`, `mtu`,
//! `linkInContainer`, `ipam`, `dns`, chaining from `prevResult`), so an existing configuration
//! works by changing only `type`; `flag`, `spoofchk` and `socket` are ipvlan-rs's own. The
//! slave is made by the ipvlan-rs daemon (socket: `socket` in the configuration, else
//! `IPVLAN_SOCKET`, else the daemon's default), moved into the container's namespace under
//! `CNI_IFNAME`, and addressed by the configured IPAM plugin. See [`ipvlan_cni::cni`].

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use ipvlan_cni::conf::SUPPORTED_VERSIONS;

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        // As libcni's skel: without a command, say what this is (stderr) and succeed.
        eprintln!(
            "ipvlan-rs CNI plugin {} (ipvlan-rs: IPVLAN without the kernel driver)\nCNI protocol versions supported: {}",
            env!("CARGO_PKG_VERSION"),
            SUPPORTED_VERSIONS.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    // Every command gets its configuration on stdin (VERSION: the caller's cniVersion, which
    // the answer echoes); a person trying VERSION at a terminal is not kept waiting.
    let mut stdin = Vec::new();
    if command != "VERSION" || !std::io::stdin().is_terminal() {
        if let Err(e) = std::io::stdin().take(1 << 20).read_to_end(&mut stdin) {
            let err = ipvlan_cni::error::CniError::new(
                ipvlan_cni::error::Code::Plugin,
                format!("error reading from stdin: {e}"),
            );
            println!("{}", err.to_json("1.1.0"));
            return ExitCode::from(1);
        }
    }
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "1.1.0".to_owned());
    let mut stderr = std::io::stderr();
    match ipvlan_cni::cni::run(&command, &stdin, |k| std::env::var(k).ok(), &mut stderr) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version));
            ExitCode::from(1)
        }
    }
}
