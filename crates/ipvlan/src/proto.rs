//! The control protocol between the CLI and the daemon: one JSON request per connection, one
//! JSON response back, over a root-only Unix socket (`monitor drops`: the response on one
//! line, then a stream of JSON lines).

pub use ipvlan_core::{Flag, Mode};
use serde::{Deserialize, Serialize};

/// Largest request the daemon reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/ipvlan/ipvlan.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ipvlan";

/// One request. The JSON is flat, `{"cmd": "link_add", "master": …}`: the variant's struct
/// fields sit beside the `cmd` tag.
// Variants are named after the CLI verbs (`link add`…); other objects will follow.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    LinkAdd(LinkAdd),
    LinkDel(LinkDel),
    LinkSet(LinkSet),
    LinkShow(LinkShow),
    /// `monitor drops`: answered with a stream (see the daemon's `monitor::stream`).
    MonitorDrops(MonitorDrops),
    /// `address add ADDR[/LEN] dev NAME`: an address of an ipvtap slave's guest.
    AddressAdd(AddressChange),
    /// `address del ADDR[/LEN] dev NAME`.
    AddressDel(AddressChange),
}

/// `address add|del ADDR[/LEN] dev NAME` (iproute2's `ip address` grammar): the addresses of
/// an ipvtap slave, which live inside its guest where the daemon cannot see them. The prefix
/// length is accepted and ignored (a slave owns addresses, not prefixes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressChange {
    pub dev: String,
    pub address: std::net::IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
}

/// Who may open an ipvtap's TAP without `CAP_NET_ADMIN` (`link add … type ipvtap user UID
/// group GID`: `TUNSETOWNER`, `TUNSETGROUP`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapOwner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
}

/// `link add link MASTER name NAME type ipvlan [mode M] [FLAG] [mtu N] [spoofchk on|off]`.
/// `mode`/`flag` are present only when given, as iproute2 would send them (R-CLI-1, R-CLI-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkAdd {
    pub master: String,
    pub name: String,
    pub mode: Option<Mode>,
    pub flag: Option<Flag>,
    /// Bytes, 68…65535 (R-MTU-2); `None`: the master's (R-MTU-1). One above the master's is
    /// accepted, as the kernel accepts it, with a note saying what it means.
    pub mtu: Option<u32>,
    /// `spoofchk on|off`: the source-address guard.
    #[serde(default)]
    pub spoofchk: Option<bool>,
    /// `backend veth|tap`: what the slave's device is made of (default: what the port's data
    /// path uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,
    /// The container attachment the slave is made for (by the CNI or netavark plugin): kept
    /// with the slave, persisted, and shown, so that CNI GC can find a network's stale slaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// `hostreach on|off`: the master's namespace and the slaves reach each other (the whole
    /// port; `None`: unchanged, off for a new port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostreach: Option<bool>,
    /// `type ipvtap user UID group GID`: who may open the TAP (ipvtap only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap_owner: Option<TapOwner>,
}

