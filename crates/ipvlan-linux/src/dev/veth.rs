//! Slave devices as veth pairs, for kernels whose eBPF programs switch the slaves' frames.
//!
//! A slave is a veth pair made in the master's namespace:
//!
//! - the **slave end**, named as the user asked (`ipvl0`), carrying the master's MAC, with
//!   `addr_gen_mode none` (the daemon adds each slave's link-local itself). The user moves it
//!   into a container's namespace and may rename it there; every method below follows it.
//! - the **host end**, named [`host_name`] (`ipvh<master ifindex>-<slave id>`), which stays in
//!   the master's namespace. The eBPF programs on its ingress switch what the slave sends; for
//!   the userspace fallback data plane it is read and written through a packet socket
//!   ([`Veth::open_io`]) with the same `virtio_net_hdr` ([`crate::vnet`]) in front of each frame
//!   as on a TAP, so the data plane treats both alike.
//!
//! The pair is made by one `RTM_NEWLINK` ([`Rtnl::add_veth`]); the host end then gets IPv6
//! address generation off, `accept_ra=0`, `router_solicitations=0`, IPv4 and IPv6 `forwarding=1`,
//! `rp_filter=0` and IPv6 `force_forwarding=1` (where the kernel has it, 6.17+), and is brought
//! up. Its MTU is 65535 (`ETH_MAX_MTU`, a veth's maximum): what the slave sends is checked
//! against the host end's MTU when it arrives there (`__dev_forward_skb` →
//! `is_skb_forwardable`), and only the slave end's MTU (the master's) limits what reaches the
//! slave. GSO super-frames pass either way.
//!
//! A veth end has carrier exactly when both ends are up (`veth_open`, `veth_close`): the
//! slave's carrier is therefore set by bringing the host end up or down ([`Veth::set_carrier`]).
//!
//! The slave end is reached from the master's namespace wherever it is: the host end's
//! `IFLA_LINK` is its index and `IFLA_LINK_NETNSID` the id of its namespace (absent when it is
//! the master's). `RTM_GETLINK` with `IFLA_TARGET_NETNSID` (Linux 4.20+) reads it there from
//! the master's namespace; changes are made from a thread inside its namespace, because
//! `RTM_SETLINK` ignores that attribute (checked on 6.18: the index is looked up in the
//! sender's namespace). Each [`Veth`] keeps an rtnetlink socket and a handle on the namespace
//! it was made or found in, so its methods work from any thread.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use ipvlan_core::MacAddr;

use crate::error::io_like_error;
use crate::netns::{all_namespaces, NetNs, NetNsError};
use crate::packet::{PacketError, PacketSocket};
use crate::rtnl::{Link, LinkChange, Rtnl, RtnlError};

/// The host end's MTU: `ETH_MAX_MTU`, the largest a veth takes.
pub const HOST_END_MTU: u32 = 65535;

/// The longest interface name the kernel takes (`IFNAMSIZ - 1`).
const MAX_NAME_LEN: usize = 15;

