//! Every decision function, on every mode × flag, must accept any bytes without panicking, and the
//! flag invariants must hold (private/vepa never switch unicast locally).
#![no_main]

use ipvlan_core::frames::MASTER_MAC;
use ipvlan_core::{
    decide_rx, decide_tx, multicast_fanout, Flag, IfName, LinkTypeArgs, Master, McOrigin, Mode,
    NewSlave, Port, RxMeta, TxAction, TxMeta,
};
use libfuzzer_sys::fuzz_target;

fn port(mode: Mode, flag: Flag) -> Option<Port> {
    let mut p = Port::new(Master {
        name: IfName::new("m0").ok()?,
        mac: MASTER_MAC,
        mtu: 1500,
    });
    for n in 0..3u8 {
        let args = LinkTypeArgs {
            mode: Some(mode),
            flag: Some(flag),
        };
        let id = p
            .add_slave(NewSlave::new(IfName::new(&format!("s{n}")).ok()?, args))
            .ok()?
            .id;
        p.set_slave_up(id, n != 2).ok()?;
        p.set_source_guard(id, n == 0).ok()?;
        p.add_address(id, [192, 0, 2, 10 + n].into()).ok()?;
        p.add_address(
            id,
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10 + u16::from(n)].into(),
        )
        .ok()?;
    }
    Some(p)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let mode = Mode::ALL[usize::from(selector % 3)];
    let flag = Flag::ALL[usize::from((selector / 3) % 3)];
    let Some(p) = port(mode, flag) else { return };
    let tx = decide_tx(
        &p,
        frame,
        TxMeta {
            gso: selector & 0x80 != 0,
            from: p.slaves().next().map(|s| s.id()),
            now: 0,
        },
    );
    if flag != Flag::Bridge {
        assert!(!matches!(tx, TxAction::Deliver(_)));
    }
    let _ = decide_rx(
        &p,
        frame,
        RxMeta {
            looped_back: selector & 0x40 != 0,
            now: 0,
        },
    );
    let _ = ipvlan_core::dhcp::parse(frame).map(|m| (m.client_id(), m.message_type()));
    let mut out = Vec::new();
    if let Some(s) = p.slaves().next().map(|s| s.id()) {
        multicast_fanout(&p, McOrigin::Slave(s), frame, false, &mut out);
    }
    multicast_fanout(&p, McOrigin::Wire, frame, false, &mut out);
});
