//! The CNI commands (CNI spec 1.1, section 2 "CNI operations") as the reference `ipvlan`
//! plugin implements them (containernetworking/plugins `plugins/main/ipvlan/ipvlan.go`), with
//! the slave made and served by the ipvlan-rs daemon. Deliberate differences are named where
//! they are made.

use std::io::Write;
use std::path::PathBuf;

use ipvlan::proto::{Attachment, ErrorKind, LinkAdd, LinkDel, Request, Response};
use ipvlan_linux::NetNs;
use serde_json::Value;

use crate::conf::{Env, NetConf, SUPPORTED_VERSIONS};
use crate::daemon::{self, socket_path};
use crate::error::{CniError, Code};
use crate::result::{CniResult, Interface};
use crate::{ipam, netcfg};

/// What a command printed on success: ADD's result, VERSION's answer, or nothing.
pub type Output = Option<Value>;

/// Runs `command` (`CNI_COMMAND`) with configuration `stdin`, the other parameters read
/// through `getenv`; warnings go to `stderr`. Returns what to print on stdout, or the error
/// object's content.
pub fn run(
    command: &str,
    stdin: &[u8],
    getenv: impl Fn(&str) -> Option<String>,
    stderr: &mut dyn Write,
) -> Result<Output, CniError> {
    if command == "VERSION" {
        let version = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "1.1.0".to_owned());
        return Ok(Some(serde_json::json!({
            "cniVersion": version,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    if !matches!(command, "ADD" | "DEL" | "CHECK" | "STATUS" | "GC") {
        return Err(CniError::new(
            Code::InvalidEnv,
            format!("unknown CNI_COMMAND: {command}"),
        ));
    }
    let env = Env::read(command, getenv)?;
    let conf = NetConf::parse(stdin)?;
    for key in conf.ignored_keys() {
        let _ = writeln!(
            stderr,
            "ipvlan-rs: warning: configuration key {key:?} is not used by this plugin and is ignored"
        );
    }
    match command {
        "ADD" => add(&conf, &env, stdin, stderr)
            .map(|r| serde_json::to_value(r.in_version(&conf.cni_version)).ok()),
        "DEL" => del(&conf, &env, stdin, stderr).map(|()| None),
        "CHECK" => check(&conf, &env, stdin).map(|()| None),
        "STATUS" => status(&conf, &env, stdin).map(|()| None),
        _ => gc(&conf, &env, stdin, stderr).map(|()| None),
    }
}

fn socket(conf: &NetConf) -> PathBuf {
    socket_path(conf.socket.as_deref())
}

/// ADD: a slave of `master` (the configuration's; else, chained, the single interface of the
/// `prevResult`; else the default route's device in the daemon's namespace), in the mode,
/// flag, MTU and guard configured, moved into `CNI_NETNS` as `CNI_IFNAME`, addressed from the
/// IPAM plugin or, chained without `ipam`, from the `prevResult`'s IPs; returns once the daemon
/// serves the addresses. Anything done is undone on failure.
///
/// Differences from the reference: `dns` from the configuration replaces the IPAM's or the
/// `prevResult`'s only when given (the reference always replaces it, with nothing when the
/// configuration has none); IPv6 DAD is awaited whenever there is an IPv6 address, not only
/// with an IPv6 gateway; an MTU above the master's is reported on stderr.
pub fn add(
    conf: &NetConf,
    env: &Env,
    raw: &[u8],
    stderr: &mut dyn Write,
) -> Result<CniResult, CniError> {
    let netns = env.netns()?;
    let socket = socket(conf);
    let home = netcfg::daemon_netns(&socket)?;
    not_own_netns(&netns, Some(&home))?;
    let prev = conf.prev()?;
    let master = match (conf.master.as_deref().filter(|m| !m.is_empty()), &prev) {
        (Some(m), _) => m.to_owned(),
        (None, Some(p)) => match p.interfaces.as_slice() {
            [one] if !one.name.is_empty() => one.name.clone(),
            _ => {
                return Err(CniError::new(
                    Code::InvalidConfig,
                    "chained master failure: no \"master\" given and the prevResult lacks a single named interface",
                ))
            }
        },
        (None, None) => netcfg::default_route_device(&home)?,
    };
    let from_prev = match (&prev, conf.ipam_type()) {
        (Some(p), None) => !p.ips.is_empty(),
        _ => false,
    };
    if !from_prev && conf.ipam_type().is_none() {
        return Err(CniError::new(
            Code::InvalidConfig,
            "no \"ipam\" and no prevResult with IPs: nothing to address the interface with",
        ));
    }
    let temp = env.slave_name();
    let req = Request::LinkAdd(LinkAdd {
        master,
        name: temp.clone(),
        mode: conf.mode(),
        flag: conf.flag(),
        mtu: conf.mtu,
        spoofchk: conf.spoofchk,
        hostreach: conf.hostreach,
        backend: conf.backend(),
        tap_owner: None,
        attachment: Some(Attachment {
            network: conf.name.clone(),
            container_id: env.container_id.clone(),
            ifname: env.ifname.clone(),
        }),
    });
    match daemon::call(&socket, &req)? {
        Response::Error { message, .. } => {
            return Err(CniError::new(
                Code::Plugin,
                format!("creating the ipvlan slave: {message}"),
            ))
        }
        Response::Ok { notes, .. } => {
            for n in notes {
                let _ = writeln!(stderr, "ipvlan-rs: {n}");
            }
        }
    }
    let undo_slave = || {
        let _ = daemon::call(&socket, &Request::LinkDel(LinkDel { name: temp.clone() }));
    };
    if let Err(e) = netcfg::move_into(&temp, &home, &netns)
        .and_then(|()| netcfg::rename_in(&netns, &temp, &env.ifname))
    {
        undo_slave();
        return Err(e);
    }
    let ipam_kind = if from_prev { None } else { conf.ipam_type() };
    let undo_ipam = || {
        if let Some(kind) = ipam_kind {
            let _ = ipam::delegate("DEL", kind, env, raw, &conf.cni_version);
        }
    };
    let mut result = match ipam_kind {
        None => prev.unwrap_or_default(),
        Some(kind) => {
            let raw_result = match ipam::delegate("ADD", kind, env, raw, &conf.cni_version) {
                Ok(v) => v,
                Err(e) => {
                    undo_slave();
                    return Err(e);
                }
            };
            let parsed = serde_json::from_value::<CniResult>(raw_result)
                .map_err(|e| {
                    CniError::new(
                        Code::Decoding,
                        format!("IPAM plugin {kind} returned a result that does not parse: {e}"),
                    )
                })
                .and_then(|r| {
                    if r.ips.is_empty() {
                        Err(CniError::new(
                            Code::Plugin,
                            "IPAM plugin returned missing IP config",
                        ))
                    } else {
                        Ok(r)
                    }
                });
            match parsed {
                Ok(r) => r,
                Err(e) => {
                    undo_ipam();
                    undo_slave();
                    return Err(e);
                }
            }
        }
    };
    for ip in &mut result.ips {
        ip.interface = Some(0);
    }
    if let Some(d) = conf.dns.as_ref().filter(|d| !d.is_empty()) {
        result.dns = d.clone();
    }
    let configured = netcfg::configure(
        &netns,
        &env.ifname,
        &env.ifname,
        &result.ips,
        &result.routes,
    )
    .and_then(|mac| {
        let addrs: Vec<_> = result.ips.iter().map(|ip| ip.address.addr).collect();
        daemon::wait_served(&socket, &temp, &addrs).map(|()| mac)
    });
    let mac = match configured {
        Ok(mac) => mac,
        Err(e) => {
            undo_ipam();
            undo_slave();
            return Err(e);
        }
    };
    result.interfaces = vec![Interface {
        name: env.ifname.clone(),
        mac,
        mtu: None,
        sandbox: env.netns.clone(),
    }];
    Ok(result)
}

/// Code 8 if `netns` is the plugin's own network namespace or the daemon's (`home`): ADD
/// would leave the slave on the host side, DEL would delete the host's interface named
/// `CNI_IFNAME` (the master, say). libcni's `skel` answers code 8 too.
fn not_own_netns(netns: &NetNs, home: Option<&NetNs>) -> Result<(), CniError> {
    let own = NetNs::current().ok();
    if [own.as_ref(), home]
        .into_iter()
        .flatten()
        .any(|n| n.id() == netns.id())
    {
        return Err(CniError::new(
            Code::InvalidNetNs,
            "CNI_NETNS is the plugin's or the ipvlan-rs daemon's own network namespace",
        ));
    }
    Ok(())
}

/// DEL, best effort and idempotent (spec section 2): the IPAM plugin's DEL, then the slave
/// deleted by the daemon; when the daemon cannot be reached, `CNI_IFNAME` is deleted in
/// `CNI_NETNS` by the plugin itself (the daemon drops the slave from its state at its next
/// start), and DEL succeeds. A namespace or interface already gone is success. A `CNI_NETNS`
/// that is the plugin's or the daemon's own namespace is code 8, with nothing done: deleting
/// `CNI_IFNAME` there would delete a host interface.
pub fn del(conf: &NetConf, env: &Env, raw: &[u8], stderr: &mut dyn Write) -> Result<(), CniError> {
    let socket = socket(conf);
    if let Ok(netns) = NetNs::open(&env.netns) {
        not_own_netns(&netns, netcfg::daemon_netns(&socket).ok().as_ref())?;
    }
    if let Some(kind) = conf.ipam_type() {
        ipam::delegate("DEL", kind, env, raw, &conf.cni_version)?;
    }
    let name = env.slave_name();
    match daemon::call(&socket, &Request::LinkDel(LinkDel { name })) {
        Ok(Response::Ok { .. })
        | Ok(Response::Error {
            kind: ErrorKind::NotFound,
            ..
        }) => {}
        Ok(Response::Error { message, .. }) => {
            return Err(CniError::new(Code::Plugin, message));
        }
        Err(e) => {
            let _ = writeln!(
                stderr,
                "ipvlan-rs: {e}; deleting {} in {} directly",
                env.ifname, env.netns
            );
        }
    }
    // Whatever the daemon said, the runtime's interface goes (the reference deletes
    // CNI_IFNAME in CNI_NETNS): a daemon that lost the slave must not leave it behind.
    netcfg::delete_in(&env.netns, &env.ifname).map(|_| ())
}

/// CHECK (configurations of 0.4.0 and later): the IPAM plugin's CHECK; the `prevResult`'s
/// interface is this `CNI_IFNAME` in this `CNI_NETNS`; the daemon serves it as a slave of the
/// configured master, mode and flag, with every address the result lists (a conflict with
/// another slave fails); and in the container, the interface has the result's MAC, addresses
/// and routes.
pub fn check(conf: &NetConf, env: &Env, raw: &[u8]) -> Result<(), CniError> {
    if !conf.at_least((0, 4, 0)) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "config version does not allow CHECK",
        ));
    }
    if let Some(kind) = conf.ipam_type() {
        ipam::delegate("CHECK", kind, env, raw, &conf.cni_version)?;
    }
    let prev = conf
        .prev()?
        .ok_or_else(|| CniError::new(Code::InvalidConfig, "Required prevResult missing"))?;
    let iface = prev
        .interfaces
        .iter()
        .find(|i| i.name == env.ifname && i.sandbox == env.netns)
        .ok_or_else(|| {
            CniError::new(
                Code::Plugin,
                format!(
                    "the prevResult has no interface {} in sandbox {}",
                    env.ifname, env.netns
                ),
            )
        })?;
    let socket = socket(conf);
    let link = daemon::show(&socket, &env.slave_name())?.ok_or_else(|| {
        CniError::new(
            Code::Plugin,
            format!("the ipvlan-rs daemon has no slave for {}", env.ifname),
        )
    })?;
    let mismatch = |what: &str, have: String, want: String| {
        CniError::new(
            Code::Plugin,
            format!("the slave's {what} is {have}, the configuration says {want}"),
        )
    };
    if let Some(m) = conf.master.as_deref().filter(|m| !m.is_empty()) {
        if link.master != m {
            return Err(mismatch("master", link.master, m.to_owned()));
        }
    }
    if let Some(mode) = conf.mode() {
        if link.mode != mode {
            return Err(mismatch("mode", link.mode.to_string(), mode.to_string()));
        }
    }
    if let Some(flag) = conf.flag() {
        if link.flag != flag {
            return Err(mismatch("flag", link.flag.to_string(), flag.to_string()));
        }
    }
    let ours: Vec<_> = prev
        .ips
        .iter()
        .filter(|ip| {
            ip.interface
                .is_none_or(|i| prev.interfaces.get(i) == Some(iface))
        })
        .cloned()
        .collect();
    for ip in &ours {
        let a = ip.address.addr.to_string();
        if !link.addresses.contains(&a) {
            let why = match link.conflicts.iter().find(|c| c.address == a) {
                Some(c) => format!("it is owned by slave {}", c.owner),
                None => "see `ipvlan link show`".to_owned(),
            };
            return Err(CniError::new(
                Code::Plugin,
                format!(
                    "the ipvlan-rs daemon does not serve {a} for {}: {why}",
                    env.ifname
                ),
            ));
        }
    }
    netcfg::verify(
        &env.netns()?,
        &env.ifname,
        &netcfg::Expected {
            mac: iface.mac.clone(),
            ips: ours,
            routes: prev.routes.clone(),
        },
    )
}

/// STATUS (1.1.0): ready to serve ADD when the daemon answers, the master (configured, or
/// the default route's device) exists in its namespace, and the IPAM plugin is on `CNI_PATH`
/// and its STATUS passes (its error is passed on). Code 50 otherwise.
pub fn status(conf: &NetConf, env: &Env, raw: &[u8]) -> Result<(), CniError> {
    if !conf.at_least((1, 1, 0)) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "config version does not allow STATUS",
        ));
    }
    let socket = socket(conf);
    let unavailable =
        |e: CniError| CniError::new(Code::NotAvailable, e.msg).with_details(e.details);
    daemon::show_all(&socket).map_err(unavailable)?;
    let home = netcfg::daemon_netns(&socket).map_err(unavailable)?;
    match conf.master.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => {
            let found = ipvlan_linux::rtnl::Rtnl::open_in(&home)
                .and_then(|mut r| r.link_by_name(m))
                .map_err(|e| {
                    CniError::new(Code::NotAvailable, format!("looking up master {m}: {e}"))
                })?;
            if found.is_none() {
                return Err(CniError::new(
                    Code::NotAvailable,
                    format!("master {m} does not exist in the ipvlan-rs daemon's namespace"),
                ));
            }
        }
        None => {
            netcfg::default_route_device(&home).map_err(unavailable)?;
        }
    }
    if let Some(kind) = conf.ipam_type() {
        // An IPAM plugin from before CNI 1.1 has no STATUS to ask: ADD will tell. One that
        // cannot be found or run cannot serve ADD either (code 50); its own STATUS error is
        // passed on.
        if ipam::supports(kind, env, "1.1.0").map_err(unavailable)? {
            ipam::exec("STATUS", kind, env, raw)?;
        }
    }
    Ok(())
}

