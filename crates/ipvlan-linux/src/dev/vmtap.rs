//! ipvtap slaves: a persistent single-queue TAP in the master's namespace whose descriptor
//! belongs to a virtual machine monitor (QEMU `-netdev tap,ifname=NAME`, Firecracker
//! `host_dev_name`), not to the daemon. The guest behind it is the slave.
//!
//! It is a veth slave without a slave end: the TAP itself is the host end. What the VMM writes
//! (the guest's transmissions) arrives as the TAP's ingress, where the eBPF programs switch it
//! exactly as on a veth host end, or where the userspace data plane reads it through a packet
//! socket ([`VmTap::open_io`], the same [`VethIo`] as on a veth host end); what leaves the TAP
//! (its egress, `bpf_redirect(ifindex, 0)` or a packet-socket write) is read by the VMM and
//! reaches the guest.
//!
//! The daemon makes it ([`Tap::create_for_vmm`]: `TUNSETIFF` without `IFF_MULTI_QUEUE`,
//! `TUNSETOWNER`/`TUNSETGROUP`, `TUNSETPERSIST`), closes its descriptor, and drives it through
//! rtnetlink alone: addresses generation off, the sysctls below, up or down (its carrier is the
//! kernel's: on while the VMM has it open, `tun_attach`), deleted by `RTM_DELLINK` (which works
//! while the VMM holds it: the VMM's descriptor then fails).
//!
//! The master namespace's own stack also sees the guest's frames on the TAP. On the eBPF path
//! only what the programs pass on (`TC_ACT_OK`: l3 egress to be routed) reaches it; with the
//! userspace data plane every frame does, after the packet socket took its copy. So that it
//! never answers the guest for host addresses: `arp_ignore=8` always, and on the userspace path
//! IPv6 off on the TAP (`disable_ipv6=1`) and IPv4 forwarding off; on the eBPF path the veth
//! host end's sysctls ([`crate::veth`]), which l3 egress needs.

use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use ipvlan_core::MacAddr;

use crate::error::io_like_error;
use crate::netns::{NetNs, NetNsError};
use crate::packet::{PacketError, PacketSocket};
use crate::rtnl::{LinkChange, Rtnl, RtnlError};
use crate::tap::{Tap, TapError};
use crate::veth::{sysctl_path, write_sysctl, VethIo, FORCE_FORWARDING, HOST_SYSCTLS};

