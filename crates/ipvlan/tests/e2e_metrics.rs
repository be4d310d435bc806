//! End to end: `ipvlan metrics` and the daemon's `--metrics-listen`, read by an independent
//! parser (Debian's `python3-prometheus-client`: `prometheus_client.parser` for the 0.0.4 text
//! format, `prometheus_client.openmetrics.parser` for OpenMetrics), with the numbers checked
//! against the traffic the test makes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use serde_json::Value;

use common::{text, Fx};

/// Debian's interpreter, where `python3-prometheus-client` installs (a `python3` earlier on
/// `PATH`, e.g. pyenv's, does not see it).
const PYTHON: &str = "/usr/bin/python3";

/// Where the daemon serves `/metrics`, on the loopback of the fixture's `host` namespace
/// (its own, so no port of the machine is taken).
const LISTEN: &str = "127.0.0.1:9477";

/// Parses metrics text (`stdin`) or fetches it (a URL, without proxies) and parses it; prints
/// `{"status", "content_type", "samples": [{family, type, name, labels, value}]}` as JSON.
const PARSE: &str = r#"
import json, sys, urllib.request, urllib.error
from prometheus_client.parser import text_string_to_metric_families as prom
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
src, fmt = sys.argv[1], sys.argv[2]
status, ctype = None, None
if src == "stdin":
    body = sys.stdin.read()
else:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if fmt == "openmetrics" else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        r = opener.open(urllib.request.Request(src, headers=headers), timeout=10)
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "samples": []}))
        sys.exit(0)
    status, ctype, body = r.status, r.headers.get("Content-Type"), r.read().decode()
parse = om if fmt == "openmetrics" else prom
samples = [{"family": f.name, "type": f.type, "name": s.name, "labels": s.labels, "value": s.value}
           for f in parse(body) for s in f.samples]
print(json.dumps({"status": status, "content_type": ctype, "samples": samples}))
"#;

/// Fails the test, saying what to install, without the parser.
fn require_parser() {
    let o = Command::new(PYTHON)
        .args([
            "-c",
            "import prometheus_client.parser, prometheus_client.openmetrics.parser",
        ])
        .output();
    match o {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "this test parses the metrics with Debian's python3-prometheus-client, which {PYTHON} \
             cannot import (apt-get install python3-prometheus-client): {}",
            text(&o)
        ),
        Err(e) => panic!(
            "this test parses the metrics with Debian's python3-prometheus-client, and there is \
             no {PYTHON} (apt-get install python3 python3-prometheus-client): {e}"
        ),
    }
}

/// A fixture whose daemon serves `/metrics` at [`LISTEN`] in `host`.
fn fixture() -> Fx {
    require_parser();
    let mut fx = Fx::new();
    fx.daemon_args = vec!["--metrics-listen".into(), LISTEN.into()];
    fx.stop_daemon(false);
    fx.start_daemon();
    fx
}