/// A container's attachment to a network, as the CNI spec names it (section 2, `GC`:
/// `cni.dev/valid-attachments`): the network's `name`, `CNI_CONTAINERID` and `CNI_IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network configuration's `name`.
    pub network: String,
    /// `CNI_CONTAINERID` (netavark: the container id).
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` (netavark: the interface name in the container).
    pub ifname: String,
}

/// What a slave's device is made of (`link add … backend veth|tap`, or `type ipvtap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A TAP (state files from before backends name none: they are TAPs).
    #[default]
    Tap,
    Veth,
    /// A TAP in the master's namespace whose descriptor a virtual machine monitor holds: the
    /// guest is the slave (`link add … type ipvtap`).
    Ipvtap,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tap => "tap",
            BackendKind::Veth => "veth",
            BackendKind::Ipvtap => "ipvtap",
        }
    }

    /// Parses `tap` or `veth` (`backend …`; an ipvtap is asked for by `type ipvtap`).
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "tap" => Some(BackendKind::Tap),
            "veth" => Some(BackendKind::Veth),
            _ => None,
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `link del NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDel {
    pub name: String,
}

/// `link set dev NAME [type ipvlan [mode M] [FLAG]] [spoofchk on|off]`: a mode or flag
/// changes the whole port (R-OBJ-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSet {
    pub name: String,
    pub mode: Option<Mode>,
    pub flag: Option<Flag>,
    #[serde(default)]
    pub spoofchk: Option<bool>,
    /// `router on|off`: with `spoofchk on`, may the slave send router advertisements and
    /// redirects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<bool>,
    /// `hostreach on|off`: the whole port's (`name` may be the master's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostreach: Option<bool>,
}

/// `link show [NAME]`: every slave, or one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkShow {
    pub name: Option<String>,
}

/// `monitor drops [dev NAME]`: the daemon answers (a [`Response`] on one line) and, when it
/// accepted, streams the dropped frames as JSON lines until the client closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDrops {
    /// Only the drops charged to this slave, or to any device of the port of this master.
    #[serde(default)]
    pub dev: Option<String>,
}

/// How a request failed, for the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is invalid in itself.
    Invalid,
    /// It conflicts with what exists (name taken, busy master…).
    Conflict,
    /// Something it names does not exist.
    NotFound,
    /// The system refused an operation.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok {
        /// Things the user should know (e.g. every slave of the master changed mode).
        #[serde(default)]
        notes: Vec<String>,
        #[serde(default)]
        links: Vec<LinkView>,
        /// `link show` of every slave: each port's own counters (drops no slave is charged
        /// with).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ports: Vec<PortView>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

/// A port (one master) as `link show -s` presents it: what was dropped that no slave is
/// charged with (a wire broadcast the full backlog refused, a frame the master refused to
/// send for the multicast engine, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    pub master: String,
    /// Drops by reason (direction `port`).
    pub drops: Vec<Drop>,
    /// DHCP requests that reused the live transaction id of another slave's request (the
    /// newest sender gets the replies; docs/dhcp.md); absent while zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dhcp_xid_taken: u64,
}

/// A slave as `link show` presents it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkView {
    pub name: String,
    /// The name the device has now, if the user renamed it.
    pub current_name: String,
    pub master: String,
    pub mode: Mode,
    pub flag: Flag,
    /// `dev_id` (R-DEVID-1).
    pub id: u16,
    pub mtu: u32,
    pub mac: String,
    /// Namespace name (`ip netns`), `None` when it is the daemon's own.
    pub netns: Option<String>,
    pub ifindex: u32,
    pub up: bool,
    pub noarp: bool,
    pub carrier: bool,
    /// The source-address guard is on.
    pub spoofchk: bool,
    /// With the guard on, the slave may send router advertisements and redirects.
    #[serde(default)]
    pub router: bool,
    /// The slave backend its device is made of (`tap`); empty from daemons before backends.
    #[serde(default)]
    pub backend: String,
    /// Device queues the data plane reads (more than one: flows steered over the workers).
    #[serde(default)]
    pub queues: u32,
    /// What switches the port's frames: `bpf-tcx`, `bpf-tc` or `user`; empty from daemons
    /// before data paths.
    #[serde(default)]
    pub datapath: String,
    /// A veth slave's host end, in the master's namespace (`ipvh<master ifindex>-<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_end: Option<String>,
    /// The port's `hostreach` option.
    #[serde(default)]
    pub hostreach: bool,
    /// The port's host slave device while `hostreach` is on (`ipvlh<master ifindex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_device: Option<String>,
    pub addresses: Vec<String>,
    /// The container attachment the slave was made for, if a plugin made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    /// Addresses configured on this slave that another slave of the port already owns: not
    /// served (the kernel would have refused them with EADDRINUSE).
    pub conflicts: Vec<Conflict>,
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub address: String,
    pub owner: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_multicast: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    /// Drops by reason: `[direction, reason, count]` with direction `rx` or `tx`.
    pub drops: Vec<Drop>,
    /// Address claims refused because another slave owned the address.
    pub address_conflicts: u64,
    /// DHCPv4 replies delivered to the slave by their transaction id (docs/dhcp.md); absent
    /// while zero (and from older daemons).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dhcp_steered: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drop {
    pub direction: String,
    pub reason: String,
    pub count: u64,
}