/// GC (1.1.0): forwarded to the IPAM plugin; every slave the daemon made for this network
/// (`name`) whose attachment is not in `cni.dev/valid-attachments` (or, from a runtime that
/// follows the tagged 1.1.0 spec, `cni.dev/attachments`: see [`NetConf::gc_valid`]) is
/// deleted; and the addresses of every stale attachment are released with the IPAM DEL that
/// its own DEL would have run: those of the removed slaves, and with `host-local`, those of
/// its leases (a container whose namespace went without DEL has no slave left, only its
/// lease). The IPAM DEL is not left to the IPAM plugin's GC: a plugin may speak 1.1.0 and
/// do nothing on GC (host-local does), and DEL of what is gone succeeds. Nothing is released
/// while a stale slave may still hold it (the daemon cannot be asked, or did not remove
/// it): its address would be given to another container. The IPAM plugin gets the list
/// under both names. It goes on past errors and reports them all at the end (spec: "remove
/// as many as possible").
pub fn gc(conf: &NetConf, env: &Env, raw: &[u8], stderr: &mut dyn Write) -> Result<(), CniError> {
    if !conf.at_least((1, 1, 0)) {
        return Err(CniError::new(
            Code::IncompatibleVersion,
            "config version does not allow GC",
        ));
    }
    let mut errors = Vec::new();
    // The IPAM plugin's versions, asked once: for its GC, and for each stale release below
    // (none when it cannot be asked: that error is reported).
    let mut speaks: Option<Vec<String>> = None;
    if let Some(kind) = conf.ipam_type() {
        match ipam::versions(kind, env) {
            Ok(v) => {
                if v.iter().any(|x| x == "1.1.0") {
                    let conf_both = with_both_gc_keys(raw, conf);
                    if let Err(e) = ipam::exec("GC", kind, env, &conf_both) {
                        errors.push(e.to_string());
                    }
                }
                speaks = Some(v);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let valid = conf.gc_valid();
    let is_valid = |id: &str, ifname: &str| {
        valid
            .iter()
            .any(|v| v.container_id == id && v.ifname == ifname)
    };
    // Stale attachments (container id, interface) whose addresses are released below.
    let mut stale: Vec<(String, String)> = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    let socket = socket(conf);
    let links = match daemon::show_all(&socket) {
        Ok(links) => Some(links),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    for link in links.iter().flatten() {
        let Some(a) = &link.attachment else { continue };
        if a.network != conf.name || is_valid(&a.container_id, &a.ifname) {
            continue;
        }
        let attachment = (a.container_id.clone(), a.ifname.clone());
        match daemon::call(
            &socket,
            &Request::LinkDel(LinkDel {
                name: link.name.clone(),
            }),
        ) {
            Ok(Response::Ok { .. }) => {
                let _ = writeln!(
                    stderr,
                    "ipvlan-rs: GC: removed slave {} of container {} ({})",
                    link.name, a.container_id, a.ifname
                );
                stale.push(attachment);
            }
            Ok(Response::Error {
                kind: ErrorKind::NotFound,
                ..
            }) => stale.push(attachment),
            Ok(Response::Error { message, .. }) => {
                errors.push(format!("removing {}: {message}", link.name));
                kept.push(attachment);
            }
            Err(e) => {
                errors.push(format!("removing {}: {e}", link.name));
                kept.push(attachment);
            }
        }
    }
    let ipam = conf.ipam_type().zip(conf.ipam.as_ref());
    if let (Some((kind, ipam_conf)), Some(_), Some(speaks)) = (ipam, &links, &speaks) {
        if kind == "host-local" {
            stale.extend(
                ipam::host_local_leases(ipam_conf, &conf.name)
                    .into_iter()
                    .filter(|(id, ifname)| !is_valid(id, ifname)),
            );
        }
        stale.sort();
        stale.dedup();
        stale.retain(|a| !kept.contains(a));
        for (container_id, ifname) in stale {
            let del = Env {
                container_id,
                ifname,
                netns: String::new(),
                path: env.path.clone(),
            };
            if let Err(e) = ipam::delegate_to(speaks, "DEL", kind, &del, raw, &conf.cni_version) {
                errors.push(format!(
                    "releasing the addresses of container {} ({}): {e}",
                    del.container_id, del.ifname
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            Code::Plugin,
            format!("GC: {}", errors.join("; ")),
        ))
    }
}

/// The GC configuration `raw` with the still-valid list under both of its names (libcni does
/// the same), so that a delegated plugin that reads only one of them does not take every
/// attachment for stale; `raw` unchanged if it already has both or cannot be re-encoded.
fn with_both_gc_keys(raw: &[u8], conf: &NetConf) -> Vec<u8> {
    const KEYS: [&str; 2] = ["cni.dev/valid-attachments", "cni.dev/attachments"];
    let Ok(mut v) = serde_json::from_slice::<Value>(raw) else {
        return raw.to_vec();
    };
    let valid: Vec<Value> = conf
        .gc_valid()
        .iter()
        .map(|a| serde_json::json!({"containerID": a.container_id, "ifname": a.ifname}))
        .collect();
    let Some(o) = v.as_object_mut() else {
        return raw.to_vec();
    };
    if KEYS.iter().all(|k| o.get(*k).is_some_and(|x| !x.is_null())) {
        return raw.to_vec();
    }
    for k in KEYS {
        o.insert(k.to_owned(), Value::Array(valid.clone()));
    }
    v.to_string().into_bytes()
}
