//! The decision matrix of the HOWTO example (ipvl0 = 192.0.2.11 in ns0, ipvl1 = 192.0.2.12 in
//! ns1, external host 192.0.2.254, master 192.0.2.1), computed by ipvlan-core.

use std::fmt::Write;

use ipvlan_core::frames::{arp_request, ipv4_frame, ipv4_multicast, v4, EXT_MAC, MASTER_MAC};
use ipvlan_core::{
    Flag, IfName, LinkTypeArgs, Master, McCopy, McOrigin, Mode, NewSlave, Port, PortError,
    RxAction, RxMeta, SlaveId, TxAction, TxMeta,
};

enum Origin {
    /// Sent by ipvl0.
    Ipvl0,
    /// Arriving on the master from the external host.
    Wire,
}

struct Scenario {
    what: &'static str,
    origin: Origin,
    frame: fn(Mode) -> Vec<u8>,
}

/// The MAC a slave's own stack puts on unicast to `ip`: resolved by ARP in l2, the shared MAC
/// in l3/l3s (NOARP, R-SPC-ARP-3).
fn next_hop_mac(mode: Mode, external: bool) -> ipvlan_core::MacAddr {
    if mode == Mode::L2 && external {
        EXT_MAC
    } else {
        MASTER_MAC
    }
}

const SCENARIOS: [Scenario; 8] = [
    Scenario {
        what: "ns0 ping ns1 (192.0.2.12)",
        origin: Origin::Ipvl0,
        frame: |m| {
            ipv4_frame(
                next_hop_mac(m, false),
                MASTER_MAC,
                v4(192, 0, 2, 11),
                v4(192, 0, 2, 12),
            )
        },
    },
    Scenario {
        what: "ns0 ARP who-has 192.0.2.12",
        origin: Origin::Ipvl0,
        frame: |_| arp_request(MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 12)),
    },
    Scenario {
        what: "ns0 broadcast 192.0.2.255",
        origin: Origin::Ipvl0,
        frame: |_| ipv4_multicast(MASTER_MAC, v4(192, 0, 2, 11), v4(192, 0, 2, 255)),
    },
    Scenario {
        what: "ns0 ping external .254",
        origin: Origin::Ipvl0,
        frame: |m| {
            ipv4_frame(
                next_hop_mac(m, true),
                MASTER_MAC,
                v4(192, 0, 2, 11),
                v4(192, 0, 2, 254),
            )
        },
    },
    Scenario {
        what: "ns0 ping master .1",
        origin: Origin::Ipvl0,
        frame: |m| {
            ipv4_frame(
                next_hop_mac(m, false),
                MASTER_MAC,
                v4(192, 0, 2, 11),
                v4(192, 0, 2, 1),
            )
        },
    },
    Scenario {
        what: "external ping ns0",
        origin: Origin::Wire,
        frame: |_| ipv4_frame(MASTER_MAC, EXT_MAC, v4(192, 0, 2, 254), v4(192, 0, 2, 11)),
    },
    Scenario {
        what: "external ARP who-has .11",
        origin: Origin::Wire,
        frame: |_| arp_request(EXT_MAC, v4(192, 0, 2, 254), v4(192, 0, 2, 11)),
    },
    Scenario {
        what: "external broadcast .255",
        origin: Origin::Wire,
        frame: |_| ipv4_multicast(EXT_MAC, v4(192, 0, 2, 254), v4(192, 0, 2, 255)),
    },
];

fn howto_port(mode: Mode, flag: Flag) -> Result<(Port, SlaveId), PortError> {
    let mut port = Port::new(Master {
        name: IfName::new("eth0")?,
        mac: MASTER_MAC,
        mtu: 1500,
    });
    let mut first = None;
    for (name, addr) in [("ipvl0", [192, 0, 2, 11]), ("ipvl1", [192, 0, 2, 12])] {
        let args = LinkTypeArgs {
            mode: Some(mode),
            flag: Some(flag),
        };
        let id = port.add_slave(NewSlave::new(IfName::new(name)?, args))?.id;
        port.set_slave_up(id, true)?;
        port.add_address(id, addr.into())?;
        first.get_or_insert(id);
    }
    Ok((port, first.unwrap_or(SlaveId::from_raw(1))))
}

fn name(port: &Port, id: SlaveId) -> String {
    port.slave(id)
        .map_or_else(|| id.to_string(), |s| s.name().to_string())
}