/// A failed setup or control operation on a veth slave. The per-frame calls ([`VethIo::recv`],
/// [`VethIo::send`]) return plain `io::Error`s instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VethError {
    /// The name is not one the kernel takes (`dev_valid_name`): empty, longer than 15 bytes,
    /// `.` or `..`, or with a `/`, `:`, NUL or white space. Kind `InvalidInput`; no OS error.
    #[error("invalid interface name {name:?}")]
    InvalidName { name: String },
    /// Creating the pair found a device named `name` already (`EEXIST`). Kind `AlreadyExists`.
    #[error("cannot create veth {host}: a device named {name} already exists: {source}")]
    Exists {
        host: String,
        name: String,
        #[source]
        source: io::Error,
    },
    /// No link named `host` in the namespace ([`Veth::attach`]), or the host end is gone. Kind
    /// `NotFound`; no OS error.
    #[error("veth host end {host} not found")]
    NotFound { host: String },
    /// The link named `host` is not a veth (`IFLA_INFO_KIND` is `kind`). Kind
    /// `InvalidInput`; no OS error.
    #[error("{host} is not a veth (kind {kind:?})")]
    NotVeth { host: String, kind: Option<String> },
    /// The slave end is gone, or in a namespace we cannot see (`IFLA_LINK_NETNSID` is `nsid`,
    /// but neither a process nor a `/run/netns` bind mount holds a namespace of that id). Kind
    /// `NotFound`; no OS error.
    #[error("the slave end of veth {host} is gone or out of reach (namespace id {nsid:?})")]
    PeerNotFound { host: String, nsid: Option<i32> },
    /// An rtnetlink request failed; `doing` says what it was for.
    #[error("veth {host}: {doing}: {source}")]
    Rtnl {
        host: String,
        doing: &'static str,
        #[source]
        source: RtnlError,
    },
    /// Writing a sysctl of the host end failed (`path` under `/proc/sys/net`).
    #[error("veth {host}: writing {}: {source}", path.display())]
    Sysctl {
        host: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Opening or entering the master's namespace failed.
    #[error("veth {host}: {source}")]
    Netns {
        host: String,
        #[source]
        source: NetNsError,
    },
    /// Opening the packet socket on the host end failed.
    #[error("veth {host}: {source}")]
    Packet {
        host: String,
        #[source]
        source: PacketError,
    },
}

impl VethError {
    pub(crate) fn io_source(&self) -> Option<&io::Error> {
        match self {
            VethError::InvalidName { .. }
            | VethError::NotFound { .. }
            | VethError::NotVeth { .. }
            | VethError::PeerNotFound { .. } => None,
            VethError::Exists { source, .. } | VethError::Sysctl { source, .. } => Some(source),
            VethError::Rtnl { source, .. } => source.io_source(),
            VethError::Netns { source, .. } => source.io_source(),
            VethError::Packet { source, .. } => source.io_source(),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            VethError::InvalidName { .. } | VethError::NotVeth { .. } => {
                Some(io::ErrorKind::InvalidInput)
            }
            VethError::Exists { .. } => Some(io::ErrorKind::AlreadyExists),
            VethError::NotFound { .. } | VethError::PeerNotFound { .. } => {
                Some(io::ErrorKind::NotFound)
            }
            VethError::Rtnl { source, .. } => Some(source.kind()),
            VethError::Netns { source, .. } => Some(source.kind()),
            VethError::Packet { source, .. } => Some(source.kind()),
            VethError::Sysctl { .. } => None,
        }
    }
}

io_like_error!(VethError);

/// The host end's name for slave `slave_id` of the master whose index is `master_ifindex`:
/// `ipvh<master_ifindex>-<slave_id>` in decimal (`ipvh3-1`). [`VethError::InvalidName`] if it
/// is longer than 15 bytes.
pub fn host_name(master_ifindex: u32, slave_id: u32) -> Result<String, VethError> {
    let name = format!("ipvh{master_ifindex}-{slave_id}");
    check_name(&name)?;
    Ok(name)
}

