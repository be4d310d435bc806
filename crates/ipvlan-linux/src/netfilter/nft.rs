//! The nftables half of [`super::Netfilter`]: the typed objects of our tables (the `nftables`
//! crate's `schema`, `expr` and `stmt`), one [`Batch`] per list of operations, and running it as
//! one `nft -j -f -` transaction.
//!
//! Everything we use is in the crate's typed schema, including `meta pkttype`, `arp daddr ip`
//! and `dup to … device …` ([`stmt::Dup`]). What stays a string is what nftables' JSON format
//! itself spells as a string: a named set reference (`"@v4"`), a symbolic constant (`"host"`),
//! an address (`"169.254.0.1"`), a device name. Device names are passed as JSON strings, never
//! quoted by hand; the JSON format gives two of them another meaning (a leading `@` is a set
//! reference, a trailing `*` a wildcard in `iifname`), so [`check_device_name`] refuses those.
//!
//! Length: about 450 lines of code and 130 of unit tests kept beside it (the JSON shape of each
//! object is what they check), hence over 500.

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::IpAddr;
use std::process::{Command, Stdio};

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField};
use nftables::schema::{
    Chain, Element, NfListObject, Nftables, Rule, Set, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Dup, Mangle, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::plan::{Family, Op, Target};
use super::{l3s_table_name, mark_for, steal_table_name, NetfilterError};

/// Priority of the steal chain (netdev ingress): before anything a user is likely to add.
const STEAL_PRIO: i32 = -500;
/// Priority of `mark_in` (prerouting): after DNAT (-100).
const MARK_IN_PRIO: i32 = -90;
/// Priority of `to_slave` (input): the very end of INPUT.
const TO_SLAVE_PRIO: i32 = 2_147_483_600;
/// Where `dup` sends the copies: an address on the sink's link, never answered.
const DUP_TO_V4: &str = "169.254.0.1";
const DUP_TO_V6: &str = "fe80::1";

/// The names an nftables batch needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Names<'a> {
    pub master: &'a str,
    pub ifindex: u32,
}

/// The set holding `family`'s addresses, in every table of ours.
fn set_name(family: Family) -> &'static str {
    match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

/// The table family of the l3s table for `family` (`dup` exists per family, not in `inet`).
fn l3s_family(family: Family) -> NfFamily {
    match family {
        Family::V4 => NfFamily::IP,
        Family::V6 => NfFamily::IP6,
    }
}

fn set_type(family: Family) -> SetTypeValue<'static> {
    SetTypeValue::Single(match family {
        Family::V4 => SetType::Ipv4Addr,
        Family::V6 => SetType::Ipv6Addr,
    })
}

/// `family` and table name of the set of `family` in `target`.
fn set_table(target: Target, family: Family, ifindex: u32) -> (NfFamily, String) {
    match target {
        Target::Steal => (NfFamily::NetDev, steal_table_name(ifindex)),
        Target::L3s => (l3s_family(family), l3s_table_name(ifindex)),
    }
}

fn s(text: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(text.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `@name`: a reference to the named set, as nftables' JSON spells it.
fn set_ref(family: Family) -> Expression<'static> {
    s(format!("@{}", set_name(family)))
}

/// `ip daddr` / `ip6 daddr`.
fn daddr(family: Family) -> Expression<'static> {
    match family {
        Family::V4 => payload("ip", "daddr"),
        Family::V6 => payload("ip6", "daddr"),
    }
}

/// `add table` + `delete table` + `add table`: removes a previous copy (a daemon that died)
/// without failing on a fresh host, then creates it empty.
fn replace_table(b: &mut Batch<'static>, family: NfFamily, name: &str) {
    let table = Table {
        family,
        name: name.to_owned().into(),
        handle: None,
    };
    b.add(NfListObject::Table(table.clone()));
    b.delete(NfListObject::Table(table.clone()));
    b.add(NfListObject::Table(table));
}

/// `add table` + `delete table`: the table is gone, whether it was there or not.
fn remove_table(b: &mut Batch<'static>, family: NfFamily, name: &str) {
    let table = Table {
        family,
        name: name.to_owned().into(),
        handle: None,
    };
    b.add(NfListObject::Table(table.clone()));
    b.delete(NfListObject::Table(table));
}

fn add_set(b: &mut Batch<'static>, family: NfFamily, table: &str, set: Family) {
    b.add(NfListObject::Set(Box::new(Set {
        family,
        table: table.to_owned().into(),
        name: set_name(set).into(),
        set_type: set_type(set),
        ..Set::default()
    })));
}