fn fanout(port: &mut Port, origin: McOrigin, frame: &[u8]) -> String {
    let mut copies = Vec::new();
    let out = port.handle_multicast(origin, frame, false, &mut copies);
    let mut to: Vec<String> = copies
        .iter()
        .map(|c| match *c {
            McCopy::Deliver(s) => name(port, s),
            McCopy::Drop(s, r) => format!("{}:{r}", name(port, s)),
        })
        .collect();
    if out {
        to.push("wire".into());
    }
    to.join("+")
}

fn outcome(port: &mut Port, ipvl0: SlaveId, s: &Scenario, mode: Mode) -> String {
    let frame = (s.frame)(mode);
    match s.origin {
        Origin::Ipvl0 => match port.handle_tx(ipvl0, &frame, TxMeta::default()) {
            TxAction::Deliver(to) => name(port, to),
            TxAction::Transmit { .. } => "wire".into(),
            TxAction::ToHost => "host".into(),
            TxAction::Route { .. } => "host-route".into(),
            TxAction::Multicast => fanout(port, McOrigin::Slave(ipvl0), &frame),
            TxAction::Drop { reason, .. } => format!("drop:{reason}"),
        },
        Origin::Wire => match port.handle_rx(&frame, RxMeta::default()) {
            RxAction::Deliver(to) => name(port, to),
            RxAction::DeliverViaHost(to) => format!("host-fw>{}", name(port, to)),
            RxAction::Pass => "host".into(),
            RxAction::PassAndMulticast => format!("host+{}", fanout(port, McOrigin::Wire, &frame)),
            RxAction::Drop { reason } => format!("drop:{reason}"),
            RxAction::Steer(to) => format!("dhcp>{}", name(port, to)),
        },
    }
}

/// The matrix as a markdown table.
pub fn render() -> Result<String, PortError> {
    let combos: Vec<(Mode, Flag)> = Mode::ALL
        .into_iter()
        .flat_map(|m| Flag::ALL.into_iter().map(move |f| (m, f)))
        .collect();
    let mut cells: Vec<Vec<String>> = Vec::new();
    for &(mode, flag) in &combos {
        let (mut port, ipvl0) = howto_port(mode, flag)?;
        cells.push(
            SCENARIOS
                .iter()
                .map(|s| outcome(&mut port, ipvl0, s, mode))
                .collect(),
        );
    }
    let mut t = String::new();
    let _ = writeln!(
        t,
        "What ipvlan-core decides for the HOWTO example (ipvl0 192.0.2.11, ipvl1 192.0.2.12 on eth0 192.0.2.1;\n\
         external host 192.0.2.254). wire = out of the master; host = the master namespace's stack;\n\
         host-route = routed there (l3/l3s); host-fw>X = through the master's firewall, then X.\n"
    );
    let _ = write!(t, "| frame |");
    for (m, f) in &combos {
        let _ = write!(t, " {m} {f} |");
    }
    let _ = write!(t, "\n|---|");
    for _ in &combos {
        let _ = write!(t, "---|");
    }
    t.push('\n');
    for (row, s) in SCENARIOS.iter().enumerate() {
        let _ = write!(t, "| {} |", s.what);
        for col in &cells {
            let _ = write!(t, " {} |", col[row]);
        }
        t.push('\n');
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shows_each_flag_doing_its_job() {
        let t = render().unwrap();
        let row = |prefix: &str| {
            t.lines()
                .find(|l| l.starts_with(&format!("| {prefix}")))
                .unwrap()
                .split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .skip(1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        // Columns: l2 bridge, l2 private, l2 vepa, l3 ..., l3s ...
        let ping = row("ns0 ping ns1");
        assert_eq!(ping[0], "ipvl1");
        assert_eq!(ping[1], "drop:private_unicast");
        assert_eq!(ping[2], "wire");
        assert_eq!(ping[3], "ipvl1");
        assert_eq!(ping[5], "host-route");
        let bcast = row("ns0 broadcast");
        assert_eq!(bcast[1], "ipvl1+wire", "private does not block broadcast");
        assert_eq!(bcast[4], "drop:l3_multicast");
        let ext = row("external broadcast");
        assert_eq!(ext[0], "host+ipvl0+ipvl1");
        assert_eq!(ext[3], "host");
        assert_eq!(row("external ping ns0")[6], "host-fw>ipvl0");
    }
}