/// Refuses a name the kernel would (`dev_valid_name` in `net/core/dev.c`).
fn check_name(name: &str) -> Result<(), VethError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        return Err(VethError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The sysctls of the host end (`Documentation/networking/ip-sysctl.rst`), relative to
/// `/proc/sys/net`, `{}` standing for the device's name: no SLAAC or router solicitation on a
/// device that has no addresses; forwarding on (the eBPF programs hand its frames to the
/// master namespace's stack to be routed), and no reverse-path filter that would drop them (the
/// effective `rp_filter` is the maximum of `all` and the device's). The device's own IPv6
/// `forwarding` does not make the namespace forward IPv6 (that is `all`'s, or
/// `force_forwarding`), but the programs' FIB lookup (`bpf_ipv6_fib_lookup`) requires it of the
/// device the packet came in on, and only changes how this address-less device treats RAs.
pub(crate) const HOST_SYSCTLS: &[(&str, &str)] = &[
    ("ipv6/conf/{}/accept_ra", "0"),
    ("ipv6/conf/{}/router_solicitations", "0"),
    ("ipv6/conf/{}/forwarding", "1"),
    ("ipv4/conf/{}/forwarding", "1"),
    ("ipv4/conf/{}/rp_filter", "0"),
];

/// IPv6 forwarding on one device whatever the namespace-wide setting (Linux 6.17+); skipped
/// where the kernel does not have it.
pub(crate) const FORCE_FORWARDING: &str = "ipv6/conf/{}/force_forwarding";

/// The path of sysctl `rel` (as in [`HOST_SYSCTLS`]) for device `dev`.
pub(crate) fn sysctl_path(rel: &str, dev: &str) -> PathBuf {
    Path::new("/proc/sys/net").join(rel.replace("{}", dev))
}

/// Writes `value` to the sysctl at `path`. `/proc/sys/net` shows the namespace of the task
/// that looks a file up (`net_ctl_header_lookup` uses `current`), so this is the calling
/// thread's namespace, not the process's.
pub(crate) fn write_sysctl(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// A veth slave: the host end in the master's namespace and, through it, the slave end
/// wherever it lives now.
#[derive(Debug)]
pub struct Veth {
    host_name: String,
    host_index: u32,
    slave_index: u32,
    /// An rtnetlink socket in the master's namespace.
    rtnl: Mutex<Rtnl>,
    /// The master's namespace (where the host end lives).
    home: NetNs,
}

impl Veth {
    /// Creates the veth pair of a new slave in the calling thread's namespace (the master's):
    /// the slave end `name` with `mac` (the master's) and MTU `mtu` (bytes), down, with
    /// `addr_gen_mode none`; the host end `host_name` (see [`host_name`]) with MTU
    /// [`HOST_END_MTU`], a random locally administered MAC (the kernel's, never `mac`),
    /// `addr_gen_mode none`, the sysctls described in the [module docs](self), and up.
    ///
    /// Errors: [`VethError::InvalidName`] for a name the kernel would refuse;
    /// [`VethError::Exists`] (kind `AlreadyExists`) if either name is taken; otherwise the
    /// failing request or sysctl. On any failure after the pair was made, it is deleted again.
    pub fn create(name: &str, host_name: &str, mac: MacAddr, mtu: u32) -> Result<Veth, VethError> {
        check_name(name)?;
        check_name(host_name)?;
        let host = host_name.to_owned();
        let rtnl_err = |doing: &'static str| {
            let host = host.clone();
            move |source| VethError::Rtnl {
                host,
                doing,
                source,
            }
        };
        let home = NetNs::current().map_err(|source| VethError::Netns {
            host: host.clone(),
            source,
        })?;
        let mut rtnl = Rtnl::open().map_err(rtnl_err("opening rtnetlink"))?;
        let slave_change = LinkChange {
            mtu: Some(mtu),
            mac: Some(mac),
            ..LinkChange::default()
        };
        let host_change = LinkChange {
            mtu: Some(HOST_END_MTU),
            ..LinkChange::default()
        };
        if let Err(e) = rtnl.add_veth(name, &slave_change, host_name, &host_change) {
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) => {
                    // Which name is taken: the slave's unless only the host end's is.
                    let taken = match rtnl.link_by_name(host_name) {
                        Ok(Some(_)) if !matches!(rtnl.link_by_name(name), Ok(Some(_))) => host_name,
                        _ => name,
                    };
                    VethError::Exists {
                        host,
                        name: taken.to_owned(),
                        source: io::Error::from_raw_os_error(libc::EEXIST),
                    }
                }
                _ => rtnl_err("creating the pair")(e),
            });
        }
        let found = rtnl
            .link_by_name(host_name)
            .map_err(rtnl_err("reading the host end"));
        let host_link = match found {
            Ok(Some(l)) => l,
            Ok(None) => return Err(VethError::NotFound { host }),
            Err(e) => {
                let _ = delete_by_name(&mut rtnl, host_name);
                return Err(e);
            }
        };
        let veth = Veth {
            host_name: host.clone(),
            host_index: host_link.index,
            slave_index: host_link.link.unwrap_or(0),
            rtnl: Mutex::new(rtnl),
            home,
        };
        match veth.set_up(&host_link, mac) {
            Ok(()) => Ok(veth),
            Err(e) => {
                let _ = veth.destroy();
                Err(e)
            }
        }
    }

    /// The settings of a new pair after `RTM_NEWLINK`: addresses generation off on both ends,
    /// a host-end MAC other than `mac`, the host end's sysctls, the host end up.
    fn set_up(&self, host_link: &Link, mac: MacAddr) -> Result<(), VethError> {
        let mut rtnl = self.rtnl();
        let addrgen = LinkChange {
            addrgen_none: true,
            ..LinkChange::default()
        };
        let (nsid, slave) = peer_of(&self.host_name, host_link)?;
        debug_assert!(nsid.is_none(), "a new pair is in one namespace");
        rtnl.set_link(slave, &addrgen)
            .map_err(self.rtnl_err("turning address generation off on the slave end"))?;
        rtnl.set_link(self.host_index, &addrgen)
            .map_err(self.rtnl_err("turning address generation off on the host end"))?;
        if host_link.mac == Some(mac) {
            // The kernel's random MAC is the master's: one chance in 2^46.
            let mut other = mac;
            other.0[5] ^= 1;
            let change = LinkChange {
                mac: Some(other),
                ..LinkChange::default()
            };
            rtnl.set_link(self.host_index, &change)
                .map_err(self.rtnl_err("setting the host end's MAC"))?;
        }
        let sysctl = |rel: &str, value: &str| {
            let path = sysctl_path(rel, &self.host_name);
            write_sysctl(&path, value).map_err(|source| VethError::Sysctl {
                host: self.host_name.clone(),
                path,
                source,
            })
        };
        let ipv6 = sysctl_path("ipv6/conf/{}", &self.host_name).exists();
        for (rel, value) in HOST_SYSCTLS {
            if ipv6 || !rel.starts_with("ipv6/") {
                sysctl(rel, value)?;
            }
        }
        if sysctl_path(FORCE_FORWARDING, &self.host_name).exists() {
            sysctl(FORCE_FORWARDING, "1")?;
        }
        let up = LinkChange {
            up: Some(true),
            ..LinkChange::default()
        };
        rtnl.set_link(self.host_index, &up)
            .map_err(self.rtnl_err("bringing the host end up"))
    }

    /// Finds the pair of an existing slave by its host end's name in the calling thread's
    /// namespace (the master's, after a daemon restart), and the slave end through it.
    ///
    /// Errors: [`VethError::NotFound`] without such a link, [`VethError::NotVeth`] if it is
    /// another kind of link, [`VethError::PeerNotFound`] if it names no peer.
    pub fn attach(host_name: &str) -> Result<Veth, VethError> {
        check_name(host_name)?;
        let host = host_name.to_owned();
        let home = NetNs::current().map_err(|source| VethError::Netns {
            host: host.clone(),
            source,
        })?;
        let err = |doing| {
            let host = host.clone();
            move |source| VethError::Rtnl {
                host,
                doing,
                source,
            }
        };
        let mut rtnl = Rtnl::open().map_err(err("opening rtnetlink"))?;
        let link = rtnl
            .link_by_name(host_name)
            .map_err(err("reading the host end"))?
            .ok_or_else(|| VethError::NotFound { host: host.clone() })?;
        if link.kind.as_deref() != Some("veth") {
            return Err(VethError::NotVeth {
                host,
                kind: link.kind,
            });
        }
        let (_, slave_index) = peer_of(host_name, &link)?;
        Ok(Veth {
            host_name: host,
            host_index: link.index,
            slave_index,
            rtnl: Mutex::new(rtnl),
            home,
        })
    }

    fn rtnl(&self) -> MutexGuard<'_, Rtnl> {
        self.rtnl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rtnl_err(&self, doing: &'static str) -> impl FnOnce(RtnlError) -> VethError + '_ {
        move |source| VethError::Rtnl {
            host: self.host_name.clone(),
            doing,
            source,
        }
    }

    /// The host end's interface index in the master's namespace.
    pub fn host_ifindex(&self) -> u32 {
        self.host_index
    }

    /// The host end's name (`ipvh<master>-<id>`).
    pub fn host_name(&self) -> &str {
        &self.host_name
    }

    /// The slave end's interface index when the pair was made or found (it may change when
    /// the slave end moves to another namespace: [`Veth::peer`] reads it now).
    pub fn slave_ifindex(&self) -> u32 {
        self.slave_index
    }

    /// The master's namespace, where the host end lives.
    pub fn home(&self) -> &NetNs {
        &self.home
    }

    /// Where the slave end is now, read from the host end (`RTM_GETLINK`): the id of its
    /// namespace as the master's sees it (`IFLA_LINK_NETNSID`; `None`: the master's own) and
    /// its index there (`IFLA_LINK`). [`VethError::NotFound`] once the host end is gone.
    pub fn peer(&self) -> Result<(Option<i32>, u32), VethError> {
        let link = self
            .rtnl()
            .link_by_index(self.host_index)
            .map_err(self.rtnl_err("reading the host end"))?
            .filter(|l| l.name == self.host_name)
            .ok_or_else(|| VethError::NotFound {
                host: self.host_name.clone(),
            })?;
        peer_of(&self.host_name, &link)
    }

    /// The slave end as its namespace sees it now (`RTM_GETLINK` with `IFLA_TARGET_NETNSID`
    /// when it is elsewhere). [`VethError::PeerNotFound`] if it is gone.
    pub fn slave_link(&self) -> Result<Link, VethError> {
        let (nsid, index) = self.peer()?;
        self.rtnl()
            .link_by_index_in(nsid, index)
            .map_err(self.rtnl_err("reading the slave end"))?
            .ok_or_else(|| VethError::PeerNotFound {
                host: self.host_name.clone(),
                nsid,
            })
    }

    /// The slave end's name now (the user may have moved and renamed it).
    pub fn current_name(&self) -> Result<String, VethError> {
        Ok(self.slave_link()?.name)
    }

    /// Sets the slave end's MAC (always the master's, R-MAC-1) wherever it is: `RTM_SETLINK`
    /// from the master's namespace, or from a thread inside the slave end's
    /// ([`Veth::slave_netns`]) when it has moved (`IFLA_TARGET_NETNSID` is read-only: the
    /// kernel ignores it on `RTM_SETLINK`). A veth takes a new MAC while up
    /// (`IFF_LIVE_ADDR_CHANGE`).
    pub fn set_mac(&self, mac: MacAddr) -> Result<(), VethError> {
        let (nsid, index) = self.peer()?;
        let change = LinkChange {
            mac: Some(mac),
            ..LinkChange::default()
        };
        let doing = "setting the slave end's MAC";
        if nsid.is_none() {
            return self
                .rtnl()
                .set_link(index, &change)
                .map_err(self.rtnl_err(doing));
        }
        let ns = self.netns_of(nsid)?;
        ns.run(|| Rtnl::open()?.set_link(index, &change))
            .map_err(|source| VethError::Netns {
                host: self.host_name.clone(),
                source,
            })?
            .map_err(self.rtnl_err(doing))
    }

    /// Sets the slave end's carrier (it follows the master's, R-LINK-1) by bringing the host
    /// end up or down: a veth end has carrier exactly when both ends are up (`veth_open`,
    /// `veth_close` in `drivers/net/veth.c`), so with the host end down the slave's stack sees
    /// `NO-CARRIER` whatever the user does. The packet socket of [`Veth::open_io`] stays bound
    /// across it.
    pub fn set_carrier(&self, on: bool) -> Result<(), VethError> {
        let change = LinkChange {
            up: Some(on),
            ..LinkChange::default()
        };
        self.rtnl()
            .set_link(self.host_index, &change)
            .map_err(self.rtnl_err("setting the host end up or down"))
    }

    /// Whether the slave end is in the master's namespace now; `false` too if that cannot be
    /// read (the pair is gone).
    pub fn same_ns(&self) -> bool {
        matches!(self.peer(), Ok((None, _)))
    }

    /// The namespace the slave end lives in now: the master's if it has not moved, else the
    /// one among [`all_namespaces`] (those of processes and `/run/netns`) whose id in the
    /// master's namespace (`RTM_GETNSID` with `NETNSA_FD`) is the peer's `IFLA_LINK_NETNSID`.
    /// [`VethError::PeerNotFound`] (kind `NotFound`) if no process or bind mount holds it;
    /// [`VethError::NotFound`] once the pair is gone.
    pub fn slave_netns(&self) -> Result<NetNs, VethError> {
        let (nsid, _) = self.peer()?;
        self.netns_of(nsid)
    }

    /// The namespace whose id in the master's is `nsid` (`None`: the master's own).
    fn netns_of(&self, nsid: Option<i32>) -> Result<NetNs, VethError> {
        let netns_err = |source| VethError::Netns {
            host: self.host_name.clone(),
            source,
        };
        let Some(nsid) = nsid else {
            return self
                .home
                .try_clone()
                .map_err(|source| netns_err(NetNsError::Identify { source }));
        };
        let mut rtnl = self.rtnl();
        for ns in all_namespaces() {
            if ns.id() == self.home.id() {
                continue;
            }
            match rtnl.nsid(&ns) {
                Ok(Some(id)) if id == nsid => return Ok(ns),
                _ => {}
            }
        }
        Err(VethError::PeerNotFound {
            host: self.host_name.clone(),
            nsid: Some(nsid),
        })
    }

    /// [`Veth::slave_netns`] as the daemon's seam wants it: the error is a [`VethError`]
    /// converted.
    pub fn netns(&self) -> io::Result<NetNs> {
        Ok(self.slave_netns()?)
    }

    /// Deletes the pair (`RTM_DELLINK` of the host end, which takes the slave end with it,
    /// wherever it is). Already gone is success.
    pub fn destroy(&self) -> Result<(), VethError> {
        let mut rtnl = self.rtnl();
        let link = rtnl
            .link_by_index(self.host_index)
            .map_err(self.rtnl_err("reading the host end"))?;
        // Gone, or its index now belongs to another device.
        if link.is_none_or(|l| l.name != self.host_name) {
            return Ok(());
        }
        match rtnl.del_link(self.host_index) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                Err(self.rtnl_err("deleting the pair")(e))
            }
            _ => Ok(()),
        }
    }

    /// A packet socket on the host end for the userspace data plane ([`VethIo`]), opened in
    /// the master's namespace whatever the calling thread's.
    pub fn open_io(&self) -> Result<VethIo, VethError> {
        let open = || PacketSocket::open(self.host_index);
        let here = NetNs::current().map(|ns| ns.id() == self.home.id());
        let sock = if matches!(here, Ok(true)) {
            open()
        } else {
            self.home.run(open).map_err(|source| VethError::Netns {
                host: self.host_name.clone(),
                source,
            })?
        };
        let sock = sock.map_err(|source| VethError::Packet {
            host: self.host_name.clone(),
            source,
        })?;
        Ok(VethIo { sock })
    }
}

