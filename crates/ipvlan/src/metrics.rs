//! `ipvlan metrics` and the daemon's `/metrics`: every port's and slave's counters in the
//! Prometheus text exposition format (version 0.0.4, what node_exporter's textfile collector
//! reads) or OpenMetrics 1.0 text.
//!
//! [`render`] is a pure function of a `link show` answer ([`Response::Ok`]'s `links` and
//! `ports`, every slave): the CLI asks the daemon for it over the control socket, the daemon's
//! metrics listener has its event loop answer it as it answers `link show`. So both print the
//! same numbers, read the same way. The exposition itself (names with `_total`, units, HELP and
//! TYPE lines, escaping of label values, `# EOF`) is `prometheus-client`'s, the official Rust
//! client (`encoding::text` for OpenMetrics, `encoding::prometheus_text` for 0.0.4); this module
//! only says what the metrics are.
//!
//! Metric names (prefix `ipvlan_`) and labels:
//! - ports: `ipvlan_ports`, `ipvlan_port_slaves{master}`, `ipvlan_port_info{master,mode,flag,
//!   datapath}`, `ipvlan_port_drops_total{master,reason}`;
//! - slaves, labelled `master`, `slave` (the name it was created as), `netns` (empty: the
//!   daemon's namespace), `mode`, `flag`: `ipvlan_slave_{rx,tx}_{packets,bytes}_total`,
//!   `ipvlan_slave_rx_multicast_packets_total`, `ipvlan_slave_tx_errors_total`,
//!   `ipvlan_slave_{rx,tx}_dropped_total`, `ipvlan_slave_drops_total{direction,reason}`,
//!   `ipvlan_slave_address_conflicts_total`, `ipvlan_slave_rx_dhcp_steered_packets_total`,
//!   and the gauges `ipvlan_slave_up`,
//!   `ipvlan_slave_carrier`, `ipvlan_slave_addresses`, `ipvlan_slave_conflicting_addresses`,
//!   `ipvlan_slave_mtu_bytes`, `ipvlan_slave_info{…,ifname,ifindex,dev_id,backend,datapath,
//!   spoofchk}`.
//!
//! A drop series appears once its reason has counted a drop: the daemon reports reasons with
//! a non-zero count only (as `ipvlan -s link show` prints them).
//!
//! Sources: the counters are the data path's (the userspace workers' port state, or the eBPF
//! programs' per-CPU maps summed), the rest the daemon's port table, as `link show` reports
//! them ([`crate::proto::LinkView`], [`crate::proto::PortView`]).

use std::fmt;
use std::path::Path;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::client;
use crate::proto::{LinkShow, LinkView, PortView, Request, Response};

/// `ipvlan metrics` usage.
pub const USAGE: &str = "\
Usage: ipvlan metrics [ --openmetrics ]
Prints every port's and slave's counters, as the daemon has them now, in the Prometheus text
format (version 0.0.4, what node_exporter's textfile collector reads), or with --openmetrics
in OpenMetrics 1.0 text. The daemon serves the same over HTTP with
`ipvlan daemon --metrics-listen [ADDR:]PORT`.";

/// The words after `metrics`: the format asked for, `None` for help (`help`, `-h`, `--help`
/// anywhere). Errors: the usage error's message (an unknown word).
pub fn parse(args: &[String]) -> Result<Option<Format>, String> {
    if args
        .iter()
        .any(|a| matches!(a.as_str(), "help" | "-h" | "--help" | "-help"))
    {
        return Ok(None);
    }
    let mut format = Format::Prometheus;
    for a in args {
        match a.as_str() {
            "--openmetrics" | "-openmetrics" => format = Format::OpenMetrics,
            other => return Err(format!("ipvlan metrics: unknown argument \"{other}\"")),
        }
    }
    Ok(Some(format))
}

/// What the daemon answered `ipvlan metrics`.
#[derive(Debug)]
pub enum Metrics {
    /// [`render`]'s text.
    Text(String),
    /// The daemon refused (the CLI exits 2).
    Refused {
        message: String,
        kind: crate::proto::ErrorKind,
    },
}

/// `ipvlan metrics`: asks the daemon at `socket` for `link show` of every slave and renders
/// the answer in `format`. Errors: the daemon cannot be reached or answered garbage (the CLI
/// exits 1).
pub fn fetch(socket: &Path, format: Format) -> anyhow::Result<Metrics> {
    let request = Request::LinkShow(LinkShow { name: None });
    Ok(match client::call(socket, &request)? {
        Response::Ok { links, ports, .. } => Metrics::Text(render(&links, &ports, format)),
        Response::Error { message, kind } => Metrics::Refused { message, kind },
    })
}

/// Every metric's name starts with `ipvlan_`.
pub const PREFIX: &str = "ipvlan";

/// Which text exposition format [`render`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (counters' TYPE lines carry `_total`; no `# EOF`):
    /// what node_exporter's textfile collector parses.
    Prometheus,
    /// OpenMetrics 1.0 text (`# UNIT` lines, `# EOF` at the end).
    OpenMetrics,
}

