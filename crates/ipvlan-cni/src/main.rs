//! `ipvlan-rs`: a CNI plugin (spec 1.0.0; 0.3.x/0.4.0 configurations accepted) with the
//! reference `ipvlan` plugin's network configuration (`master`, `mode`, `mtu`,
//! `linkInContainer`, `ipam`), so an existing configuration works by changing only `type`.
//! The slave is created by the ipvlan-rs daemon (socket: `socket` in the configuration, else
//! `IPVLAN_SOCKET`, else the daemon's default), moved into the container's namespace under
//! `CNI_IFNAME`, and addressed by the configured IPAM plugin.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ipvlan::client;
use ipvlan::proto::{ErrorKind, LinkAdd, LinkDel, LinkShow, Request, Response};
use serde_json::{json, Value};

use ipvlan_cni::conf::{self, Env, NetConf, SUPPORTED_VERSIONS};
use ipvlan_cni::error::{CniError, Code};
use ipvlan_cni::{ipam, netcfg};

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    // Every command gets its configuration on stdin (VERSION: the caller's cniVersion, which
    // the answer echoes); a person trying VERSION at a terminal is not kept waiting.
    let mut stdin = Vec::new();
    if command != "VERSION" || !std::io::stdin().is_terminal() {
        let _ = std::io::stdin().take(1 << 20).read_to_end(&mut stdin);
    }
    let version = serde_json::from_slice::<Value>(&stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "1.0.0".to_owned());
    let result = match command.as_str() {
        "VERSION" => Ok(Some(json!({
            "cniVersion": version,
            "supportedVersions": SUPPORTED_VERSIONS,
        }))),
        "ADD" => run(&stdin, add).map(Some),
        "DEL" => run(&stdin, del).map(|()| None),
        "CHECK" => run(&stdin, check).map(|()| None),
        "" => Err(CniError::new(Code::InvalidEnv, "CNI_COMMAND is not set")),
        other => Err(CniError::new(
            Code::InvalidEnv,
            format!("unknown CNI_COMMAND {other:?}"),
        )),
    };
    match result {
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

fn run<T>(
    stdin: &[u8],
    f: impl FnOnce(&NetConf, &Env, &[u8]) -> Result<T, CniError>,
) -> Result<T, CniError> {
    let conf = NetConf::parse(stdin)?;
    let env = Env::from_process()?;
    f(&conf, &env, stdin)
}

fn socket(conf: &NetConf) -> PathBuf {
    conf.socket
        .clone()
        .or_else(|| std::env::var("IPVLAN_SOCKET").ok())
        .unwrap_or_else(|| ipvlan::proto::DEFAULT_SOCKET.to_owned())
        .into()
}

fn daemon(conf: &NetConf, req: &Request) -> Result<Response, CniError> {
    client::call(&socket(conf), req)
        .map_err(|e| CniError::new(Code::TryAgainLater, format!("{e:#}")))
}

fn add(conf: &NetConf, env: &Env, raw: &[u8]) -> Result<Value, CniError> {
    let netns = env.netns()?;
    let home = netcfg::daemon_netns(&socket(conf))?;
    let master = match &conf.master {
        Some(m) => m.clone(),
        None => netcfg::default_route_device(&home)?,
    };
    let temp = env.slave_name();
    let req = Request::LinkAdd(LinkAdd {
        master,
        name: temp.clone(),
        mode: Some(conf.mode()),
        flag: None,
        mtu: conf.mtu,
        spoofchk: None,
        backend: None,
        attachment: None,
    });
    if let Response::Error { message, .. } = daemon(conf, &req)? {
        return Err(CniError::new(
            Code::Plugin,
            format!("creating the ipvlan slave: {message}"),
        ));
    }
    let undo = |e: CniError| {
        let _ = daemon(conf, &Request::LinkDel(LinkDel { name: temp.clone() }));
        e
    };
    netcfg::move_into(&temp, &home, &netns).map_err(undo)?;
    let ipam = match &conf.ipam {
        Some(_) => Some(ipam::exec("ADD", conf, env, raw).map_err(undo)?),
        None => None,
    };
    let mac = netcfg::configure(&netns, &temp, &env.ifname, ipam.as_ref())
        .and_then(|mac| wait_served(conf, &temp, ipam.as_ref()).map(|()| mac))
        .map_err(|e| {
            if conf.ipam.is_some() {
                let _ = ipam::exec("DEL", conf, env, raw);
            }
            undo(e)
        })?;
    Ok(conf::result(conf, env, &mac, ipam.as_ref()))
}

/// How long ADD waits for the daemon to serve the container's addresses.
const SERVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns once the daemon serves every address of the IPAM result on slave `name` (lists it
/// as the slave's, which it does only once its netfilter state is in place), so that the
/// container's first packet is not lost; an error after [`SERVE_TIMEOUT`], naming what is
/// missing (another slave owning it, say).
fn wait_served(conf: &NetConf, name: &str, ipam: Option<&Value>) -> Result<(), CniError> {
    let want: Vec<String> = ipam
        .and_then(|v| v["ips"].as_array())
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str().and_then(netcfg::parse_cidr))
                .map(|(a, _)| a.to_string())
                .collect()
        })
        .unwrap_or_default();
    if want.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + SERVE_TIMEOUT;
    let show = Request::LinkShow(LinkShow {
        name: Some(name.to_owned()),
    });
    loop {
        let served: Vec<String> = match daemon(conf, &show)? {
            Response::Ok { links, .. } => links.into_iter().flat_map(|l| l.addresses).collect(),
            Response::Error { message, .. } => {
                return Err(CniError::new(Code::Plugin, message));
            }
        };
        let missing: Vec<&String> = want.iter().filter(|a| !served.contains(a)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "the daemon does not serve {} on the new interface after {} s (owned by another slave? see `ipvlan link show`)",
                    missing.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
                    SERVE_TIMEOUT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn del(conf: &NetConf, env: &Env, raw: &[u8]) -> Result<(), CniError> {
    if conf.ipam.is_some() {
        ipam::exec("DEL", conf, env, raw)?;
    }
    match daemon(
        conf,
        &Request::LinkDel(LinkDel {
            name: env.slave_name(),
        }),
    )? {
        Response::Ok { .. } => Ok(()),
        // Already gone (its namespace was deleted, or a DEL ran before): DEL is idempotent.
        Response::Error {
            kind: ErrorKind::NotFound,
            ..
        } => Ok(()),
        Response::Error { message, .. } => Err(CniError::new(Code::Plugin, message)),
    }
}

fn check(conf: &NetConf, env: &Env, raw: &[u8]) -> Result<(), CniError> {
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(Code::InvalidConfig, "CHECK needs prevResult"))?;
    if conf.ipam.is_some() {
        ipam::exec("CHECK", conf, env, raw)?;
    }
    let shown = daemon(
        conf,
        &Request::LinkShow(LinkShow {
            name: Some(env.slave_name()),
        }),
    )?;
    let link = match shown {
        Response::Ok { links, .. } => links.into_iter().next(),
        Response::Error { .. } => None,
    }
    .ok_or_else(|| {
        CniError::new(
            Code::Plugin,
            format!("the daemon has no slave for {}", env.ifname),
        )
    })?;
    if link.mode != conf.mode() {
        return Err(CniError::new(
            Code::Plugin,
            format!(
                "slave is in mode {} but the configuration asks for {}",
                link.mode,
                conf.mode()
            ),
        ));
    }
    netcfg::verify(&env.netns()?, &env.ifname, prev)
}