/// The slave end as link `host` (the host end) names it: `IFLA_LINK_NETNSID` and `IFLA_LINK`.
/// The kernel leaves `IFLA_LINK` out when the peer's index equals the host end's, which
/// happens only across namespaces.
fn peer_of(host: &str, link: &Link) -> Result<(Option<i32>, u32), VethError> {
    match (link.link_netnsid, link.link) {
        (nsid, Some(index)) => Ok((nsid, index)),
        (Some(nsid), None) => Ok((Some(nsid), link.index)),
        (None, None) => Err(VethError::PeerNotFound {
            host: host.to_owned(),
            nsid: None,
        }),
    }
}

/// Deletes the link named `name`, if any (the rollback of a half-made pair).
fn delete_by_name(rtnl: &mut Rtnl, name: &str) -> Result<(), RtnlError> {
    if let Some(l) = rtnl.link_by_name(name)? {
        rtnl.del_link(l.index)?;
    }
    Ok(())
}

/// Frames of a veth slave for the userspace data plane: a non-blocking packet socket bound to
/// the host end ([`PacketSocket::open`]: `PACKET_VNET_HDR`, `PACKET_IGNORE_OUTGOING`, so
/// frames written here are not read back). Every frame read or written starts with the
/// [`crate::vnet::HEADER_LEN`]-byte `virtio_net_hdr`, as on a TAP: a TCP super-frame the slave's
/// stack sends arrives whole with its `gso_type`, and one written here reaches the slave whole.
#[derive(Debug)]
pub struct VethIo {
    sock: PacketSocket,
}