impl Format {
    /// The HTTP `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a scraper asks for with its `Accept` header: OpenMetrics when it names
    /// `application/openmetrics-text` (as Prometheus does), else the 0.0.4 text format,
    /// which every scraper reads.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }
}

/// The metrics of a `link show` answer of every slave (`links`, `ports`), in `format`.
pub fn render(links: &[LinkView], ports: &[PortView], format: Format) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Snapshot {
        links: links.to_vec(),
        ports: ports.to_vec(),
    }));
    let mut out = String::new();
    let written = match format {
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing into a String cannot fail, and our collector returns only the writer's errors.
    debug_assert!(written.is_ok(), "encoding into a String failed");
    out
}

/// One `link show` answer, encoded at once (the daemon's state at the time it answered).
#[derive(Debug)]
struct Snapshot {
    links: Vec<LinkView>,
    ports: Vec<PortView>,
}

type Labels = Vec<(&'static str, String)>;

fn slave_labels(l: &LinkView) -> Labels {
    vec![
        ("master", l.master.clone()),
        ("slave", l.name.clone()),
        ("netns", l.netns.clone().unwrap_or_default()),
        ("mode", l.mode.to_string()),
        ("flag", l.flag.to_string()),
    ]
}

fn flag01(b: bool) -> u64 {
    u64::from(b)
}

/// Writes one family: its HELP and TYPE lines, then a sample per series.
fn family<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    ty: MetricType,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, ty)?;
    for (labels, v) in series {
        match ty {
            MetricType::Counter => m
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&v, None)?,
            MetricType::Info => m.encode_info(&labels)?,
            _ => m.encode_family(&labels)?.encode_gauge(&v)?,
        }
    }
    Ok(())
}

/// A counter family of every slave: `f` picks the value.
fn slave_counter(
    enc: &mut DescriptorEncoder,
    links: &[LinkView],
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    f: impl Fn(&LinkView) -> u64,
) -> fmt::Result {
    let series = links.iter().map(|l| (slave_labels(l), f(l)));
    family(enc, name, help, unit, MetricType::Counter, series)
}

/// A gauge family of every slave: `f` picks the value.
fn slave_gauge(
    enc: &mut DescriptorEncoder,
    links: &[LinkView],
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    f: impl Fn(&LinkView) -> u64,
) -> fmt::Result {
    let series = links.iter().map(|l| (slave_labels(l), f(l)));
    family(enc, name, help, unit, MetricType::Gauge, series)
}

