//! What one run of each program costs on this kernel, per kind of frame: `BPF_PROG_TEST_RUN`
//! with `repeat`, the kernel's own average (the program alone, not the redirect it asks for).
//! A benchmark, printed, never asserted. Root; loads a port on a bpffs of its own (mounted in a
//! temporary directory) and removes both again.
//!
//!   cargo run --release -p ipvlan-bpf --example cost [REPEAT]
use std::net::{IpAddr, Ipv4Addr};

use ipvlan_bpf::{Hook, PortConfig, PortProgram, RouteMethod, SlaveEntry};
use ipvlan_core::frames::{arp_request, ipv4_frame, ipv6_frame, v6};
use ipvlan_core::{Flag, MacAddr, Mode};

const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const MASTER: u32 = 900_000;
const HOST: u32 = 900_100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeat: u32 = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let root = std::env::temp_dir().join(format!("ipvlan-cost-{}-bpffs", std::process::id()));
    ipvlan_bpf::ensure_bpffs(&root)?;
    let dir = root.join("port");
    let result = PortProgram::load(&dir)
        .map_err(Into::into)
        .and_then(|mut prog| {
            let r = run(&mut prog, repeat);
            prog.remove(&dir)?;
            r
        });
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&root)
        .status();
    let _ = std::fs::remove_dir(&root);
    result
}

fn run(prog: &mut PortProgram, repeat: u32) -> Result<(), Box<dyn std::error::Error>> {
    let (a1, a2) = (Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(192, 0, 2, 12));
    let ext = Ipv4Addr::new(192, 0, 2, 254);
    for mode in [Mode::L2, Mode::L3] {
        prog.set_config(&PortConfig {
            master_ifindex: MASTER,
            master_mac: MAC.0,
            master_mtu: 1500,
            mode,
            flag: Flag::Bridge,
            route_v4: RouteMethod::Stack,
            route_v6: RouteMethod::Stack,
        })?;
        for id in 1..=2u16 {
            prog.set_slave(
                id,
                &SlaveEntry {
                    host_ifindex: HOST + u32::from(id),
                    mtu: 1500,
                    up: true,
                    source_guard: false,
                    router: false,
                    same_ns: false,
                    host: false,
                    mac_guard: false,
                },
            )?;
        }
        prog.add_address(IpAddr::V4(a1), 1)?;
        prog.add_address(IpAddr::V4(a2), 2)?;
        prog.add_address(IpAddr::V6(v6("2001:db8:1::11")), 1)?;
        prog.add_address(IpAddr::V6(v6("2001:db8:1::12")), 2)?;
        let cases: [(&str, Hook, Vec<u8>); 5] = [
            (
                "slave→slave IPv4",
                Hook::FromSlave,
                ipv4_frame(MAC, MAC, a1, a2),
            ),
            (
                "slave→slave IPv6",
                Hook::FromSlave,
                ipv6_frame(MAC, MAC, v6("2001:db8:1::11"), v6("2001:db8:1::12")),
            ),
            (
                "slave→wire IPv4",
                Hook::FromSlave,
                ipv4_frame(MacAddr([2, 0, 0, 0, 0, 0xfe]), MAC, a1, ext),
            ),
            (
                "wire→slave IPv4",
                Hook::FromMaster,
                ipv4_frame(MAC, MacAddr([2, 0, 0, 0, 0, 0xfe]), ext, a2),
            ),
            (
                "slave ARP broadcast",
                Hook::FromSlave,
                arp_request(MAC, a1, a2),
            ),
        ];
        for (what, hook, frame) in cases {
            let ns = prog.time_run(hook, &frame, HOST + 1, repeat)?;
            println!("{mode:>3} {what:<22} {ns:>5} ns");
        }
    }
    Ok(())
}
