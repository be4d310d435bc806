//! The master namespace's netfilter and policy routing for one port: keeping the host's stack off
//! slave traffic (the steal table), and l3s (the host's PREROUTING and INPUT see slave ingress).
//! One [`Netfilter`] per master owns what it installed; [`Netfilter::sync`] makes it equal to a
//! [`Desired`] state with one `nft` transaction per change, however many addresses change.
//!
//! # The steal table (all modes)
//!
//! The kernel driver's receive hook *consumes* claimed frames (R-RX-0). An AF_PACKET socket only
//! gets a copy, so without help the host would also process them: answer for an address a slave
//! took from it (T-25), or forward them when `ip_forward` is on. We install, per master, an
//! nftables `netdev` table `ipvlan_rs_<ifindex>` whose ingress chain drops unicast frames
//! (`pkttype host`) addressed to an active slave address: IPv4, IPv6 and ARP by target. Why this
//! mechanism:
//! - ordering: in `__netif_receive_skb_core` AF_PACKET taps run *before* the netdev ingress hook,
//!   so the daemon still sees every frame it must forward, while the stack never does;
//! - exactness: set lookups keyed by address are what the core's table is (R-ADDR-1), updated
//!   element by element as addresses come and go, with no BPF toolchain or verifier involved;
//! - visibility and cleanup: `nft list table netdev ipvlan_rs_<ifindex>` shows it, and removing
//!   the table with the last slave restores the host exactly.
//!
//! Broadcast and multicast are never dropped: the master keeps its copy (R-RX-L2-2). In l3s the
//! table stays with empty sets: the host must see everything first.
//!
//! # l3s
//!
//! The master namespace's netfilter and conntrack must see slave traffic in both directions
//! (R-RX-L3S-1, R-RX-L3S-2). Egress already passes the master's OUTPUT and POSTROUTING (it is sent
//! with a raw socket, see [`crate::host`]). Ingress is what the kernel does with an l3mdev hook:
//! after PREROUTING, a packet for a slave address is routed as local, runs the master's INPUT
//! hooks, and at the very end of INPUT is handed to the slave. We reproduce that with what the
//! kernel offers outside a driver:
//! - nftables `ip` and `ip6` tables `ipvlan_rs_l3s_<ifindex>`: in PREROUTING (priority -90, after
//!   DNAT) packets arriving on the master for an active slave address get the firewall mark
//!   [`mark_for`]; at the very end of INPUT (priority 2147483600) they are duplicated to a *sink*
//!   TAP owned by the daemon and the original is dropped;
//! - a policy-routing rule `fwmark MARK lookup MARK pref 300` whose table holds `local default dev
//!   lo`, so marked packets (and only those: ARP is never marked, so the host does not answer ARP
//!   for slave addresses, R-RX-L3S-3) are local and traverse INPUT. Made through rtnetlink
//!   ([`crate::rtnl`]), in the calling thread's namespace;
//! - the daemon reads the copies from the sink (`dup` decremented TTL/hop limit; it restores it
//!   with [`restore_hop_limit`]) and delivers them to the slave.
//!
//! A rule in the master's PREROUTING or INPUT that drops a slave's traffic therefore takes
//! effect, and replies to connections a slave opened match their conntrack entry.
//!
//! # Layout
//!
//! - [`plan`](mod@plan): the pure diff, `plan(&Installed, &Desired) -> Vec<Op>`, tested
//!   without root;
//! - `nft`: the typed nftables objects (the `nftables` crate) and the one-batch apply;
//! - `l3s`: the mark, the policy routing, the TTL fix.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::IpAddr;

mod l3s;
mod nft;
pub mod plan;

pub use l3s::{mark_for, restore_hop_limit, RULE_PREF};
pub use plan::{plan, plan_teardown, Desired, Family, Hook, Installed, L3sTables, Op, Target};

/// The netdev steal table of a master: `ipvlan_rs_<ifindex>`.
pub fn steal_table_name(ifindex: u32) -> String {
    format!("ipvlan_rs_{ifindex}")
}

/// The `ip` and `ip6` l3s tables of a master: `ipvlan_rs_l3s_<ifindex>`.
pub fn l3s_table_name(ifindex: u32) -> String {
    format!("ipvlan_rs_l3s_{ifindex}")
}

