//! `ipvlan -j`: the JSON the command line prints, a documented contract of its own (README,
//! "JSON output"), separate from the control protocol ([`crate::proto`]), which the daemon and
//! the container plugins may change together.
//!
//! Shape, schema version [`SCHEMA_VERSION`]:
//!
//! - `link show` prints one object on stdout: `{"schema_version": 1, "links": [LINK…]}`, and
//!   with `-s` also `"ports": [{"master", "drops": [DROP…]}]` (what no slave is charged with).
//! - LINK uses iproute2's names and shapes (`ip -j -d -s link show`, `ip/ipaddress.c`,
//!   `ip/iplink_ipvlan.c`) for what a kernel ipvlan slave shows too: `ifindex`, `link` (the
//!   master), `ifname`, `flags`, `mtu`, `operstate`, `link_type`, `address`, `broadcast`;
//!   with `-d` `linkinfo` = `{"info_kind": "ipvlan", "info_data": {"mode": "l2", "bridge":
//!   true}}` (the flag as a `true` key named after it, as iproute2 prints it); with `-s`
//!   `stats64` = `{"rx": {"bytes", "packets", "dropped", "multicast"}, "tx": {"bytes",
//!   "packets", "errors", "dropped"}}` (bytes and packets as the slave's device sees them;
//!   only the counters ipvlan-rs keeps — no `over_errors`, `carrier_errors`, `collisions`).
//! - Everything only ipvlan-rs has is under `ipvlan_rs` (always present): `name`, `id`,
//!   `netns`, `backend`, `datapath`, `queues`, `host_end`, `spoofchk`, `router`, `addresses`,
//!   `conflicts`, `attachment`, `hostreach` (the port's option, a boolean) and `host_device`
//!   (the port's hostreach device, `null` while off); with `-s` also `drops`,
//!   `address_conflicts` and `dhcp_steered`. Absent values
//!   are `null`, never a missing key.
//! - `-br -j` prints iproute2's brief keys only: `link`, `ifname`, `operstate`, `address`,
//!   `flags`.
//! - Under `-j` every error is one line on stderr: `{"schema_version": 1, "error": {"kind",
//!   "message", "exit_code"}}`, and notes `{"schema_version": 1, "note": {"level",
//!   "message"}}`; stdout then stays empty (a consumer reading stdout never sees half a
//!   document or an error where it expects links).
//!
//! A change that removes or renames a key, or changes a value's type or meaning, raises
//! [`SCHEMA_VERSION`]; a new key does not. The golden file `tests/golden/link_show.json` holds
//! the rendering of a fixed set of slaves, so that no change is unintended.

use serde::Serialize;

use super::{link_flags, Options};
use crate::proto::{LinkView, PortView};

/// The version of this schema, in every object printed at the top level.
pub const SCHEMA_VERSION: u32 = 1;

/// The error kinds `-j` reports, each with its exit code: the command line's own (`usage`
/// 255, `invalid_argument` 1, `unreachable` 1: no daemon at the socket; `system` 1 or 2: the
/// tool itself failed) and the daemon's refusals (exit 2, `proto::ErrorKind`): `invalid`,
/// `conflict`, `not_found`, `system`.
#[cfg_attr(not(test), allow(dead_code))]
pub const ERROR_KINDS: &[&str] = &[
    "usage",
    "invalid_argument",
    "unreachable",
    "invalid",
    "conflict",
    "not_found",
    "system",
];

/// `link show`'s document.
#[derive(Serialize)]
struct LinkDoc<'a> {
    schema_version: u32,
    links: Vec<Link<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Vec<Port<'a>>>,
}

/// A port's own drops (`-s`): what was dropped that no slave is charged with.
#[derive(Serialize)]
struct Port<'a> {
    master: &'a str,
    drops: Vec<Drop<'a>>,
}

/// Drops by reason: `direction` `rx` or `tx` (a slave's), `port` (a port's).
#[derive(Serialize)]
struct Drop<'a> {
    direction: &'a str,
    reason: &'a str,
    count: u64,
}

fn drops(d: &[crate::proto::Drop]) -> Vec<Drop<'_>> {
    d.iter()
        .map(|d| Drop {
            direction: &d.direction,
            reason: &d.reason,
            count: d.count,
        })
        .collect()
}