impl VethIo {
    /// Frames through `sock` (a [`PacketSocket::open`] on the device that stands for the
    /// slave: a veth host end, or an ipvtap's TAP, [`crate::vmtap`]).
    pub(crate) fn new(sock: PacketSocket) -> VethIo {
        VethIo { sock }
    }

    /// Reads one frame (vnet header first) the slave transmitted; returns its length, at most
    /// `buf.len()`. `WouldBlock` when none is waiting; `EMSGSIZE` for a frame longer than
    /// `buf` (dropped, as a TAP drops one that does not fit the read). A buffer of
    /// `HEADER_LEN + 65535` bytes holds any frame.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, _) = self.sock.recv(buf)?;
        if n > buf.len() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        Ok(n)
    }

    /// Delivers one frame (vnet header first) to the slave: it leaves through the host end and
    /// arrives at the slave end. `WouldBlock` when the socket's send buffer is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.sock.send(frame)
    }

    /// The descriptor, readable when a frame waits.
    pub fn poll_fd(&self) -> RawFd {
        self.sock.poll_fd()
    }

    /// Frames the kernel dropped for this socket since the last call (receive buffer full).
    pub fn take_drops(&self) -> io::Result<u32> {
        self.sock.take_drops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_decimal_and_fit_ifnamsiz() {
        assert_eq!(host_name(3, 1).expect("short"), "ipvh3-1");
        assert_eq!(
            host_name(12345, 99999).expect("15 bytes"),
            "ipvh12345-99999"
        );
        assert!(host_name(12345, 100_000).is_err());
        let e = host_name(u32::MAX, u32::MAX).expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.raw_os_error(), None);
    }

    #[test]
    fn names_the_kernel_refuses_are_refused_first() {
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-bytes-xx"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("fifteen-bytes-x").is_ok());
    }

    #[test]
    fn a_taken_name_is_already_exists_and_says_which() {
        let e = VethError::Exists {
            host: "ipvh3-1".into(),
            name: "ipvl0".into(),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        let text = e.to_string();
        assert!(
            text.contains("a device named ipvl0 already exists"),
            "{text}"
        );
        let io = io::Error::from(e);
        assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(io.to_string(), text);
    }

    #[test]
    fn the_peer_index_defaults_to_the_host_ends_across_namespaces() {
        let mut l = Link {
            index: 7,
            name: "ipvh3-1".into(),
            mac: None,
            mtu: 0,
            link_type: 1,
            up: true,
            noarp: false,
            loopback: false,
            carrier: None,
            oper_up: true,
            alias: None,
            kind: Some("veth".into()),
            controller: None,
            link: Some(8),
            link_netnsid: None,
            addrgen: None,
            ipv6_token: None,
        };
        assert_eq!(peer_of("h", &l).expect("peer"), (None, 8));
        l.link = None;
        l.link_netnsid = Some(2);
        assert_eq!(peer_of("h", &l).expect("peer"), (Some(2), 7));
        l.link_netnsid = None;
        let e = peer_of("h", &l).expect_err("no peer");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn sysctl_paths_name_the_device() {
        assert_eq!(
            sysctl_path(FORCE_FORWARDING, "ipvh3-1"),
            Path::new("/proc/sys/net/ipv6/conf/ipvh3-1/force_forwarding")
        );
    }
}