const COUNTED_BY: &str = "Source: the data path's counters (the userspace workers' port \
                          state, or the eBPF programs' per-CPU maps summed), as ipvlan -s link \
                          show prints them";

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let links = &self.links;
        let bytes = Unit::Bytes;
        // A port's mode, flag and data path are its slaves' (all share them).
        let first_slave = |master: &str| links.iter().find(|l| l.master == master);

        family(
            &mut enc,
            "ports",
            "Ports the daemon serves: masters with at least one ipvlan-rs slave. Source: the \
             daemon's port table.",
            None,
            MetricType::Gauge,
            [(Labels::new(), self.ports.len() as u64)],
        )?;
        family(
            &mut enc,
            "port_slaves",
            "Slaves on the master's port. Source: the daemon's port table.",
            None,
            MetricType::Gauge,
            self.ports.iter().map(|p| {
                let n = links.iter().filter(|l| l.master == p.master).count();
                (vec![("master", p.master.clone())], n as u64)
            }),
        )?;
        family(
            &mut enc,
            "port",
            "One per port, value 1: its mode (l2, l3, l3s) and flag (bridge, private, vepa), \
             shared by all its slaves, and its data path (bpf-tcx or bpf-tc: eBPF programs in \
             the kernel; user: the daemon's userspace workers). Source: the daemon's port table.",
            None,
            MetricType::Info,
            self.ports.iter().filter_map(|p| {
                let l = first_slave(&p.master)?;
                Some((
                    vec![
                        ("master", p.master.clone()),
                        ("mode", l.mode.to_string()),
                        ("flag", l.flag.to_string()),
                        ("datapath", l.datapath.clone()),
                    ],
                    1,
                ))
            }),
        )?;
        family(
            &mut enc,
            "port_drops",
            &format!(
                "Frames the port dropped that no slave is charged with (a wire broadcast the \
                 full multicast backlog refused, a frame too long for the master's stack, ...), \
                 by reason; a reason appears once it has counted. Unit: frames. {COUNTED_BY}."
            ),
            None,
            MetricType::Counter,
            self.ports.iter().flat_map(|p| {
                p.drops.iter().map(|d| {
                    (
                        vec![("master", p.master.clone()), ("reason", d.reason.clone())],
                        d.count,
                    )
                })
            }),
        )?;

        let e = &mut enc;
        slave_counter(
            e,
            links,
            "slave_rx_packets",
            &format!(
                "Frames delivered to the slave (its receive side), multicast and broadcast \
                 copies included. Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.rx_packets,
        )?;
        slave_counter(
            e,
            links,
            "slave_rx",
            &format!(
                "Bytes of the frames delivered to the slave, Ethernet header included. Unit: \
                 bytes. {COUNTED_BY}."
            ),
            Some(&bytes),
            |l| l.stats.rx_bytes,
        )?;
        slave_counter(
            e,
            links,
            "slave_rx_multicast_packets",
            &format!(
                "Of the frames delivered to the slave, the multicast and broadcast copies the \
                 port's multicast engine made. Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.rx_multicast,
        )?;
        slave_counter(
            e,
            links,
            "slave_tx_packets",
            &format!(
                "Frames the slave sent that the port forwarded (to another slave, the wire or \
                 the master namespace's stack). Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.tx_packets,
        )?;
        slave_counter(
            e,
            links,
            "slave_tx",
            &format!(
                "Bytes of the frames the slave sent that the port forwarded, Ethernet header \
                 included. Unit: bytes. {COUNTED_BY}."
            ),
            Some(&bytes),
            |l| l.stats.tx_bytes,
        )?;
        slave_counter(
            e,
            links,
            "slave_tx_errors",
            &format!(
                "l3/l3s frames from the slave that the master namespace could not route or \
                 send. Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.tx_errors,
        )?;
        slave_counter(
            e,
            links,
            "slave_rx_dropped",
            &format!(
                "Frames for the slave that were dropped, every reason: the sum of \
                 ipvlan_slave_drops_total{{direction=\"rx\"}}. Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.rx_dropped,
        )?;
        slave_counter(
            e,
            links,
            "slave_tx_dropped",
            &format!(
                "Frames the slave sent that were dropped, every reason: the sum of \
                 ipvlan_slave_drops_total{{direction=\"tx\"}}. Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.tx_dropped,
        )?;
        family(
            e,
            "slave_drops",
            &format!(
                "Frames dropped, by direction (rx: meant for the slave; tx: sent by it) and \
                 reason (runt, private_unicast, l3_multicast, l3_not_ip, malformed_ip, \
                 mtu_exceeded, receiver_down, backlog_full, pause_frame, foreign_vlan, \
                 queue_full, host_not_ip, spoofed_source, router_message, rx_overflow, \
                 routing_loop); a reason appears once it has counted. Unit: frames. \
                 {COUNTED_BY}."
            ),
            None,
            MetricType::Counter,
            links.iter().flat_map(|l| {
                l.stats.drops.iter().map(move |d| {
                    let mut labels = slave_labels(l);
                    labels.push(("direction", d.direction.clone()));
                    labels.push(("reason", d.reason.clone()));
                    (labels, d.count)
                })
            }),
        )?;
        slave_counter(
            e,
            links,
            "slave_address_conflicts",
            "Address claims refused because another slave of the port already owned the \
             address (the kernel's ipvlan refuses them with EADDRINUSE). Unit: claims. Source: \
             the daemon's address learning.",
            None,
            |l| l.stats.address_conflicts,
        )?;
        slave_counter(
            e,
            links,
            "slave_rx_dhcp_steered_packets",
            &format!(
                "Of the frames delivered to the slave, the DHCPv4 replies steered to it by \
                 their transaction id (all slaves share the master's MAC; docs/dhcp.md). \
                 Unit: frames. {COUNTED_BY}."
            ),
            None,
            |l| l.stats.dhcp_steered,
        )?;
        slave_gauge(
            e,
            links,
            "slave_up",
            "1 if the slave is administratively up (IFF_UP), else 0. Source: the daemon's \
             port table.",
            None,
            |l| flag01(l.up),
        )?;
        slave_gauge(
            e,
            links,
            "slave_carrier",
            "1 if the slave has carrier (it follows the master's), else 0. Source: the \
             daemon's port table.",
            None,
            |l| flag01(l.carrier),
        )?;
        slave_gauge(
            e,
            links,
            "slave_addresses",
            "IPv4 and IPv6 addresses the slave owns on the port: what it is served for. \
             Source: the daemon's address learning.",
            None,
            |l| l.addresses.len() as u64,
        )?;
        slave_gauge(
            e,
            links,
            "slave_conflicting_addresses",
            "Addresses configured on the slave that another slave of the port owns: not \
             served to it. Source: the daemon's address learning.",
            None,
            |l| l.conflicts.len() as u64,
        )?;
        slave_gauge(
            e,
            links,
            "slave_mtu",
            "The slave's MTU. Unit: bytes. Source: the daemon's port table.",
            Some(&bytes),
            |l| u64::from(l.mtu),
        )?;
        family(
            e,
            "slave",
            "One per slave, value 1: its device's name now (ifname; differs from slave after \
             a rename), ifindex (in its namespace), dev_id, backend (veth or tap), data path \
             and source-address guard (spoofchk). Source: the daemon's port table.",
            None,
            MetricType::Info,
            links.iter().map(|l| {
                let mut labels = slave_labels(l);
                labels.extend([
                    ("ifname", l.current_name.clone()),
                    ("ifindex", l.ifindex.to_string()),
                    ("dev_id", l.id.to_string()),
                    ("backend", l.backend.clone()),
                    ("datapath", l.datapath.clone()),
                    ("spoofchk", if l.spoofchk { "on" } else { "off" }.to_owned()),
                ]);
                (labels, 1)
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