/// The parsed samples of `text` (`fmt`: `prometheus` or `openmetrics`).
fn parse(text: &str, fmt: &str) -> Vec<Value> {
    let o = ipvlan_testkit::run_with_input(
        Command::new(PYTHON).args(["-c", PARSE, "stdin", fmt]),
        text.as_bytes(),
    );
    assert!(
        o.status.success(),
        "the parser refused the {fmt} text: {}\n--- text ---\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["samples"].as_array().unwrap().clone()
}

/// `ipvlan metrics [--openmetrics]`, parsed.
fn cli_metrics(fx: &Fx, openmetrics: bool) -> Vec<Value> {
    if openmetrics {
        let out = cli_stdout(fx, &["metrics", "--openmetrics"]);
        assert!(out.ends_with("# EOF\n"), "{out}");
        parse(&out, "openmetrics")
    } else {
        parse(&cli_stdout(fx, &["metrics"]), "prometheus")
    }
}

fn cli_stdout(fx: &Fx, args: &[&str]) -> String {
    let o = fx.cli(args);
    assert!(
        o.status.success(),
        "ipvlan {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `GET url` from the `host` namespace (`fmt` decides the `Accept` header), parsed: the
/// whole JSON answer of [`PARSE`].
fn scrape(fx: &Fx, url: &str, fmt: &str) -> Value {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &fx.ns("host"),
            PYTHON,
            "-c",
            PARSE,
            url,
            fmt,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "GET {url}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
}

fn must(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
}

/// Two private l2 slaves: ipvl0 (ns0, .11) and ipvl1 (ns1, .12).
fn two_slaves(fx: &mut Fx) {
    fx.slave(
        "ipvl0",
        "mode l2 private",
        "ns0",
        "192.0.2.11/24",
        "2001:db8:1::11/64",
    );
    fx.slave(
        "ipvl1",
        "mode l2 private",
        "ns1",
        "192.0.2.12/24",
        "2001:db8:1::12/64",
    );
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, python3-prometheus-client"]
fn metrics_count_pings_and_drops_by_reason() {
    require_env!();
    let mut fx = fixture();
    // An empty daemon: no port, and the parser still reads it.
    let empty = cli_metrics(&fx, false);
    assert_eq!(must(&empty, "ipvlan_ports", &[]), 0.0);
    assert!(value(&empty, "ipvlan_slave_tx_packets_total", &[]).is_none());

    two_slaves(&mut fx);
    let datapath = fx.datapath().unwrap();
    let ns0 = fx.ns("ns0");
    let s0 = [
        ("master", "m0"),
        ("slave", "ipvl0"),
        ("netns", ns0.as_str()),
        ("mode", "l2"),
        ("flag", "private"),
    ];
    let before = cli_metrics(&fx, false);
    assert_eq!(must(&before, "ipvlan_ports", &[]), 1.0);
    assert_eq!(
        must(&before, "ipvlan_port_slaves", &[("master", "m0")]),
        2.0
    );
    let info = [("master", "m0"), ("mode", "l2"), ("flag", "private")];
    let port_info = before
        .iter()
        .find(|s| s["name"] == "ipvlan_port_info")
        .unwrap();
    assert_eq!(port_info["labels"]["datapath"], datapath.as_str());
    assert_eq!(must(&before, "ipvlan_port_info", &info), 1.0);
    for gauge in ["ipvlan_slave_up", "ipvlan_slave_carrier"] {
        assert_eq!(must(&before, gauge, &s0), 1.0, "{gauge}");
    }
    // The addresses `link show` lists (the link-local one included).
    let shown = fx.link("ipvl0").unwrap()["addresses"]
        .as_array()
        .unwrap()
        .len();
    assert!(shown >= 2);
    assert_eq!(must(&before, "ipvlan_slave_addresses", &s0), shown as f64);
    assert_eq!(
        must(&before, "ipvlan_slave_conflicting_addresses", &s0),
        0.0
    );
    let slave_info = before
        .iter()
        .find(|s| s["name"] == "ipvlan_slave_info" && s["labels"]["slave"] == "ipvl0")
        .unwrap();
    assert_eq!(slave_info["labels"]["datapath"], datapath.as_str());
    assert_eq!(slave_info["labels"]["netns"], ns0.as_str());
    let counter = before
        .iter()
        .find(|s| s["name"] == "ipvlan_slave_tx_packets_total")
        .unwrap();
    assert_eq!(counter["type"], "counter", "{counter}");
    assert_eq!(counter["family"], "ipvlan_slave_tx_packets", "{counter}");

    // Five echo requests out, five replies in: each 98 bytes on the wire (14 + 20 + 8 + 56).
    assert!(fx.ping("ns0", "192.0.2.254", 5), "{}", fx.daemon_log());
    let after = cli_metrics(&fx, false);
    let grew = |name: &str| must(&after, name, &s0) - must(&before, name, &s0);
    assert!(grew("ipvlan_slave_tx_packets_total") >= 5.0, "{after:#?}");
    assert!(grew("ipvlan_slave_rx_packets_total") >= 5.0, "{after:#?}");
    assert!(
        grew("ipvlan_slave_tx_bytes_total") >= 5.0 * 98.0,
        "{after:#?}"
    );
    assert!(
        grew("ipvlan_slave_rx_bytes_total") >= 5.0 * 98.0,
        "{after:#?}"
    );

    // private: ns1's ARP replies to ns0 die on ipvl1 (tx private_unicast), counted by reason.
    assert!(
        !fx.ping("ns0", "192.0.2.12", 2),
        "private blocks slave → slave"
    );
    let dropped = cli_metrics(&fx, false);
    let ns1 = fx.ns("ns1");
    let drop = [
        ("slave", "ipvl1"),
        ("netns", ns1.as_str()),
        ("direction", "tx"),
        ("reason", "private_unicast"),
    ];
    assert!(
        must(&dropped, "ipvlan_slave_drops_total", &drop) >= 1.0,
        "{dropped:#?}"
    );
    assert!(
        must(
            &dropped,
            "ipvlan_slave_tx_dropped_total",
            &[("slave", "ipvl1")]
        ) >= 1.0
    );

    // The same in OpenMetrics, read by the OpenMetrics parser (units, info, # EOF).
    let om = cli_metrics(&fx, true);
    let rx = om
        .iter()
        .find(|s| s["name"] == "ipvlan_slave_rx_bytes_total" && s["labels"]["slave"] == "ipvl0")
        .unwrap();
    assert_eq!(rx["family"], "ipvlan_slave_rx_bytes", "{rx}");
    assert!(must(&om, "ipvlan_slave_drops_total", &drop) >= 1.0);
    assert_eq!(must(&om, "ipvlan_slave_info", &[("slave", "ipvl1")]), 1.0);
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, python3-prometheus-client"]
fn metrics_listen_serves_what_the_cli_prints() {
    require_env!();
    let mut fx = fixture();
    two_slaves(&mut fx);
    assert!(fx.ping("ns0", "192.0.2.254", 3));
    let _ = fx.ping("ns0", "192.0.2.12", 1); // a private_unicast drop on ipvl1
    let url = format!("http://{LISTEN}/metrics");

    for fmt in ["prometheus", "openmetrics"] {
        let cli_before = if fmt == "openmetrics" {
            cli_metrics(&fx, true)
        } else {
            cli_metrics(&fx, false)
        };
        let got = scrape(&fx, &url, fmt);
        let cli_after = cli_metrics(&fx, fmt == "openmetrics");
        assert_eq!(got["status"], 200, "{got}");
        let want_type = if fmt == "openmetrics" {
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        } else {
            "text/plain; version=0.0.4; charset=utf-8"
        };
        assert_eq!(got["content_type"], want_type);
        let http = got["samples"].as_array().unwrap();
        // The same series, each between the CLI's values before and after (counters move
        // with the namespaces' own traffic; gauges do not).
        let key = |s: &Value| format!("{}{}", s["name"], s["labels"]);
        let mut http_keys: Vec<String> = http.iter().map(key).collect();
        let mut cli_keys: Vec<String> = cli_after.iter().map(key).collect();
        http_keys.sort();
        cli_keys.sort();
        assert_eq!(http_keys, cli_keys, "{fmt}: other series over HTTP");
        for s in http {
            let k = key(s);
            let lo = cli_before.iter().find(|c| key(c) == k).map(|c| &c["value"]);
            let hi = cli_after.iter().find(|c| key(c) == k).unwrap()["value"].as_f64();
            let v = s["value"].as_f64().unwrap();
            if let (Some(lo), Some(hi)) = (lo.and_then(Value::as_f64), hi) {
                assert!(lo <= v && v <= hi, "{fmt} {k}: {lo} <= {v} <= {hi}");
            }
        }
        assert!(
            value(
                http,
                "ipvlan_slave_drops_total",
                &[("slave", "ipvl1"), ("reason", "private_unicast")]
            )
            .is_some(),
            "{http:#?}"
        );
    }

    let other = scrape(&fx, &format!("http://{LISTEN}/"), "prometheus");
    assert_eq!(other["status"], 404, "{other}");
}

#[test]
#[ignore = "needs root, iproute2, nftables, TUN, python3-prometheus-client"]
fn metrics_listen_port_alone_is_loopback_and_a_taken_port_stops_the_start() {
    require_env!();
    let mut fx = fixture();
    // Port alone: 127.0.0.1.
    fx.stop_daemon(false);
    fx.daemon_args = vec!["--metrics-listen".into(), "9478".into()];
    fx.start_daemon();
    let got = scrape(&fx, "http://127.0.0.1:9478/metrics", "prometheus");
    assert_eq!(got["status"], 200, "{got}");
    assert!(fx
        .daemon_log()
        .contains("serving GET /metrics over HTTP addr=127.0.0.1:9478"));
    // Nothing listens on the namespace's other addresses: m0's is not reached from outside.
    let o = fx.try_sh(
        "ext",
        &format!(
            "{PYTHON} -c \"import socket; socket.create_connection(('192.0.2.1', 9478), timeout=2)\""
        ),
    );
    assert!(!o.status.success(), "reachable from outside: {}", text(&o));
    assert!(text(&o).contains("ConnectionRefusedError"), "{}", text(&o));
    // A second daemon on a taken port refuses to start, saying why (the first holds it).
    let o = Command::new("ip")
        .args(["netns", "exec", &fx.ns("host")])
        .arg(common::BIN)
        .args(["daemon", "--socket"])
        .arg(fx.dir().join("second.sock"))
        .arg("--state-dir")
        .arg(fx.dir().join("second-state"))
        .args(["--datapath", "user", "--metrics-listen", "9478"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("--metrics-listen 127.0.0.1:9478: binding"),
        "{t}"
    );
    // And a value that is no address is a usage error (255).
    let o = fx.cli(&["daemon", "--metrics-listen", "localhost:1"]);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o));
    assert!(text(&o).contains("is not PORT, ADDR:PORT"), "{}", text(&o));
}
