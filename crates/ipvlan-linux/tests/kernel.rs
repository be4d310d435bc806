//! The setup calls against the real kernel, each test inside a network namespace of its own
//! (`unshare(CLONE_NEWNET)` on a dedicated thread, gone when the thread ends), so nothing of
//! the host's interfaces, routes or rules is touched. The results are checked with iproute2
//! (`ip -j …`), run from that thread so that it sees the same namespace.
//!
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`) and `ip`: run with
//! `cargo test -p ipvlan-linux -- --include-ignored`.

use std::io;
use std::net::IpAddr;
use std::process::Command;

use ipvlan_core::MacAddr;
use ipvlan_linux::host::HostStack;
use ipvlan_linux::netns::NetNsError;
use ipvlan_linux::packet::PacketError;
use ipvlan_linux::rtnl::{IpFamily, LinkChange, Rtnl};
use ipvlan_linux::tap::TapError;
use ipvlan_linux::{NetNs, PacketSocket, Tap};
use nix::sched::{unshare, CloneFlags};
use serde_json::Value;

/// Runs `f` on a new thread inside a new, empty network namespace whose loopback is up.
fn in_fresh_netns<T: Send>(f: impl FnOnce(&mut Rtnl) -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            let mut r = Rtnl::open().expect("rtnetlink");
            let lo = r.link_by_name("lo").expect("lo").expect("lo exists");
            r.set_link(
                lo.index,
                &LinkChange {
                    up: Some(true),
                    ..LinkChange::default()
                },
            )
            .expect("lo up");
            f(&mut r)
        })
        .join()
        .expect("the test thread")
    })
}

/// `ip ARGS` in the calling thread's namespace, its JSON output parsed.
fn ip_json(args: &[&str]) -> Vec<Value> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("running ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str(&text).expect("ip's JSON") {
        Value::Array(v) => v,
        other => panic!("not a list: {other}"),
    }
}

#[test]
#[ignore = "needs root"]
fn fwmark_rules_are_added_and_deleted_in_both_families() {
    in_fresh_netns(|r| {
        for (family, flag) in [(IpFamily::V4, "-4"), (IpFamily::V6, "-6")] {
            r.add_rule_fwmark(family, 0x1d, 1000, 90).expect("add rule");
            let rules = ip_json(&[flag, "rule", "show"]);
            let ours: Vec<_> = rules.iter().filter(|x| x["priority"] == 90).collect();
            assert_eq!(ours.len(), 1, "{rules:?}");
            assert_eq!(ours[0]["fwmark"], "0x1d");
            assert_eq!(ours[0]["table"], "1000");

            let again = r
                .add_rule_fwmark(family, 0x1d, 1000, 90)
                .expect_err("twice");
            assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
            assert!(
                again.to_string().contains("fwmark 0x1d table 1000"),
                "{again}"
            );

            r.del_rule_fwmark(family, 0x1d, 1000).expect("del rule");
            let rules = ip_json(&[flag, "rule", "show"]);
            assert!(rules.iter().all(|x| x["priority"] != 90), "{rules:?}");
            let gone = r
                .del_rule_fwmark(family, 0x1d, 1000)
                .expect_err("nothing to delete");
            assert_eq!(gone.kind(), io::ErrorKind::NotFound, "{gone}");
        }
    });
}

#[test]
#[ignore = "needs root"]
fn the_local_default_route_is_replaced_then_flushed() {
    in_fresh_netns(|r| {
        for (family, flag) in [(IpFamily::V4, "-4"), (IpFamily::V6, "-6")] {
            // Replacing is idempotent.
            r.replace_local_default_route(family, 1000)
                .expect("replace");
            r.replace_local_default_route(family, 1000)
                .expect("replace again");
            let routes = ip_json(&[flag, "route", "show", "table", "1000"]);
            assert_eq!(routes.len(), 1, "{routes:?}");
            assert_eq!(routes[0]["type"], "local");
            assert_eq!(routes[0]["dst"], "default");
            assert_eq!(routes[0]["dev"], "lo");

            assert_eq!(r.flush_route_table(family, 1000).expect("flush"), 1);
            assert!(ip_json(&[flag, "route", "show", "table", "1000"]).is_empty());
            assert_eq!(r.flush_route_table(family, 1000).expect("flush empty"), 0);
        }
        // The main table is left alone by a flush of another.
        assert!(!ip_json(&["-4", "route", "show", "table", "local"]).is_empty());
    });
}

#[test]
#[ignore = "needs root"]
fn the_default_route_device_is_found() {
    in_fresh_netns(|r| {
        assert_eq!(r.default_route_device(IpFamily::V4).expect("dump"), None);
        let tap = Tap::create_transient("dflt0").expect("a TAP to route through");
        let link = r.link_by_name("dflt0").expect("lookup").expect("the TAP");
        r.set_link(
            link.index,
            &LinkChange {
                up: Some(true),
                ..LinkChange::default()
            },
        )
        .expect("up");
        let addr: IpAddr = "192.0.2.1".parse().expect("literal");
        r.add_address(link.index, addr, 24, false).expect("address");
        let gw: IpAddr = "192.0.2.254".parse().expect("literal");
        let any: IpAddr = "0.0.0.0".parse().expect("literal");
        r.add_route(any, 0, Some(gw), link.index)
            .expect("default route");
        assert_eq!(
            r.default_route_device(IpFamily::V4).expect("dump"),
            Some(link.index)
        );
        assert_eq!(r.default_route_device(IpFamily::V6).expect("dump"), None);
        let again = r
            .add_route(any, 0, Some(gw), link.index)
            .expect_err("twice");
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
        drop(tap);
    });
}

#[test]
#[ignore = "needs root"]
fn tap_errors_name_the_device_and_keep_the_kernels_words() {
    in_fresh_netns(|r| {
        let tap = Tap::create("tst0", 2).expect("create");
        assert_eq!(tap.queues(), 2);
        assert_eq!(tap.current_name().expect("TUNGETIFF"), "tst0");
        let mac = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
        tap.set_mac(mac).expect("SIOCSIFHWADDR");
        tap.enable_offloads().expect("TUNSETOFFLOAD");
        tap.set_carrier(true).expect("TUNSETCARRIER");
        let link = r.link_by_name("tst0").expect("lookup").expect("the TAP");
        assert_eq!(link.mac, Some(mac));
        assert_eq!(
            tap.netns().expect("TUNGETDEVNETNS").id(),
            NetNs::current().expect("own namespace").id()
        );

        // A taken name: kind AlreadyExists, the errno and the kernel's words kept.
        let e = Tap::create("tst0", 1).expect_err("the name is taken");
        assert!(
            matches!(e, TapError::Exists { ref name, .. } if name == "tst0"),
            "{e:?}"
        );
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)));
        let text = e.to_string();
        assert!(
            text.contains("tst0") && text.contains("(os error"),
            "{text}"
        );
        let io = io::Error::from(e);
        assert_eq!(io.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(io.to_string(), text);

        // Attaching to it works, with as many queues as asked.
        let again = Tap::attach("tst0", 2).expect("attach");
        assert_eq!(again.queues(), 2);
        drop(again);

        let bad = Tap::create("a-name-far-too-long", 1).expect_err("IFNAMSIZ");
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(bad.raw_os_error(), None);

        tap.destroy().expect("persist off");
        drop(tap);
        assert!(r.link_by_name("tst0").expect("lookup").is_none());
    });
}

#[test]
#[ignore = "needs root"]
fn packet_and_host_sockets_open_and_their_errors_say_on_what() {
    in_fresh_netns(|r| {
        let lo = r.link_by_name("lo").expect("lookup").expect("lo");
        let socks = PacketSocket::open_fanout(lo.index, 3).expect("fanout on lo");
        assert_eq!(socks.len(), 3);
        assert!(socks.iter().all(|s| s.ifindex() == lo.index));
        let mut buf = [0u8; 2048];
        let idle = socks[0].recv(&mut buf).expect_err("nothing received yet");
        assert_eq!(idle.kind(), io::ErrorKind::WouldBlock);
        // PACKET_STATISTICS answers (nothing dropped on an idle socket).
        assert_eq!(socks[0].take_drops().expect("PACKET_STATISTICS"), 0);

        let e = PacketSocket::open(4242).expect_err("no such link");
        assert!(
            matches!(e, PacketError::Bind { ifindex: 4242, .. }),
            "{e:?}"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert!(e.to_string().contains("link 4242"), "{e}");
        let e = PacketSocket::open(u32::MAX).expect_err("out of range");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

        // A raw IPv4 packet (header included) into the stack, to loopback.
        let host = HostStack::open("lo").expect("raw sockets");
        let bad = HostStack::open("a-name-far-too-long").expect_err("IFNAMSIZ");
        assert_eq!(bad.kind(), io::ErrorKind::InvalidInput);
        // The kernel fills in the header checksum (raw(7)); the ICMP one does not matter here.
        let ping = [
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1, 8, 0, 0xf7, 0xff,
            0, 0, 0, 0,
        ];
        let sent = host
            .send(&ping, "127.0.0.1".parse().expect("literal"))
            .expect("sendto");
        assert_eq!(sent, ping.len());
    });
}

#[test]
#[ignore = "needs root"]
fn namespace_errors_name_the_namespace() {
    let e = NetNs::named("ipvlan-rs-no-such-namespace").expect_err("absent");
    assert!(matches!(e, NetNsError::Open { .. }), "{e:?}");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("ipvlan-rs-no-such-namespace"), "{e}");
    let ns = NetNs::current().expect("own namespace");
    let inside = ns.run(|| NetNs::current().map(|n| n.id())).expect("run");
    assert_eq!(inside.expect("current"), ns.id());
    let opened = Rtnl::open_in(&ns).expect("rtnetlink in a namespace");
    drop(opened);
}
