//! `Netfilter` against the kernel, each test in a namespace of its own with a veth as the master:
//! the steal sets hold exactly what was synced, 1000 addresses go in one sync, l3s installs its
//! tables, rules and routes, and teardown leaves nothing. Needs root, iproute2 and nftables:
//! `cargo test -p ipvlan-linux --test netfilter -- --ignored`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipvlan_linux::netfilter::{
    l3s_table_name, mark_for, steal_table_name, Desired, Netfilter, NetfilterError,
};
use ipvlan_linux::rtnl::Rtnl;
use ipvlan_linux::NetNs;
use serde_json::Value;

/// A named namespace made for one test, deleted on drop (also when the test fails).
struct TestNs {
    name: String,
}

impl TestNs {
    /// An up device `ipvls<i>` standing in for the daemon's l3s sink; its name.
    fn sink(&self, i: u32) -> String {
        let sink = format!("ipvls{i}");
        self.ip(&[
            "link", "add", &sink, "type", "veth", "peer", "name", "sinkpeer",
        ]);
        self.ip(&["link", "set", &sink, "up"]);
        sink
    }

    /// A namespace with `lo` up and a veth `m0` (the master, up) whose peer is `m1`.
    fn new() -> TestNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ipvlrs-nft-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = TestNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "add", "m0", "type", "veth", "peer", "name", "m1"]);
        ns.ip(&["link", "set", "m0", "up"]);
        ns.ip(&["link", "set", "m1", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend(args);
        sh(&all)
    }

    /// Output of a command run inside the namespace.
    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend(args);
        sh(&all)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.exec(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Runs `f` on a thread inside the namespace (processes it spawns are there too).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetNs::named(&self.name)
            .expect("opening the namespace")
            .run(f)
            .expect("running in the namespace")
    }

    fn ifindex(&self, dev: &str) -> u32 {
        self.run(|| {
            Rtnl::open()
                .and_then(|mut r| r.link_by_name(dev))
                .expect("rtnetlink")
                .expect("the device")
                .index
        })
    }

    /// Elements of set `set` in table `family name`; `None` if there is no such table.
    fn set(&self, family: &str, table: &str, set: &str) -> Option<BTreeSet<IpAddr>> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "-j", "list", "table", family, table,
            ])
            .output()
            .expect("running nft");
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).expect("nft's JSON");
        let objects = v["nftables"].as_array().expect("a list");
        let s = objects
            .iter()
            .find_map(|o| o.get("set").filter(|s| s["name"] == set))
            .unwrap_or_else(|| panic!("no set {set} in {family} {table}"));
        Some(
            s.get("elem")
                .and_then(Value::as_array)
                .map(|e| {
                    e.iter()
                        .map(|a| a.as_str().expect("an address").parse().expect("an address"))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Every table in the namespace, as `family name`.
    fn tables(&self) -> Vec<String> {
        let v = self.json(&["nft", "-j", "list", "tables"]);
        v["nftables"]
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|o| o.get("table"))
            .map(|t| format!("{} {}", str_of(&t["family"]), str_of(&t["name"])))
            .collect()
    }

    /// The rules of family `-4`/`-6` with an fwmark.
    fn fwmark_rules(&self, family: &str) -> Vec<Value> {
        let v = self.json(&["ip", "-j", family, "rule", "show"]);
        v.as_array()
            .expect("a list")
            .iter()
            .filter(|r| r.get("fwmark").is_some())
            .cloned()
            .collect()
    }

    fn routes(&self, family: &str, table: u32) -> Vec<Value> {
        let v = self.json(&[
            "ip",
            "-j",
            family,
            "route",
            "show",
            "table",
            &table.to_string(),
        ]);
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test literal")
}

/// 500 IPv4 addresses from the documentation /24s and 500 from 2001:db8::/32.
fn thousand() -> BTreeSet<IpAddr> {
    let v4 = (0..500u32).map(|i| {
        let base = [0xc000_0200u32, 0xc633_6400, 0xcb00_7100][(i / 250) as usize];
        IpAddr::V4(Ipv4Addr::from(base + i % 250 + 1))
    });
    let v6 = (0..500u128).map(|i| IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | (i + 1))));
    v4.chain(v6).collect()
}

fn family(addrs: &BTreeSet<IpAddr>, v4: bool) -> BTreeSet<IpAddr> {
    addrs
        .iter()
        .filter(|a| a.is_ipv4() == v4)
        .copied()
        .collect()
}

