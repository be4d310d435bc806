//! The pure half of [`super::Netfilter`]: what is wanted ([`Desired`]) against what is installed
//! ([`Installed`]) gives the operations to perform ([`Op`]), in the order to perform them. No
//! I/O, no names: the `nft` module turns the nftables operations into one batch, and
//! [`super::Netfilter`] runs the policy-routing ones through rtnetlink.
//!
//! Length: about 320 lines of code and 260 of table tests kept beside the plan they check, hence
//! over 500.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

pub use crate::rtnl::IpFamily as Family;

/// Which hooks keep the master namespace's stack off slave traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// Modes that claim frames (l2, l3): the netdev ingress table drops host-bound unicast to
    /// the addresses.
    Steal,
    /// l3s: the host sees everything first; the `ip`/`ip6` tables mark packets for the addresses
    /// in PREROUTING and `dup` them to the TAP `sink` at the end of INPUT, and policy routing
    /// makes marked packets local. The steal table stays, with empty sets.
    L3s {
        /// The sink TAP's name (the daemon's `ipvls<ifindex>`); it must exist when syncing.
        sink: String,
    },
}

/// The state a port's netfilter plumbing should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub hook: Hook,
    /// The active slave addresses (of slaves that are up), both families.
    pub addresses: BTreeSet<IpAddr>,
}

impl Desired {
    /// The steal table with `addresses` in its sets.
    pub fn steal(addresses: impl IntoIterator<Item = IpAddr>) -> Desired {
        Desired {
            hook: Hook::Steal,
            addresses: addresses.into_iter().collect(),
        }
    }

    /// The l3s plumbing copying to `sink`, with `addresses` in its sets.
    pub fn l3s(sink: impl Into<String>, addresses: impl IntoIterator<Item = IpAddr>) -> Desired {
        Desired {
            hook: Hook::L3s { sink: sink.into() },
            addresses: addresses.into_iter().collect(),
        }
    }
}

/// The l3s tables as installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L3sTables {
    /// The TAP the `dup` statements copy to.
    pub sink: String,
    /// The elements of the sets `v4` (table `ip`) and `v6` (table `ip6`).
    pub addresses: BTreeSet<IpAddr>,
}

/// What a [`super::Netfilter`] has applied successfully (the kernel may differ if someone else
/// changed it; element removal tolerates that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The netdev steal table, with the elements of its sets `v4` and `v6`; `None`: absent.
    pub steal: Option<BTreeSet<IpAddr>>,
    /// The l3s tables; `None`: absent.
    pub l3s: Option<L3sTables>,
    /// The `fwmark` rule and the `local default` route, both families.
    pub policy_routing: bool,
}

impl Installed {
    /// Nothing installed: the host as it was.
    pub fn is_empty(&self) -> bool {
        self.steal.is_none() && self.l3s.is_none() && !self.policy_routing
    }

    /// The addresses in any of our sets (steal or l3s).
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        let mut out = self.steal.clone().unwrap_or_default();
        if let Some(t) = &self.l3s {
            out.extend(t.addresses.iter().copied());
        }
        out
    }

    /// Records that `op` succeeded.
    pub fn record(&mut self, op: &Op) {
        match op {
            Op::InstallSteal => self.steal = Some(BTreeSet::new()),
            Op::UninstallSteal => self.steal = None,
            Op::InstallL3s { sink } => {
                self.l3s = Some(L3sTables {
                    sink: sink.clone(),
                    addresses: BTreeSet::new(),
                })
            }
            Op::UninstallL3s => self.l3s = None,
            Op::AddPolicyRouting => self.policy_routing = true,
            Op::RemovePolicyRouting => self.policy_routing = false,
            Op::AddElements {
                target, addresses, ..
            } => {
                if let Some(set) = self.set_mut(*target) {
                    set.extend(addresses.iter().copied());
                }
            }
            Op::RemoveElements {
                target, addresses, ..
            } => {
                if let Some(set) = self.set_mut(*target) {
                    for a in addresses {
                        set.remove(a);
                    }
                }
            }
        }
    }

    fn set_mut(&mut self, target: Target) -> Option<&mut BTreeSet<IpAddr>> {
        match target {
            Target::Steal => self.steal.as_mut(),
            Target::L3s => self.l3s.as_mut().map(|t| &mut t.addresses),
        }
    }
}

/// Which tables' address sets an element operation changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// netdev `ipvlan_rs_<ifindex>`.
    Steal,
    /// ip/ip6 `ipvlan_rs_l3s_<ifindex>`.
    L3s,
}