/// A failure to change a port's netfilter plumbing. Display gives the context; the cause, if
/// any, is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetfilterError {
    /// `nft` is not in `PATH`.
    #[error("the nft command is missing: install nftables (needed to {ops})")]
    NftMissing {
        ops: String,
        #[source]
        source: io::Error,
    },
    /// `nft` could not be started or fed.
    #[error("running nft to {ops}")]
    NftRun {
        ops: String,
        #[source]
        source: io::Error,
    },
    /// `nft` refused the batch; nothing of it was applied.
    #[error("nft refused to {ops} (tables {tables}): {stderr}")]
    NftRejected {
        ops: String,
        tables: String,
        stderr: String,
    },
    /// The batch could not be serialised (not expected).
    #[error("encoding the nftables batch to {ops}")]
    Encode {
        ops: String,
        #[source]
        source: serde_json::Error,
    },
    /// A device name nftables would misread.
    #[error("unusable device name {name:?}: {reason}")]
    DeviceName { name: String, reason: &'static str },
    /// Opening or querying the rtnetlink socket for the policy routing.
    #[error("rtnetlink for the l3s policy routing")]
    Rtnl(#[source] crate::rtnl::RtnlError),
    /// The namespace has no `lo`.
    #[error("l3s needs the loopback device in the master's namespace: there is no lo")]
    NoLoopback,
    /// A policy-routing request failed.
    #[error("l3s policy routing: {op} ({family}, fwmark/table {table:#x})")]
    Routing {
        op: &'static str,
        family: Family,
        table: u32,
        #[source]
        source: crate::rtnl::RtnlError,
    },
    /// The kernel refused `local default dev lo table MARK`.
    #[error(
        "l3s policy routing: adding `local default dev lo table {table}` ({family}) failed \
         (l3s needs the loopback device up in the master's namespace)"
    )]
    LocalRoute {
        family: Family,
        table: u32,
        #[source]
        source: crate::rtnl::RtnlError,
    },
}

/// `e` and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Every failure of a [`Netfilter::teardown`] (never empty). Display lists each with its causes.
#[derive(Debug)]
pub struct TeardownError(pub Vec<NetfilterError>);

impl fmt::Display for TeardownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "removing the netfilter plumbing: {} failure(s)",
            self.0.len()
        )?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "; {}) {}", i + 1, chain(e))?;
        }
        Ok(())
    }
}

impl std::error::Error for TeardownError {}

/// One master's netfilter plumbing, and what of it is installed.
///
/// Acts in the network namespace of the calling thread (nftables through an `nft` child process,
/// which inherits it; policy routing through an rtnetlink socket opened per change): call it
/// from the master's namespace.
#[derive(Debug)]
pub struct Netfilter {
    master: String,
    ifindex: u32,
    installed: Installed,
}

impl Netfilter {
    /// The plumbing of master `master` (interface index `ifindex`). Installs nothing.
    pub fn new(master: &str, ifindex: u32) -> Netfilter {
        Netfilter {
            master: master.to_owned(),
            ifindex,
            installed: Installed::default(),
        }
    }

