//! The metrics' text: names, labels, escaping, both formats, an empty daemon. Pure: built from
//! `link show` answers written here.

use serde_json::json;

use super::*;

/// A slave as `link show` reports it, with `stats` (JSON) as its counters.
fn slave(name: &str, netns: Option<&str>, stats: serde_json::Value) -> LinkView {
    let mut s = json!({"rx_packets": 0, "rx_bytes": 0, "rx_multicast": 0, "tx_packets": 0,
                       "tx_bytes": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0,
                       "drops": [], "address_conflicts": 0});
    s.as_object_mut()
        .unwrap()
        .extend(stats.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "name": name, "current_name": name, "master": "m0", "mode": "l2",
        "flag": "private", "id": 1, "mtu": 1500, "mac": "02:00:00:00:00:01",
        "netns": netns, "ifindex": 7, "up": true, "noarp": false, "carrier": true,
        "spoofchk": false, "backend": "veth", "datapath": "bpf-tcx",
        "addresses": ["192.0.2.11", "2001:db8:1::11"], "conflicts": [],
        "stats": s
    }))
    .unwrap()
}

fn port(master: &str, drops: serde_json::Value) -> PortView {
    serde_json::from_value(json!({"master": master, "drops": drops})).unwrap()
}

fn both(links: &[LinkView], ports: &[PortView]) -> (String, String) {
    (
        render(links, ports, Format::Prometheus),
        render(links, ports, Format::OpenMetrics),
    )
}

/// Every sample line's metric name.
fn sample_names(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect()
}

const S0: &str = r#"{master="m0",slave="ipvl0",netns="ns0",mode="l2",flag="private"}"#;

#[test]
fn an_empty_daemon_says_it_has_no_ports() {
    let (prom, om) = both(&[], &[]);
    assert!(
        prom.contains("# TYPE ipvlan_ports gauge\nipvlan_ports 0\n"),
        "{prom}"
    );
    assert_eq!(sample_names(&prom), ["ipvlan_ports"], "{prom}");
    assert!(om.contains("\nipvlan_ports 0\n"), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(!prom.contains("# EOF"), "{prom}");
    // The families are described even without series.
    assert!(
        prom.contains("# TYPE ipvlan_slave_tx_packets_total counter\n"),
        "{prom}"
    );
}

#[test]
fn slave_counters_are_named_with_total_and_labelled() {
    let s = slave(
        "ipvl0",
        Some("ns0"),
        json!({"rx_packets": 5, "rx_bytes": 490, "rx_multicast": 2, "tx_packets": 7,
               "tx_bytes": 686, "tx_errors": 1, "address_conflicts": 3}),
    );
    let (prom, om) = both(&[s], &[port("m0", json!([]))]);
    for line in [
        format!("ipvlan_slave_rx_packets_total{S0} 5"),
        format!("ipvlan_slave_rx_bytes_total{S0} 490"),
        format!("ipvlan_slave_rx_multicast_packets_total{S0} 2"),
        format!("ipvlan_slave_tx_packets_total{S0} 7"),
        format!("ipvlan_slave_tx_bytes_total{S0} 686"),
        format!("ipvlan_slave_tx_errors_total{S0} 1"),
        format!("ipvlan_slave_address_conflicts_total{S0} 3"),
        format!("ipvlan_slave_up{S0} 1"),
        format!("ipvlan_slave_carrier{S0} 1"),
        format!("ipvlan_slave_addresses{S0} 2"),
        format!("ipvlan_slave_conflicting_addresses{S0} 0"),
        format!("ipvlan_slave_mtu_bytes{S0} 1500"),
        "ipvlan_ports 1".to_string(),
        r#"ipvlan_port_slaves{master="m0"} 1"#.to_string(),
        r#"ipvlan_port_info{master="m0",mode="l2",flag="private",datapath="bpf-tcx"} 1"#
            .to_string(),
        r#"ipvlan_slave_info{master="m0",slave="ipvl0",netns="ns0",mode="l2",flag="private",ifname="ipvl0",ifindex="7",dev_id="1",backend="veth",datapath="bpf-tcx",spoofchk="off"} 1"#
            .to_string(),
    ] {
        assert!(prom.lines().any(|l| l == line), "no {line} in\n{prom}");
        assert!(om.lines().any(|l| l == line), "no {line} in\n{om}");
    }
    // Prometheus 0.0.4: HELP and TYPE name the sample (`_total` included); OpenMetrics: the
    // family, with the unit in its own line.
    assert!(prom.contains("# TYPE ipvlan_slave_rx_bytes_total counter\n"));
    assert!(prom.contains("# HELP ipvlan_slave_rx_bytes_total Bytes of the frames delivered"));
    assert!(om.contains("# TYPE ipvlan_slave_rx_bytes counter\n"));
    assert!(om.contains("# UNIT ipvlan_slave_rx_bytes bytes\n"));
    assert!(om.contains("# TYPE ipvlan_slave info\n"), "{om}");
    assert!(prom.contains("# TYPE ipvlan_slave_info gauge\n"), "{prom}");
}

#[test]
fn every_sample_has_help_and_type_and_every_counter_ends_in_total() {
    let s = slave(
        "ipvl0",
        Some("ns0"),
        json!({"drops": [{"direction": "tx", "reason": "private_unicast", "count": 4}]}),
    );
    let prom = render(
        &[s],
        &[port(
            "m0",
            json!([{"direction": "port", "reason": "backlog_full", "count": 9}]),
        )],
        Format::Prometheus,
    );
    for name in sample_names(&prom) {
        let ty = prom
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))
            .unwrap_or_else(|| panic!("no TYPE for {name}:\n{prom}"));
        assert!(
            prom.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > 40),
            "no HELP for {name}"
        );
        assert_eq!(ty == "counter", name.ends_with("_total"), "{name}: {ty}");
    }
}