/// One change to the installed plumbing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create (or replace) the netdev steal table with empty sets.
    InstallSteal,
    /// Delete the steal table (absent is fine).
    UninstallSteal,
    /// Create (or replace) the `ip` and `ip6` l3s tables with empty sets, copying to `sink`.
    InstallL3s { sink: String },
    /// Delete the l3s tables (absent is fine).
    UninstallL3s,
    /// Add elements to the set of `family` (`v4`/`v6`) in `target`; all of that family.
    AddElements {
        target: Target,
        family: Family,
        addresses: Vec<IpAddr>,
    },
    /// Remove elements (absent ones are fine); all of that family.
    RemoveElements {
        target: Target,
        family: Family,
        addresses: Vec<IpAddr>,
    },
    /// The `fwmark` rules and `local default` routes (rtnetlink, not nftables).
    AddPolicyRouting,
    /// Delete the rules and flush the routing tables (rtnetlink).
    RemovePolicyRouting,
}

impl Op {
    /// An nftables operation (the others are policy routing).
    pub fn is_nft(&self) -> bool {
        !matches!(self, Op::AddPolicyRouting | Op::RemovePolicyRouting)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = |t: &Target| match t {
            Target::Steal => "steal",
            Target::L3s => "l3s",
        };
        match self {
            Op::InstallSteal => f.write_str("install the steal table"),
            Op::UninstallSteal => f.write_str("remove the steal table"),
            Op::InstallL3s { sink } => write!(f, "install the l3s tables (sink {sink})"),
            Op::UninstallL3s => f.write_str("remove the l3s tables"),
            Op::AddElements {
                target: t,
                family,
                addresses,
            } => write!(
                f,
                "add {} {family} address(es) to the {} set",
                addresses.len(),
                target(t)
            ),
            Op::RemoveElements {
                target: t,
                family,
                addresses,
            } => write!(
                f,
                "remove {} {family} address(es) from the {} set",
                addresses.len(),
                target(t)
            ),
            Op::AddPolicyRouting => f.write_str("add the l3s policy routing"),
            Op::RemovePolicyRouting => f.write_str("remove the l3s policy routing"),
        }
    }
}

/// The operations that turn `installed` into `want`, in order: policy routing removal, table
/// removals, element removals, table installs, element additions, policy routing. Empty when
/// nothing is to be done. The steal table is wanted in both hooks (empty in l3s). Element
/// operations come one per (target, family), however many addresses they carry.
pub fn plan(installed: &Installed, want: &Desired) -> Vec<Op> {
    let none = BTreeSet::new();
    let (steal_want, l3s_want) = match &want.hook {
        Hook::Steal => (&want.addresses, None),
        Hook::L3s { sink } => (&none, Some((sink.as_str(), &want.addresses))),
    };
    let mut ops = Vec::new();
    let mut installs = Vec::new();
    let mut adds = Vec::new();

    if l3s_want.is_none() && installed.policy_routing {
        ops.push(Op::RemovePolicyRouting);
    }

    match (&installed.l3s, l3s_want) {
        (Some(_), None) => ops.push(Op::UninstallL3s),
        (Some(have), Some((sink, addrs))) if have.sink == sink => {
            elements(
                &mut ops,
                Remove,
                Target::L3s,
                have.addresses.difference(addrs),
            );
            elements(
                &mut adds,
                Add,
                Target::L3s,
                addrs.difference(&have.addresses),
            );
        }
        // Absent, or copying to another sink: (re)install, which empties the sets.
        (_, Some((sink, addrs))) => {
            installs.push(Op::InstallL3s {
                sink: sink.to_owned(),
            });
            elements(&mut adds, Add, Target::L3s, addrs.iter());
        }
        (None, None) => {}
    }

    match &installed.steal {
        Some(have) => {
            elements(&mut ops, Remove, Target::Steal, have.difference(steal_want));
            elements(&mut adds, Add, Target::Steal, steal_want.difference(have));
        }
        None => {
            installs.insert(0, Op::InstallSteal);
            elements(&mut adds, Add, Target::Steal, steal_want.iter());
        }
    }

    ops.extend(installs);
    ops.extend(adds);
    if l3s_want.is_some() && !installed.policy_routing {
        ops.push(Op::AddPolicyRouting);
    }
    ops
}

/// The operations that remove everything in `installed`: policy routing first (so nothing is
/// routed as local once the tables are gone), then the l3s tables, then the steal table.
pub fn plan_teardown(installed: &Installed) -> Vec<Op> {
    let mut ops = Vec::new();
    if installed.policy_routing {
        ops.push(Op::RemovePolicyRouting);
    }
    if installed.l3s.is_some() {
        ops.push(Op::UninstallL3s);
    }
    if installed.steal.is_some() {
        ops.push(Op::UninstallSteal);
    }
    ops
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}
use Change::{Add, Remove};