/// A base chain with policy accept.
fn add_chain(
    b: &mut Batch<'static>,
    family: NfFamily,
    table: &str,
    name: &'static str,
    hook: NfHook,
    prio: i32,
    dev: Option<&str>,
) {
    b.add(NfListObject::Chain(Chain {
        family,
        table: table.to_owned().into(),
        name: name.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(hook),
        prio: Some(prio),
        dev: dev.map(|d| d.to_owned().into()),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
}

fn add_rule(
    b: &mut Batch<'static>,
    family: NfFamily,
    table: &str,
    chain: &'static str,
    expr: Vec<Statement<'static>>,
) {
    b.add(NfListObject::Rule(Rule {
        family,
        table: table.to_owned().into(),
        chain: chain.into(),
        expr: expr.into(),
        ..Rule::default()
    }));
}

/// The netdev table `ipvlan_rs_<ifindex>`:
/// ```text
/// table netdev ipvlan_rs_<ifindex> {
///   set v4 { type ipv4_addr; }
///   set v6 { type ipv6_addr; }
///   chain steal {
///     type filter hook ingress device <master> priority -500; policy accept;
///     meta pkttype host ip daddr @v4 drop
///     meta pkttype host ip6 daddr @v6 drop
///     meta pkttype host arp daddr ip @v4 drop
///   }
/// }
/// ```
fn install_steal(b: &mut Batch<'static>, names: Names<'_>) {
    let table = steal_table_name(names.ifindex);
    let fam = NfFamily::NetDev;
    replace_table(b, fam, &table);
    add_set(b, fam, &table, Family::V4);
    add_set(b, fam, &table, Family::V6);
    add_chain(
        b,
        fam,
        &table,
        "steal",
        NfHook::Ingress,
        STEAL_PRIO,
        Some(names.master),
    );
    let host = || eq(meta(MetaKey::Pkttype), s("host"));
    let drop = || Statement::Drop(None);
    for (target, set) in [
        (daddr(Family::V4), Family::V4),
        (daddr(Family::V6), Family::V6),
        (payload("arp", "daddr ip"), Family::V4),
    ] {
        add_rule(
            b,
            fam,
            &table,
            "steal",
            vec![host(), eq(target, set_ref(set)), drop()],
        );
    }
}

/// The `ip` and `ip6` tables `ipvlan_rs_l3s_<ifindex>` (`F` = ip/ip6, `S` = v4/v6,
/// `GW` = 169.254.0.1/fe80::1, `MARK` = [`mark_for`]):
/// ```text
/// table F ipvlan_rs_l3s_<ifindex> {
///   set S { type ipv4_addr|ipv6_addr; }
///   chain mark_in {
///     type filter hook prerouting priority -90; policy accept;
///     iifname <master> F daddr @S meta mark set MARK
///   }
///   chain to_slave {
///     type filter hook input priority 2147483600; policy accept;
///     meta mark MARK F daddr @S dup to GW device <sink> drop
///   }
/// }
/// ```
fn install_l3s(b: &mut Batch<'static>, names: Names<'_>, sink: &str) {
    let table = l3s_table_name(names.ifindex);
    let mark = mark_for(names.ifindex);
    for (family, gw) in [(Family::V4, DUP_TO_V4), (Family::V6, DUP_TO_V6)] {
        let fam = l3s_family(family);
        replace_table(b, fam, &table);
        add_set(b, fam, &table, family);
        add_chain(
            b,
            fam,
            &table,
            "mark_in",
            NfHook::Prerouting,
            MARK_IN_PRIO,
            None,
        );
        add_chain(
            b,
            fam,
            &table,
            "to_slave",
            NfHook::Input,
            TO_SLAVE_PRIO,
            None,
        );
        add_rule(
            b,
            fam,
            &table,
            "mark_in",
            vec![
                eq(meta(MetaKey::Iifname), s(names.master)),
                eq(daddr(family), set_ref(family)),
                Statement::Mangle(Mangle {
                    key: meta(MetaKey::Mark),
                    value: Expression::Number(mark),
                }),
            ],
        );
        add_rule(
            b,
            fam,
            &table,
            "to_slave",
            vec![
                eq(meta(MetaKey::Mark), Expression::Number(mark)),
                eq(daddr(family), set_ref(family)),
                Statement::Dup(Dup {
                    addr: s(gw),
                    dev: Some(s(sink)),
                }),
                Statement::Drop(None),
            ],
        );
    }
}

fn element(
    target: Target,
    family: Family,
    addrs: &[IpAddr],
    ifindex: u32,
) -> NfListObject<'static> {
    let (fam, table) = set_table(target, family, ifindex);
    NfListObject::Element(Element {
        family: fam,
        table: table.into(),
        name: set_name(family).into(),
        elem: addrs
            .iter()
            .map(|a| s(a.to_string()))
            .collect::<Vec<_>>()
            .into(),
    })
}

/// The one batch for `ops` (policy-routing operations are skipped: they are not nftables').
pub(super) fn batch(ops: &[&Op], names: Names<'_>) -> Batch<'static> {
    let mut b = Batch::new();
    for op in ops {
        match op {
            Op::InstallSteal => install_steal(&mut b, names),
            Op::UninstallSteal => {
                remove_table(&mut b, NfFamily::NetDev, &steal_table_name(names.ifindex))
            }
            Op::InstallL3s { sink } => install_l3s(&mut b, names, sink),
            Op::UninstallL3s => {
                let table = l3s_table_name(names.ifindex);
                remove_table(&mut b, NfFamily::IP, &table);
                remove_table(&mut b, NfFamily::IP6, &table);
            }
            Op::AddElements {
                target,
                family,
                addresses,
            } => b.add(element(*target, *family, addresses, names.ifindex)),
            // `add` first, so that an element someone else removed does not fail the batch.
            Op::RemoveElements {
                target,
                family,
                addresses,
            } => {
                b.add(element(*target, *family, addresses, names.ifindex));
                b.delete(element(*target, *family, addresses, names.ifindex));
            }
            Op::AddPolicyRouting | Op::RemovePolicyRouting => {}
        }
    }
    b
}

/// The tables `ops` touch, for error messages (`netdev ipvlan_rs_3, ip/ip6 ipvlan_rs_l3s_3`).
pub(super) fn tables(ops: &[&Op], ifindex: u32) -> String {
    let steal = ops.iter().any(|op| match op {
        Op::InstallSteal | Op::UninstallSteal => true,
        Op::AddElements { target, .. } | Op::RemoveElements { target, .. } => {
            *target == Target::Steal
        }
        _ => false,
    });
    let l3s = ops.iter().any(|op| match op {
        Op::InstallL3s { .. } | Op::UninstallL3s => true,
        Op::AddElements { target, .. } | Op::RemoveElements { target, .. } => {
            *target == Target::L3s
        }
        _ => false,
    });
    let mut out = Vec::new();
    if steal {
        out.push(format!("netdev {}", steal_table_name(ifindex)));
    }
    if l3s {
        out.push(format!("ip/ip6 {}", l3s_table_name(ifindex)));
    }
    out.join(", ")
}

/// Refuses names that are not interface names, or that nftables' JSON would read as something
/// else than a device name.
pub(super) fn check_device_name(name: &str) -> Result<(), NetfilterError> {
    let reason = if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        "not an interface name"
    } else if name.starts_with('@') {
        "nftables' JSON reads a leading '@' as a set reference"
    } else if name.ends_with('*') {
        "nftables reads a trailing '*' in iifname as a wildcard"
    } else {
        return Ok(());
    };
    Err(NetfilterError::DeviceName {
        name: name.to_owned(),
        reason,
    })
}

/// Runs `nft -j -f <stdin>` on `ruleset`: one transaction, all or nothing. `ops` and `tables` describe
/// it in the error.
///
/// We spawn `nft` ourselves rather than calling `nftables::helper::apply_ruleset`: in nftables
/// 0.6.3 that helper does not capture nft's standard error (its `NftFailed::stderr` is always
/// empty and the message lands on the daemon's own stderr), and it cannot tell a missing `nft`
/// from other spawn failures.
pub(super) fn apply(
    ruleset: &Nftables<'_>,
    ops: String,
    tables: String,
) -> Result<(), NetfilterError> {
    let json = serde_json::to_vec(ruleset).map_err(|e| NetfilterError::Encode {
        ops: ops.clone(),
        source: e,
    })?;
    // `-f -` makes nft 1.0.x open `/dev/stdin` by name for JSON input, which minimal systems
    // (microVM guests, the oracle VM) lack; the pipe is reachable as `/proc/self/fd/0` in the
    // child wherever /proc is mounted.
    let input = if std::path::Path::new("/proc/self/fd/0").exists() {
        "/proc/self/fd/0"
    } else {
        "-"
    };
    let mut child = match Command::new("nft")
        .args(["-j", "-f", input])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(NetfilterError::NftMissing { ops, source: e })
        }
        Err(e) => return Err(NetfilterError::NftRun { ops, source: e }),
    };
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(&json),
        None => Err(io::Error::other("no pipe to nft's standard input")),
    };
    // Wait even if writing failed (nft exited early): its message says why.
    let out = child
        .wait_with_output()
        .map_err(|e| NetfilterError::NftRun {
            ops: ops.clone(),
            source: e,
        })?;
    if out.status.success() {
        return written.map_err(|e| NetfilterError::NftRun { ops, source: e });
    }
    Err(NetfilterError::NftRejected {
        ops,
        tables,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NAMES: Names<'static> = Names {
        master: "eth0",
        ifindex: 3,
    };

    fn to_json(ops: &[Op]) -> Vec<Value> {
        let refs: Vec<&Op> = ops.iter().collect();
        let v = serde_json::to_value(batch(&refs, NAMES).to_nftables()).expect("serialises");
        v["nftables"].as_array().expect("a list").clone()
    }

    fn rules(cmds: &[Value]) -> Vec<&Value> {
        cmds.iter().filter_map(|c| c["add"].get("rule")).collect()
    }

    #[test]
    fn steal_table_is_replaced_and_has_the_three_rules() {
        let cmds = to_json(&[Op::InstallSteal]);
        let table = json!({"family": "netdev", "name": "ipvlan_rs_3"});
        assert_eq!(cmds[0], json!({"add": {"table": table}}));
        assert_eq!(cmds[1], json!({"delete": {"table": table}}));
        assert_eq!(cmds[2], json!({"add": {"table": table}}));
        let chain = cmds
            .iter()
            .find_map(|c| c["add"].get("chain"))
            .expect("a chain");
        assert_eq!(
            chain,
            &json!({"family": "netdev", "table": "ipvlan_rs_3", "name": "steal", "type": "filter",
                    "hook": "ingress", "prio": -500, "dev": "eth0", "policy": "accept"})
        );
        let rules = rules(&cmds);
        assert_eq!(rules.len(), 3);
        let host =
            json!({"match": {"op": "==", "left": {"meta": {"key": "pkttype"}}, "right": "host"}});
        assert_eq!(
            rules[2]["expr"],
            json!([host,
                   {"match": {"op": "==", "left": {"payload": {"protocol": "arp", "field": "daddr ip"}}, "right": "@v4"}},
                   {"drop": null}])
        );
        assert_eq!(
            rules[1]["expr"][1],
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "@v6"}})
        );
    }

    #[test]
    fn l3s_tables_mark_then_dup_to_the_sink() {
        let cmds = to_json(&[Op::InstallL3s {
            sink: "ipvls3".into(),
        }]);
        let chains: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("chain")).collect();
        assert_eq!(chains.len(), 4, "mark_in and to_slave, in ip and ip6");
        assert_eq!(chains[1]["prio"], json!(2_147_483_600));
        assert_eq!(chains[0]["hook"], json!("prerouting"));
        let rules = rules(&cmds);
        assert_eq!(
            rules[0]["expr"],
            json!([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
                   {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@v4"}},
                   {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 0x1e5b_0003}}])
        );
        assert_eq!(
            rules[3]["expr"],
            json!([{"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 0x1e5b_0003}},
                   {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "@v6"}},
                   {"dup": {"addr": "fe80::1", "dev": "ipvls3"}},
                   {"drop": null}])
        );
        assert_eq!(rules[3]["family"], json!("ip6"));
    }

    #[test]
    fn removal_adds_then_deletes_all_elements_in_two_commands() {
        let addrs: Vec<IpAddr> = (1..=200u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let cmds = to_json(&[Op::RemoveElements {
            target: Target::Steal,
            family: Family::V4,
            addresses: addrs,
        }]);
        assert_eq!(cmds.len(), 2);
        let e = &cmds[1]["delete"]["element"];
        assert_eq!(e["table"], json!("ipvlan_rs_3"));
        assert_eq!(e["name"], json!("v4"));
        assert_eq!(e["elem"].as_array().map(Vec::len), Some(200));
        assert_eq!(e["elem"][0], json!("192.0.2.1"));
    }

    #[test]
    fn l3s_elements_go_to_the_family_table() {
        let cmds = to_json(&[Op::AddElements {
            target: Target::L3s,
            family: Family::V6,
            addresses: vec!["2001:db8::1".parse().expect("literal")],
        }]);
        assert_eq!(
            cmds,
            vec![
                json!({"add": {"element": {"family": "ip6", "table": "ipvlan_rs_l3s_3",
                                             "name": "v6", "elem": ["2001:db8::1"]}}})
            ]
        );
    }

    #[test]
    fn device_names_nftables_would_misread_are_refused() {
        assert!(check_device_name("eth0").is_ok());
        assert!(check_device_name("a\"b\\c").is_ok(), "no quoting to break");
        for bad in ["", "@v4", "eth*", "a-name-far-too-long"] {
            assert!(check_device_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tables_named_in_errors() {
        let ops = [
            Op::InstallSteal,
            Op::InstallL3s {
                sink: "ipvls3".into(),
            },
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        assert_eq!(
            tables(&refs, 3),
            "netdev ipvlan_rs_3, ip/ip6 ipvlan_rs_l3s_3"
        );
    }
}