#[test]
fn drops_carry_direction_and_reason_and_the_port_its_own() {
    let s = slave(
        "ipvl0",
        Some("ns0"),
        json!({"rx_dropped": 1, "tx_dropped": 4, "drops": [
            {"direction": "rx", "reason": "receiver_down", "count": 1},
            {"direction": "tx", "reason": "private_unicast", "count": 4}]}),
    );
    let p = port(
        "m0",
        json!([{"direction": "port", "reason": "backlog_full", "count": 9}]),
    );
    let (prom, om) = both(&[s], &[p]);
    let inner = &S0[..S0.len() - 1];
    for text in [&prom, &om] {
        for line in [
            format!(
                "ipvlan_slave_drops_total{inner},direction=\"tx\",reason=\"private_unicast\"}} 4"
            ),
            format!(
                "ipvlan_slave_drops_total{inner},direction=\"rx\",reason=\"receiver_down\"}} 1"
            ),
            format!("ipvlan_slave_tx_dropped_total{S0} 4"),
            format!("ipvlan_slave_rx_dropped_total{S0} 1"),
            r#"ipvlan_port_drops_total{master="m0",reason="backlog_full"} 9"#.to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }
}

#[test]
fn label_values_are_escaped_and_the_daemons_namespace_is_empty() {
    let s = slave("we\"ird\\", None, json!({"tx_packets": 1}));
    let mut other = slave("ipvl1", Some("ns\nx"), json!({}));
    other.master = "m\"1".into();
    let (prom, om) = both(&[s, other], &[]);
    for text in [&prom, &om] {
        let line = r#"ipvlan_slave_tx_packets_total{master="m0",slave="we\"ird\\",netns="",mode="l2",flag="private"} 1"#;
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        let line = r#"ipvlan_slave_up{master="m\"1",slave="ipvl1",netns="ns\nx",mode="l2",flag="private"} 1"#;
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
}

#[test]
fn a_port_counts_its_own_slaves_only() {
    let a = slave("a", Some("x"), json!({}));
    let b = slave("b", Some("y"), json!({}));
    let mut c = slave("c", Some("z"), json!({}));
    c.master = "m1".into();
    c.mode = ipvlan_core::Mode::L3;
    c.datapath = "user".into();
    let prom = render(
        &[a, b, c],
        &[port("m0", json!([])), port("m1", json!([]))],
        Format::Prometheus,
    );
    for line in [
        "ipvlan_ports 2",
        r#"ipvlan_port_slaves{master="m0"} 2"#,
        r#"ipvlan_port_slaves{master="m1"} 1"#,
        r#"ipvlan_port_info{master="m1",mode="l3",flag="private",datapath="user"} 1"#,
    ] {
        assert!(prom.lines().any(|l| l == line), "no {line} in\n{prom}");
    }
}

#[test]
fn the_format_follows_the_accept_header() {
    let prometheus =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(
        Format::from_accept(Some("text/plain; version=0.0.4")),
        Format::Prometheus
    );
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert_eq!(
        Format::Prometheus.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}