#[test]
#[ignore = "needs root and nftables"]
fn steal_sets_hold_exactly_the_synced_addresses_and_1000_go_in_one_sync() {
    let ns = TestNs::new();
    let i = ns.ifindex("m0");
    let table = steal_table_name(i);
    let mut nf = Netfilter::new("m0", i);
    assert!(
        ns.set("netdev", &table, "v4").is_none(),
        "new installs nothing"
    );

    let some: BTreeSet<IpAddr> = [ip("192.0.2.10"), ip("198.51.100.11"), ip("2001:db8::12")].into();
    ns.run(|| nf.sync(&Desired::steal(some.clone())))
        .expect("sync steal");
    assert_eq!(ns.set("netdev", &table, "v4"), Some(family(&some, true)));
    assert_eq!(ns.set("netdev", &table, "v6"), Some(family(&some, false)));
    assert_eq!(nf.installed_addresses(), some);
    let chain = ns.exec(&["nft", "list", "chain", "netdev", &table, "steal"]);
    assert!(
        chain.contains("hook ingress device \"m0\" priority -500; policy accept;"),
        "{chain}"
    );
    for rule in [
        "meta pkttype host ip daddr @v4 drop",
        "meta pkttype host ip6 daddr @v6 drop",
        "meta pkttype host arp daddr ip @v4 drop",
    ] {
        assert!(chain.contains(rule), "{rule} in {chain}");
    }

    let all = thousand();
    let t = Instant::now();
    ns.run(|| nf.sync(&Desired::steal(all.clone())))
        .expect("sync 1000");
    let added = t.elapsed();
    assert_eq!(ns.set("netdev", &table, "v4"), Some(family(&all, true)));
    assert_eq!(ns.set("netdev", &table, "v6"), Some(family(&all, false)));

    let t = Instant::now();
    ns.run(|| nf.sync(&Desired::steal([])))
        .expect("remove 1000");
    let removed = t.elapsed();
    eprintln!("1000 addresses: added in {added:?}, removed in {removed:?} (one sync each)");
    assert!(removed < Duration::from_secs(2), "removal took {removed:?}");
    assert_eq!(ns.set("netdev", &table, "v4"), Some(BTreeSet::new()));
    assert_eq!(ns.set("netdev", &table, "v6"), Some(BTreeSet::new()));

    ns.run(|| nf.teardown()).expect("teardown");
    assert_eq!(ns.tables(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and nftables"]
fn l3s_installs_tables_rules_and_routes_and_teardown_leaves_nothing() {
    let ns = TestNs::new();
    let i = ns.ifindex("m0");
    let sink = ns.sink(i);
    let (steal, l3s, mark) = (steal_table_name(i), l3s_table_name(i), mark_for(i));
    let mut nf = Netfilter::new("m0", i);
    let addrs: BTreeSet<IpAddr> = [ip("203.0.113.5"), ip("2001:db8::5")].into();

    ns.run(|| nf.sync(&Desired::steal(addrs.clone())))
        .expect("sync steal");
    ns.run(|| nf.sync(&Desired::l3s(sink.clone(), addrs.clone())))
        .expect("sync l3s");

    assert_eq!(ns.set("ip", &l3s, "v4"), Some(family(&addrs, true)));
    assert_eq!(ns.set("ip6", &l3s, "v6"), Some(family(&addrs, false)));
    assert_eq!(
        ns.set("netdev", &steal, "v4"),
        Some(BTreeSet::new()),
        "steal emptied"
    );
    assert_eq!(ns.set("netdev", &steal, "v6"), Some(BTreeSet::new()));
    let ip6 = ns.exec(&["nft", "list", "table", "ip6", &l3s]);
    for text in [
        // -90: nft prints it relative to DNAT's -100.
        "type filter hook prerouting priority dstnat + 10; policy accept;",
        &format!("iifname \"m0\" ip6 daddr @v6 meta mark set {mark:#010x}"),
        "type filter hook input priority 2147483600; policy accept;",
        &format!("meta mark {mark:#010x} ip6 daddr @v6 dup to fe80::1 device \"{sink}\" drop"),
    ] {
        assert!(ip6.contains(text), "{text:?} in {ip6}");
    }
    for fam in ["-4", "-6"] {
        let rules = ns.fwmark_rules(fam);
        assert_eq!(rules.len(), 1, "{fam}: {rules:?}");
        assert_eq!(
            rules[0]["fwmark"],
            Value::from(format!("{mark:#x}")),
            "{fam}"
        );
        assert_eq!(rules[0]["table"], Value::from(mark.to_string()), "{fam}");
        assert_eq!(rules[0]["priority"], Value::from(300), "{fam}");
        let routes = ns.routes(fam, mark);
        assert_eq!(routes.len(), 1, "{fam}: {routes:?}");
        assert_eq!(routes[0]["type"], "local", "{fam}");
        assert_eq!(routes[0]["dst"], "default", "{fam}");
        assert_eq!(routes[0]["dev"], "lo", "{fam}");
    }

    // Back to steal: the l3s plumbing goes, the addresses move back.
    ns.run(|| nf.sync(&Desired::steal(addrs.clone())))
        .expect("back to steal");
    assert!(ns.set("ip", &l3s, "v4").is_none() && ns.set("ip6", &l3s, "v6").is_none());
    assert_eq!(ns.set("netdev", &steal, "v6"), Some(family(&addrs, false)));
    for fam in ["-4", "-6"] {
        assert!(ns.fwmark_rules(fam).is_empty(), "{fam}: rule removed");
        assert!(ns.routes(fam, mark).is_empty(), "{fam}: table flushed");
    }

    // l3s again, then teardown: nothing of ours left.
    ns.run(|| nf.sync(&Desired::l3s(sink.clone(), addrs.clone())))
        .expect("l3s again");
    ns.run(|| nf.teardown()).expect("teardown");
    assert!(nf.installed().is_empty());
    assert_eq!(ns.tables(), Vec::<String>::new());
    for fam in ["-4", "-6"] {
        assert!(ns.fwmark_rules(fam).is_empty(), "{fam}");
        assert!(ns.routes(fam, mark).is_empty(), "{fam}");
    }
}

#[test]
#[ignore = "needs root and nftables"]
fn l3s_with_the_loopback_down_says_so_and_leaves_no_half_routing() {
    let ns = TestNs::new();
    ns.ip(&["link", "set", "lo", "down"]);
    let i = ns.ifindex("m0");
    let sink = format!("ipvls{i}");
    ns.ip(&[
        "link", "add", &sink, "type", "veth", "peer", "name", "sinkpeer",
    ]);
    let mut nf = Netfilter::new("m0", i);
    let e = ns
        .run(|| nf.sync(&Desired::l3s(sink.clone(), [ip("192.0.2.7")])))
        .expect_err("refused");
    eprintln!(
        "lo down: {e}: {}",
        std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(matches!(e, NetfilterError::LocalRoute { .. }), "{e:?}");
    assert!(
        e.to_string().contains("needs the loopback device up"),
        "{e}"
    );
    assert!(nf.installed().l3s.is_some() && !nf.installed().policy_routing);
    for fam in ["-4", "-6"] {
        assert!(ns.fwmark_rules(fam).is_empty(), "{fam}: no half-made rule");
    }
    ns.run(|| nf.teardown()).expect("teardown");
    assert_eq!(ns.tables(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and nftables"]
fn a_missing_sink_is_nfts_error_and_nothing_is_applied() {
    let ns = TestNs::new();
    let i = ns.ifindex("m0");
    let mut nf = Netfilter::new("m0", i);
    let e = ns
        .run(|| nf.sync(&Desired::l3s("nosuchsink", [ip("192.0.2.8")])))
        .expect_err("no sink");
    eprintln!("no sink: {e}");
    assert!(matches!(e, NetfilterError::NftRejected { .. }), "{e:?}");
    assert!(
        nf.installed().is_empty(),
        "one transaction: nothing applied"
    );
    assert_eq!(ns.tables(), Vec::<String>::new());
}

#[test]
#[ignore = "needs root and nftables"]
fn leftovers_of_an_earlier_run_are_removed_and_a_fresh_namespace_is_fine() {
    let ns = TestNs::new();
    let i = ns.ifindex("m0");
    let sink = ns.sink(i);
    let mark = mark_for(i);
    // Nothing there: removing leftovers is no failure.
    let mut fresh = Netfilter::new("m0", i);
    ns.run(|| fresh.remove_leftovers())
        .expect("nothing to remove is fine");
    assert!(fresh.installed().is_empty());
    // A daemon killed in l3s: its tables, rule and route stay, its Netfilter is gone.
    let addrs: BTreeSet<IpAddr> = [ip("203.0.113.5"), ip("2001:db8::5")].into();
    let mut killed = Netfilter::new("m0", i);
    ns.run(|| killed.sync(&Desired::l3s(sink.clone(), addrs.clone())))
        .expect("sync l3s");
    drop(killed);
    assert!(!ns.tables().is_empty());
    // The next run removes all of it before its first sync.
    let mut next = Netfilter::new("m0", i);
    ns.run(|| next.remove_leftovers())
        .expect("remove leftovers");
    assert_eq!(ns.tables(), Vec::<String>::new());
    for fam in ["-4", "-6"] {
        assert!(ns.fwmark_rules(fam).is_empty(), "{fam}: rule removed");
        assert!(ns.routes(fam, mark).is_empty(), "{fam}: table flushed");
    }
    assert!(next.installed().is_empty());
    ns.run(|| next.sync(&Desired::steal(addrs.clone())))
        .expect("then a normal sync");
}