/// An address configured on the slave that another slave (`owner`) owns: not served.
#[derive(Serialize)]
struct Conflict<'a> {
    address: &'a str,
    owner: &'a str,
}

/// The container attachment a plugin made the slave for (CNI's names).
#[derive(Serialize)]
struct Attachment<'a> {
    network: &'a str,
    #[serde(rename = "containerID")]
    container_id: &'a str,
    ifname: &'a str,
}

/// `link show -br`'s document.
#[derive(Serialize)]
struct BriefDoc<'a> {
    schema_version: u32,
    links: Vec<BriefLink<'a>>,
}

/// One slave, as `ip -j link show` prints a device (keys in iproute2's order).
#[derive(Serialize)]
struct Link<'a> {
    ifindex: u32,
    /// The master (iproute2: the lower device, `IFLA_LINK`).
    link: &'a str,
    ifname: &'a str,
    flags: Vec<&'static str>,
    mtu: u32,
    operstate: &'static str,
    link_type: &'static str,
    address: &'a str,
    broadcast: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    linkinfo: Option<LinkInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats64: Option<Stats64>,
    ipvlan_rs: IpvlanRs<'a>,
}

/// iproute2's brief keys (`ip -br -j link`).
#[derive(Serialize)]
struct BriefLink<'a> {
    link: &'a str,
    ifname: &'a str,
    operstate: &'static str,
    address: &'a str,
    flags: Vec<&'static str>,
}

#[derive(Serialize)]
struct LinkInfo {
    info_kind: &'static str,
    info_data: InfoData,
}

/// `ip/iplink_ipvlan.c` `ipvlan_print_opt`: `mode`, then one of `bridge`, `private`, `vepa`
/// as `true`.
#[derive(Serialize)]
struct InfoData {
    mode: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    bridge: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    private: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    vepa: bool,
}

#[derive(Serialize)]
struct Stats64 {
    rx: RxStats,
    tx: TxStats,
}

#[derive(Serialize)]
struct RxStats {
    bytes: u64,
    packets: u64,
    dropped: u64,
    multicast: u64,
}

#[derive(Serialize)]
struct TxStats {
    bytes: u64,
    packets: u64,
    errors: u64,
    dropped: u64,
}

/// What only ipvlan-rs knows of a slave.
#[derive(Serialize)]
struct IpvlanRs<'a> {
    /// The name the daemon knows the slave by (it was created with; `link del` takes it);
    /// `ifname` is the device's name now.
    name: &'a str,
    /// `dev_id`.
    id: u16,
    /// The `ip netns` name of the namespace the slave is in; `null`: the daemon's own.
    netns: Option<&'a str>,
    /// `tap` or `veth`; `null` from a daemon too old to say.
    backend: Option<&'a str>,
    /// `bpf-tcx`, `bpf-tc` or `user`; `null` from a daemon too old to say.
    datapath: Option<&'a str>,
    /// Device queues the userspace workers read; `null` for veth and ipvtap slaves.
    queues: Option<u32>,
    /// A veth slave's host end, in the master's namespace; `null` for a TAP.
    host_end: Option<&'a str>,
    spoofchk: bool,
    router: bool,
    /// The port's `hostreach` option.
    hostreach: bool,
    /// The port's hostreach device (`ipvlh<master ifindex>`); `null` while off.
    host_device: Option<&'a str>,
    addresses: &'a [String],
    conflicts: Vec<Conflict<'a>>,
    attachment: Option<Attachment<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drops: Option<Vec<Drop<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_conflicts: Option<u64>,
    /// With `-s`: DHCPv4 replies delivered to the slave by their transaction id.
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp_steered: Option<u64>,
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn link<'a>(l: &'a LinkView, opts: &Options) -> Link<'a> {
    let (flags, operstate) = link_flags(l);
    let flag = l.flag.to_string();
    Link {
        ifindex: l.ifindex,
        link: &l.master,
        ifname: &l.current_name,
        flags,
        mtu: l.mtu,
        operstate,
        link_type: "ether",
        address: &l.mac,
        broadcast: "ff:ff:ff:ff:ff:ff",
        linkinfo: opts.details.then(|| LinkInfo {
            info_kind: if l.backend == "ipvtap" {
                "ipvtap"
            } else {
                "ipvlan"
            },
            info_data: InfoData {
                mode: l.mode.to_string(),
                bridge: flag == "bridge",
                private: flag == "private",
                vepa: flag == "vepa",
            },
        }),
        stats64: opts.stats.then_some(Stats64 {
            rx: RxStats {
                bytes: l.stats.rx_bytes,
                packets: l.stats.rx_packets,
                dropped: l.stats.rx_dropped,
                multicast: l.stats.rx_multicast,
            },
            tx: TxStats {
                bytes: l.stats.tx_bytes,
                packets: l.stats.tx_packets,
                errors: l.stats.tx_errors,
                dropped: l.stats.tx_dropped,
            },
        }),
        ipvlan_rs: IpvlanRs {
            name: &l.name,
            id: l.id,
            netns: l.netns.as_deref(),
            backend: non_empty(&l.backend),
            datapath: non_empty(&l.datapath),
            queues: (l.backend != "veth" && l.backend != "ipvtap" && l.queues > 0)
                .then_some(l.queues),
            host_end: l.host_end.as_deref(),
            spoofchk: l.spoofchk,
            router: l.router,
            hostreach: l.hostreach,
            host_device: l.host_device.as_deref(),
            addresses: &l.addresses,
            conflicts: l
                .conflicts
                .iter()
                .map(|c| Conflict {
                    address: &c.address,
                    owner: &c.owner,
                })
                .collect(),
            attachment: l.attachment.as_ref().map(|a| Attachment {
                network: &a.network,
                container_id: &a.container_id,
                ifname: &a.ifname,
            }),
            drops: opts.stats.then(|| drops(&l.stats.drops)),
            address_conflicts: opts.stats.then_some(l.stats.address_conflicts),
            dhcp_steered: opts.stats.then_some(l.stats.dhcp_steered),
        },
    }
}