/// A failed setup or control operation on an ipvtap's TAP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmTapError {
    /// Creating the TAP failed ([`TapError::Exists`]: the name is taken, kind
    /// `AlreadyExists`).
    #[error(transparent)]
    Tap(#[from] TapError),
    /// No link named `name` in the namespace ([`VmTap::attach`]), or it is gone. Kind
    /// `NotFound`; no OS error.
    #[error("ipvtap {name} not found")]
    NotFound { name: String },
    /// The link named `name` is not a TUN/TAP device (`IFLA_INFO_KIND` is `kind`). Kind
    /// `InvalidInput`; no OS error.
    #[error("{name} is not a TAP (kind {kind:?})")]
    NotTap { name: String, kind: Option<String> },
    /// An rtnetlink request failed; `doing` says what it was for.
    #[error("ipvtap {name}: {doing}: {source}")]
    Rtnl {
        name: String,
        doing: &'static str,
        #[source]
        source: RtnlError,
    },
    /// Writing a sysctl of the TAP failed (`path` under `/proc/sys/net`).
    #[error("ipvtap {name}: writing {}: {source}", path.display())]
    Sysctl {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Opening or entering the master's namespace failed.
    #[error("ipvtap {name}: {source}")]
    Netns {
        name: String,
        #[source]
        source: NetNsError,
    },
    /// Opening the packet socket on the TAP failed.
    #[error("ipvtap {name}: {source}")]
    Packet {
        name: String,
        #[source]
        source: PacketError,
    },
}

impl VmTapError {
    fn io_source(&self) -> Option<&io::Error> {
        match self {
            VmTapError::Tap(e) => e.io_source(),
            VmTapError::NotFound { .. } | VmTapError::NotTap { .. } => None,
            VmTapError::Rtnl { source, .. } => source.io_source(),
            VmTapError::Sysctl { source, .. } => Some(source),
            VmTapError::Netns { source, .. } => source.io_source(),
            VmTapError::Packet { source, .. } => source.io_source(),
        }
    }

    fn own_kind(&self) -> Option<io::ErrorKind> {
        match self {
            VmTapError::Tap(e) => Some(e.kind()),
            VmTapError::NotFound { .. } => Some(io::ErrorKind::NotFound),
            VmTapError::NotTap { .. } => Some(io::ErrorKind::InvalidInput),
            VmTapError::Rtnl { source, .. } => Some(source.kind()),
            VmTapError::Netns { source, .. } => Some(source.kind()),
            VmTapError::Packet { source, .. } => Some(source.kind()),
            VmTapError::Sysctl { .. } => None,
        }
    }
}

io_like_error!(VmTapError);

/// Sysctls of the TAP on both data paths: never answer ARP for the master namespace's
/// addresses (`arp_ignore=8`).
const COMMON_SYSCTLS: &[(&str, &str)] = &[("ipv4/conf/{}/arp_ignore", "8")];

/// Sysctls of the TAP on the userspace path, where the master namespace's stack has no use for
/// what arrives on it (the daemon hands l3 egress to the stack through raw sockets).
const USER_SYSCTLS: &[(&str, &str)] = &[
    ("ipv6/conf/{}/disable_ipv6", "1"),
    ("ipv4/conf/{}/forwarding", "0"),
];

/// An ipvtap's TAP in the master's namespace, driven by rtnetlink (the daemon holds no
/// descriptor of it).
#[derive(Debug)]
pub struct VmTap {
    name: String,
    index: u32,
    rtnl: Mutex<Rtnl>,
    home: NetNs,
}

impl VmTap {
    /// Creates the TAP `name` in the calling thread's namespace (the master's) for a VMM
    /// ([`Tap::create_for_vmm`] with `owner`/`group`), then: MTU `mtu` (bytes), a MAC other
    /// than `mac` (the master's, which the guest carries), address generation off, the sysctls
    /// of the [module docs](self) for the data path (`userspace`), and up.
    ///
    /// Errors: [`VmTapError::Tap`] (kind `AlreadyExists` if the name is taken); otherwise the
    /// failing request or sysctl, after which the TAP is deleted again.
    pub fn create(
        name: &str,
        mac: MacAddr,
        mtu: u32,
        owner: Option<u32>,
        group: Option<u32>,
        userspace: bool,
    ) -> Result<VmTap, VmTapError> {
        Tap::create_for_vmm(name, owner, group)?;
        let tap = VmTap::attach(name)?;
        match tap.set_up(mac, mtu, userspace) {
            Ok(()) => Ok(tap),
            Err(e) => {
                let _ = tap.destroy();
                Err(e)
            }
        }
    }

    fn set_up(&self, mac: MacAddr, mtu: u32, userspace: bool) -> Result<(), VmTapError> {
        let link = self
            .rtnl()
            .link_by_index(self.index)
            .map_err(self.rtnl_err("reading the TAP"))?
            .ok_or_else(|| VmTapError::NotFound {
                name: self.name.clone(),
            })?;
        let mut change = LinkChange {
            mtu: Some(mtu),
            addrgen_none: true,
            ..LinkChange::default()
        };
        if link.mac == Some(mac) {
            // The kernel's random MAC is the master's: one chance in 2^46.
            let mut other = mac;
            other.0[5] ^= 1;
            change.mac = Some(other);
        }
        self.rtnl()
            .set_link(self.index, &change)
            .map_err(self.rtnl_err("configuring the TAP"))?;
        let sysctl = |rel: &str, value: &str| {
            let path = sysctl_path(rel, &self.name);
            write_sysctl(&path, value).map_err(|source| VmTapError::Sysctl {
                name: self.name.clone(),
                path,
                source,
            })
        };
        let ipv6 = sysctl_path("ipv6/conf/{}", &self.name).exists();
        let wanted = if userspace {
            USER_SYSCTLS
        } else {
            HOST_SYSCTLS
        };
        for (rel, value) in COMMON_SYSCTLS.iter().chain(wanted) {
            if ipv6 || !rel.starts_with("ipv6/") {
                sysctl(rel, value)?;
            }
        }
        if !userspace && sysctl_path(FORCE_FORWARDING, &self.name).exists() {
            sysctl(FORCE_FORWARDING, "1")?;
        }
        self.set_carrier(true)
    }

    /// Finds the TAP `name` in the calling thread's namespace (the master's; after a daemon
    /// restart). Errors: [`VmTapError::NotFound`], [`VmTapError::NotTap`] for another kind of
    /// link.
    pub fn attach(name: &str) -> Result<VmTap, VmTapError> {
        let home = NetNs::current().map_err(|source| VmTapError::Netns {
            name: name.to_owned(),
            source,
        })?;
        let err = |doing| {
            move |source| VmTapError::Rtnl {
                name: name.to_owned(),
                doing,
                source,
            }
        };
        let mut rtnl = Rtnl::open().map_err(err("opening rtnetlink"))?;
        let link = rtnl
            .link_by_name(name)
            .map_err(err("reading the TAP"))?
            .ok_or_else(|| VmTapError::NotFound {
                name: name.to_owned(),
            })?;
        if link.kind.as_deref() != Some("tun") {
            return Err(VmTapError::NotTap {
                name: name.to_owned(),
                kind: link.kind,
            });
        }
        Ok(VmTap {
            name: name.to_owned(),
            index: link.index,
            rtnl: Mutex::new(rtnl),
            home,
        })
    }

    fn rtnl(&self) -> MutexGuard<'_, Rtnl> {
        self.rtnl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn rtnl_err(&self, doing: &'static str) -> impl FnOnce(RtnlError) -> VmTapError + '_ {
        move |source| VmTapError::Rtnl {
            name: self.name.clone(),
            doing,
            source,
        }
    }

    /// The TAP's interface index in the master's namespace.
    pub fn ifindex(&self) -> u32 {
        self.index
    }

    /// The name it was made or found with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its name now (`RTM_GETLINK` by index). [`VmTapError::NotFound`] once it is gone.
    pub fn current_name(&self) -> Result<String, VmTapError> {
        self.rtnl()
            .link_by_index(self.index)
            .map_err(self.rtnl_err("reading the TAP"))?
            .map(|l| l.name)
            .ok_or_else(|| VmTapError::NotFound {
                name: self.name.clone(),
            })
    }

    /// Brings the TAP up or down: the slave's carrier (it follows the master's, R-LINK-1).
    /// Down, nothing reaches the guest and the VMM's writes fail.
    pub fn set_carrier(&self, on: bool) -> Result<(), VmTapError> {
        let change = LinkChange {
            up: Some(on),
            ..LinkChange::default()
        };
        self.rtnl()
            .set_link(self.index, &change)
            .map_err(self.rtnl_err("setting the TAP up or down"))
    }

    /// The master's namespace, where the TAP lives; [`VmTapError::NotFound`] once it is gone.
    pub fn netns(&self) -> Result<NetNs, VmTapError> {
        self.current_name()?;
        self.home.try_clone().map_err(|source| VmTapError::Netns {
            name: self.name.clone(),
            source: NetNsError::Identify { source },
        })
    }

    /// Deletes the TAP (`RTM_DELLINK`), also while a VMM has it open, also renamed since (by
    /// its ifindex). Already gone is success (no device at the index, or one that is not a TUN
    /// device).
    pub fn destroy(&self) -> Result<(), VmTapError> {
        let mut rtnl = self.rtnl();
        let link = rtnl
            .link_by_index(self.index)
            .map_err(self.rtnl_err("reading the TAP"))?;
        // Not by name: a user may have renamed it (`ip link set vmtap0 name …`), which left it
        // behind. An ifindex is not reused soon in a namespace; the kind guards against that.
        if link.is_none_or(|l| l.kind.as_deref() != Some("tun")) {
            return Ok(());
        }
        match rtnl.del_link(self.index) {
            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                Err(self.rtnl_err("deleting the TAP")(e))
            }
            _ => Ok(()),
        }
    }

    /// A packet socket on the TAP for the userspace data plane, opened in the master's
    /// namespace whatever the calling thread's: what the guest sent is read there, and what is
    /// written there leaves through the TAP to the VMM.
    pub fn open_io(&self) -> Result<VethIo, VmTapError> {
        let open = || PacketSocket::open(self.index);
        let here = NetNs::current().map(|ns| ns.id() == self.home.id());
        let sock = if matches!(here, Ok(true)) {
            open()
        } else {
            self.home.run(open).map_err(|source| VmTapError::Netns {
                name: self.name.clone(),
                source,
            })?
        };
        let sock = sock.map_err(|source| VmTapError::Packet {
            name: self.name.clone(),
            source,
        })?;
        Ok(VethIo::new(sock))
    }
}