    pub fn master(&self) -> &str {
        &self.master
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// What the last changes installed.
    pub fn installed(&self) -> &Installed {
        &self.installed
    }

    /// The addresses in our sets (steal or l3s, both families).
    pub fn installed_addresses(&self) -> BTreeSet<IpAddr> {
        self.installed.addresses()
    }

    /// Makes the plumbing equal to `want`: [`plan`](fn@plan)s the change, removes the policy
    /// routing if it goes, applies every nftables operation as ONE `nft -j -f -` transaction
    /// (whatever the number of addresses), then adds the policy routing if it comes. Nothing to
    /// do: no process.
    ///
    /// Stops at the first failure; [`Self::installed`] then records what succeeded (an `nft`
    /// transaction is all or nothing), and the next `sync` plans again from there. In l3s the
    /// sink TAP must exist. Errors: [`NetfilterError::NftMissing`] without `nft`,
    /// [`NetfilterError::NftRejected`] with nft's message, [`NetfilterError::DeviceName`] for a
    /// master or sink name nftables would misread, [`NetfilterError::LocalRoute`] when `lo` is
    /// down, and the other routing variants.
    pub fn sync(&mut self, want: &Desired) -> Result<(), NetfilterError> {
        let ops = plan(&self.installed, want);
        if ops.is_empty() {
            return Ok(());
        }
        for op in &ops {
            match op {
                Op::InstallSteal => nft::check_device_name(&self.master)?,
                Op::InstallL3s { sink } => {
                    nft::check_device_name(&self.master)?;
                    nft::check_device_name(sink)?;
                }
                _ => {}
            }
        }
        // The plan keeps the nftables operations together: one batch between the routing steps.
        let mut pending: Vec<&Op> = Vec::new();
        for op in &ops {
            if op.is_nft() {
                pending.push(op);
                continue;
            }
            self.apply_nft(&pending)?;
            pending.clear();
            match op {
                Op::AddPolicyRouting => {
                    if let Err(e) = l3s::add_policy_routing(self.ifindex) {
                        // Undo the half that may have been made (the IPv4 rule when the IPv6
                        // route fails), so that "not installed" is exact.
                        let _ = l3s::remove_policy_routing(self.ifindex);
                        return Err(e);
                    }
                }
                _ => {
                    if let Some(e) = l3s::remove_policy_routing(self.ifindex).into_iter().next() {
                        return Err(e);
                    }
                }
            }
            self.installed.record(op);
        }
        self.apply_nft(&pending)
    }

    /// Removes whatever an earlier run may have left for this master (a daemon killed in l3s,
    /// a port that went away while the daemon was down): the policy routing, the l3s tables and
    /// the steal table, each removal harmless when there is nothing to remove. Call it before
    /// the first [`Self::sync`] of a new value; errors as [`Self::teardown`].
    pub fn remove_leftovers(&mut self) -> Result<(), TeardownError> {
        self.installed = Installed {
            steal: Some(BTreeSet::new()),
            l3s: Some(L3sTables {
                sink: String::new(),
                addresses: BTreeSet::new(),
            }),
            policy_routing: true,
        };
        let r = self.teardown();
        // What could not be removed is unknown, not installed by us: plan from nothing.
        self.installed = Installed::default();
        r
    }

    /// Removes everything this value installed: policy routing, l3s tables, steal table. Keeps
    /// going after a failure and returns them all; what was removed is no longer in
    /// [`Self::installed`], so a later `teardown` retries only the rest.
    pub fn teardown(&mut self) -> Result<(), TeardownError> {
        let mut errors = Vec::new();
        for op in plan_teardown(&self.installed) {
            let result = if op.is_nft() {
                self.apply_nft(&[&op])
            } else {
                match l3s::remove_policy_routing(self.ifindex) {
                    e if e.is_empty() => Ok(()),
                    e => {
                        errors.extend(e);
                        continue;
                    }
                }
            };
            match result {
                Ok(()) => self.installed.record(&op),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(TeardownError(errors))
        }
    }

    /// Applies `ops` (all nftables') as one batch and records them; nothing if empty.
    fn apply_nft(&mut self, ops: &[&Op]) -> Result<(), NetfilterError> {
        if ops.is_empty() {
            return Ok(());
        }
        let names = nft::Names {
            master: &self.master,
            ifindex: self.ifindex,
        };
        let ruleset = nft::batch(ops, names).to_nftables();
        let what = ops
            .iter()
            .map(|op| op.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        nft::apply(&ruleset, what, nft::tables(ops, self.ifindex))?;
        for op in ops {
            self.installed.record(op);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_mark() {
        assert_eq!(steal_table_name(7), "ipvlan_rs_7");
        assert_eq!(l3s_table_name(7), "ipvlan_rs_l3s_7");
        assert_eq!(mark_for(7), 0x1e5b_0007);
        assert_eq!(mark_for(0x1_0002), 0x1e5b_0002, "the low 16 bits");
    }

    #[test]
    fn new_installs_nothing_and_nothing_to_do_runs_nothing() {
        let mut nf = Netfilter::new("eth0", 3);
        assert!(nf.installed().is_empty());
        // Already at the wanted state: no process is started (none could be, without root).
        nf.installed = Installed {
            steal: Some(BTreeSet::new()),
            ..Installed::default()
        };
        nf.sync(&Desired::steal([])).expect("no operation");
    }

    #[test]
    fn bad_names_fail_before_any_process() {
        let mut nf = Netfilter::new("eth*", 3);
        let e = nf.sync(&Desired::steal([])).expect_err("refused");
        assert!(matches!(e, NetfilterError::DeviceName { .. }), "{e}");
        assert!(nf.installed().is_empty());
    }

    #[test]
    fn teardown_error_lists_every_failure_with_its_cause() {
        let e = TeardownError(vec![
            NetfilterError::NftRejected {
                ops: "remove the steal table".into(),
                tables: "netdev ipvlan_rs_3".into(),
                stderr: "Error: x".into(),
            },
            NetfilterError::Routing {
                op: "delete the fwmark rule",
                family: Family::V6,
                table: 0x1e5b_0003,
                source: crate::rtnl::RtnlError::Socket {
                    doing: "sending",
                    source: io::Error::from_raw_os_error(libc::EPERM),
                },
            },
        ]);
        let text = e.to_string();
        assert!(text.starts_with("removing the netfilter plumbing: 2 failure(s); 1) nft refused"));
        assert!(text.contains(
            "2) l3s policy routing: delete the fwmark rule (IPv6, fwmark/table 0x1e5b0003): "
        ));
        assert!(text.ends_with("not permitted (os error 1)"), "{text}");
    }
}