fn to_string<T: Serialize>(v: &T, pretty: bool) -> String {
    let r = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    // Serialising these plain structs (strings, numbers, maps with string keys) cannot fail.
    r.unwrap_or_else(|e| error_line(&format!("rendering JSON: {e}"), "system", 1))
}

/// `link show`'s output under `-j` (`-p`: indented; `-br`: the brief keys; `-s`: with the
/// ports' own drops), without a trailing newline.
pub fn link_show(links: &[LinkView], ports: &[PortView], opts: &Options) -> String {
    if opts.brief {
        let doc = BriefDoc {
            schema_version: SCHEMA_VERSION,
            links: links
                .iter()
                .map(|l| {
                    let (flags, operstate) = link_flags(l);
                    BriefLink {
                        link: &l.master,
                        ifname: &l.current_name,
                        operstate,
                        address: &l.mac,
                        flags,
                    }
                })
                .collect(),
        };
        return to_string(&doc, opts.pretty);
    }
    let doc = LinkDoc {
        schema_version: SCHEMA_VERSION,
        links: links.iter().map(|l| link(l, opts)).collect(),
        ports: opts.stats.then(|| {
            ports
                .iter()
                .map(|p| Port {
                    master: &p.master,
                    drops: drops(&p.drops),
                })
                .collect()
        }),
    };
    to_string(&doc, opts.pretty)
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    schema_version: u32,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'a str,
    message: &'a str,
    exit_code: u8,
}

/// One error as `-j` prints it on stderr (one line): `message` without the `Error: ` the
/// text form starts with.
pub fn error_line(message: &str, kind: &str, exit_code: u8) -> String {
    let message = message.strip_prefix("Error: ").unwrap_or(message);
    let doc = ErrorDoc {
        schema_version: SCHEMA_VERSION,
        error: ErrorBody {
            kind,
            message,
            exit_code,
        },
    };
    serde_json::to_string(&doc).unwrap_or_default()
}

#[derive(Serialize)]
struct NoteDoc<'a> {
    schema_version: u32,
    note: NoteBody<'a>,
}

#[derive(Serialize)]
struct NoteBody<'a> {
    /// `warning` or `note`.
    level: &'a str,
    message: &'a str,
}

/// A note from the daemon as `-j` prints it on stderr (one line); `warning: …` notes are
/// level `warning`, the rest `note`.
pub fn note_line(note: &str) -> String {
    let (level, message) = match note.strip_prefix("warning: ") {
        Some(m) => ("warning", m),
        None => ("note", note),
    };
    let doc = NoteDoc {
        schema_version: SCHEMA_VERSION,
        note: NoteBody { level, message },
    };
    serde_json::to_string(&doc).unwrap_or_default()
}