/// Pushes one element operation per family present in `addrs`, IPv4 first.
fn elements<'a>(
    ops: &mut Vec<Op>,
    change: Change,
    target: Target,
    addrs: impl Iterator<Item = &'a IpAddr>,
) {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addrs.copied().partition(IpAddr::is_ipv4);
    for (family, addresses) in [(Family::V4, v4), (Family::V6, v6)] {
        if addresses.is_empty() {
            continue;
        }
        ops.push(match change {
            Add => Op::AddElements {
                target,
                family,
                addresses,
            },
            Remove => Op::RemoveElements {
                target,
                family,
                addresses,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test literal")
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| ip(s)).collect()
    }

    /// Applies `ops` as if every one succeeded.
    fn after(installed: &Installed, ops: &[Op]) -> Installed {
        let mut out = installed.clone();
        for op in ops {
            out.record(op);
        }
        out
    }

    fn steal_with(list: &[&str]) -> Installed {
        Installed {
            steal: Some(ips(list).into_iter().collect()),
            ..Installed::default()
        }
    }

    fn l3s_with(sink: &str, list: &[&str]) -> Installed {
        Installed {
            steal: Some(BTreeSet::new()),
            l3s: Some(L3sTables {
                sink: sink.into(),
                addresses: ips(list).into_iter().collect(),
            }),
            policy_routing: true,
        }
    }

    fn add(target: Target, family: Family, list: &[&str]) -> Op {
        Op::AddElements {
            target,
            family,
            addresses: ips(list),
        }
    }

    fn remove(target: Target, family: Family, list: &[&str]) -> Op {
        Op::RemoveElements {
            target,
            family,
            addresses: ips(list),
        }
    }

    /// The table: (name, installed, wanted, expected operations).
    fn cases() -> Vec<(&'static str, Installed, Desired, Vec<Op>)> {
        use Family::{V4, V6};
        use Target::{L3s, Steal};
        let three = ["192.0.2.1", "198.51.100.2", "2001:db8::3"];
        vec![
            (
                "fresh to steal with 3 addresses: install, then one add per family",
                Installed::default(),
                Desired::steal(ips(&three)),
                vec![
                    Op::InstallSteal,
                    add(Steal, V4, &["192.0.2.1", "198.51.100.2"]),
                    add(Steal, V6, &["2001:db8::3"]),
                ],
            ),
            (
                "fresh to steal with nothing: the table alone",
                Installed::default(),
                Desired::steal([]),
                vec![Op::InstallSteal],
            ),
            (
                "nothing to do",
                steal_with(&three),
                Desired::steal(ips(&three)),
                vec![],
            ),
            (
                "nothing to do in l3s",
                l3s_with("ipvls7", &three),
                Desired::l3s("ipvls7", ips(&three)),
                vec![],
            ),
            (
                "one address more, one less, split by family",
                steal_with(&["192.0.2.1", "2001:db8::3"]),
                Desired::steal(ips(&["192.0.2.1", "2001:db8::4"])),
                vec![
                    remove(Steal, V6, &["2001:db8::3"]),
                    add(Steal, V6, &["2001:db8::4"]),
                ],
            ),
            (
                "steal to l3s moves the addresses",
                steal_with(&three),
                Desired::l3s("ipvls7", ips(&three)),
                vec![
                    remove(Steal, V4, &["192.0.2.1", "198.51.100.2"]),
                    remove(Steal, V6, &["2001:db8::3"]),
                    Op::InstallL3s {
                        sink: "ipvls7".into(),
                    },
                    add(L3s, V4, &["192.0.2.1", "198.51.100.2"]),
                    add(L3s, V6, &["2001:db8::3"]),
                    Op::AddPolicyRouting,
                ],
            ),
            (
                "l3s to steal moves them back and removes the l3s plumbing, routing first",
                l3s_with("ipvls7", &three),
                Desired::steal(ips(&three)),
                vec![
                    Op::RemovePolicyRouting,
                    Op::UninstallL3s,
                    add(Steal, V4, &["192.0.2.1", "198.51.100.2"]),
                    add(Steal, V6, &["2001:db8::3"]),
                ],
            ),
            (
                "fresh to l3s: both tables, routing last",
                Installed::default(),
                Desired::l3s("ipvls7", ips(&["203.0.113.9"])),
                vec![
                    Op::InstallSteal,
                    Op::InstallL3s {
                        sink: "ipvls7".into(),
                    },
                    add(L3s, V4, &["203.0.113.9"]),
                    Op::AddPolicyRouting,
                ],
            ),
            (
                "another sink reinstalls the l3s tables and refills them; routing stays",
                l3s_with("ipvls7", &three),
                Desired::l3s("ipvls8", ips(&["2001:db8::3"])),
                vec![
                    Op::InstallL3s {
                        sink: "ipvls8".into(),
                    },
                    add(L3s, V6, &["2001:db8::3"]),
                ],
            ),
            (
                "l3s tables whose routing failed last time: retried alone",
                Installed {
                    policy_routing: false,
                    ..l3s_with("ipvls7", &["192.0.2.1"])
                },
                Desired::l3s("ipvls7", ips(&["192.0.2.1"])),
                vec![Op::AddPolicyRouting],
            ),
        ]
    }

    #[test]
    fn plan_table() {
        for (name, installed, want, expected) in cases() {
            let ops = plan(&installed, &want);
            assert_eq!(ops, expected, "{name}");
            // Applying the plan reaches the wanted state: planning again has nothing to do.
            let reached = after(&installed, &ops);
            assert_eq!(plan(&reached, &want), vec![], "{name}: converges");
            match &want.hook {
                Hook::Steal => {
                    assert_eq!(reached.steal.as_ref(), Some(&want.addresses), "{name}");
                    assert!(reached.l3s.is_none() && !reached.policy_routing, "{name}");
                }
                Hook::L3s { sink } => {
                    assert_eq!(reached.steal, Some(BTreeSet::new()), "{name}");
                    let t = reached.l3s.as_ref().expect("l3s tables");
                    assert_eq!((&t.sink, &t.addresses), (sink, &want.addresses), "{name}");
                    assert!(reached.policy_routing, "{name}");
                }
            }
        }
    }

    #[test]
    fn removing_1000_addresses_is_one_operation_per_family() {
        // 500 IPv4 addresses from the three documentation /24s.
        let v4: Vec<IpAddr> = (0..500u32)
            .map(|i| {
                let base = [0xc000_0200u32, 0xc633_6400, 0xcb00_7100][(i / 250) as usize];
                IpAddr::V4(std::net::Ipv4Addr::from(base + i % 250 + 1))
            })
            .collect();
        let v6: Vec<IpAddr> = (0..500u128)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)))
            .collect();
        let all: BTreeSet<IpAddr> = v4.iter().chain(&v6).copied().collect();
        assert_eq!(all.len(), 1000);
        let installed = Installed {
            steal: Some(all.clone()),
            ..Installed::default()
        };
        let ops = plan(&installed, &Desired::steal([]));
        assert_eq!(ops.len(), 2, "one removal per set");
        assert!(ops.iter().all(Op::is_nft), "all in the one nftables batch");
        let removed: usize = ops
            .iter()
            .map(|op| match op {
                Op::RemoveElements { addresses, .. } => addresses.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(removed, 1000);
        assert_eq!(after(&installed, &ops).steal, Some(BTreeSet::new()));
    }

    #[test]
    fn element_operations_hold_one_family_each() {
        let want = Desired::steal(ips(&["2001:db8::1", "192.0.2.1", "2001:db8::2"]));
        for op in plan(&Installed::default(), &want) {
            if let Op::AddElements {
                family, addresses, ..
            } = op
            {
                assert!(addresses.iter().all(|a| Family::of(*a) == family));
            }
        }
    }

    #[test]
    fn teardown_removes_routing_first_and_everything() {
        let installed = l3s_with("ipvls7", &["192.0.2.1"]);
        let ops = plan_teardown(&installed);
        assert_eq!(
            ops,
            vec![
                Op::RemovePolicyRouting,
                Op::UninstallL3s,
                Op::UninstallSteal
            ]
        );
        assert!(after(&installed, &ops).is_empty());
        assert_eq!(plan_teardown(&Installed::default()), vec![]);
    }

    #[test]
    fn installed_addresses_are_the_union_of_the_sets() {
        let mut i = l3s_with("ipvls7", &["192.0.2.1"]);
        i.steal = Some(ips(&["2001:db8::1"]).into_iter().collect());
        assert_eq!(
            i.addresses(),
            ips(&["192.0.2.1", "2001:db8::1"]).into_iter().collect()
        );
    }

    #[test]
    fn ops_describe_themselves() {
        let op = add(Target::Steal, Family::V6, &["2001:db8::1"]);
        assert_eq!(op.to_string(), "add 1 IPv6 address(es) to the steal set");
        assert!(!Op::AddPolicyRouting.is_nft());
    }
}
