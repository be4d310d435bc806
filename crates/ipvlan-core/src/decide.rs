//! The forwarding decisions (spec §4–§6) as pure functions: a frame and the port's state in, one
//! action out. [`Port::handle_tx`] and friends wrap them with the counter updates.

use std::net::IpAddr;

use crate::classify::{classify, Classified, L3};
use crate::counters::DropReason;
use crate::mode::{Flag, Mode};
use crate::multicast::McOrigin;
use crate::port::{Port, MTU_SLACK};
use crate::slave_id::SlaveId;
use crate::wire::ethernet::HEADER_LEN;
use crate::wire::MacAddr;

/// Facts about a frame a slave transmitted that are not in its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxMeta {
    /// A GSO super-frame (TAP vnet header): exempt from the MTU check (R-MTU-4).
    pub gso: bool,
    /// The transmitting slave, when known: its source-address guard applies.
    pub from: Option<SlaveId>,
    /// Now, in ns of the caller's monotonic clock: when a DHCP request is remembered
    /// (`crate::dhcp::XidTable`, by [`Port::handle_tx`]).
    pub now: u64,
}

/// Facts about a frame received on the master that are not in its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxMeta {
    /// The master's own transmission looped back locally (AF_PACKET `PACKET_LOOPBACK`).
    pub looped_back: bool,
    /// Now, in ns of the same clock as [`TxMeta::now`]: whether a DHCP transaction is still
    /// live (`crate::dhcp::XID_TTL_NS`).
    pub now: u64,
}

/// IP version of a packet handed to the master namespace's routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// Both families, IPv4 first.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    /// The family of `addr`.
    pub fn of(addr: std::net::IpAddr) -> IpFamily {
        match addr {
            std::net::IpAddr::V4(_) => IpFamily::V4,
            std::net::IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl core::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// Whose counters a drop is charged to (R-STAT-1, R-STAT-2, R-STAT-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropSite {
    /// The transmitting slave (`tx_dropped`).
    Sender,
    /// The slave it was meant for (`rx_dropped`).
    Receiver(SlaveId),
    /// The master.
    Master,
}

/// What to do with a frame a slave transmitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxAction {
    /// Unicast switched locally: write the frame unchanged to this slave (R-TX-L2-2, R-TX-L3-2).
    Deliver(SlaveId),
    /// Send the frame out of the master with `src_mac` (the master's) as source (R-TX-L2-1(3),
    /// R-TX-VEPA-1, R-MAC-4).
    Transmit {
        src_mac: MacAddr,
    },
    /// L2 local miss: inject into the master namespace's stack as if received on the master
    /// (R-TX-L2-3).
    ToHost,
    /// L3/L3S outbound: drop the Ethernet header and hand the IP packet at `l3_offset` to the
    /// master namespace's routing and local output (R-TX-L3-3).
    Route {
        family: IpFamily,
        l3_offset: usize,
    },
    /// L2 multicast/broadcast: queue to the multicast engine as slave-originated (R-TX-L2-1(2)).
    Multicast,
    Drop {
        reason: DropReason,
        site: DropSite,
    },
}

/// What to do with a frame received on the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxAction {
    /// Claimed: give it to this slave only; the master's stack must not see it (R-RX-L3-1).
    Deliver(SlaveId),
    /// L3S: let the master namespace's PREROUTING and INPUT see it, then deliver it to this slave
    /// (R-RX-L3S-1).
    DeliverViaHost(SlaveId),
    /// Not ipvlan's: the master's stack has it (R-RX-0).
    Pass,
    /// The master's stack has it, and a copy goes to the multicast engine as wire-originated
    /// (R-RX-L2-2).
    PassAndMulticast,
    /// Claimed and dropped.
    Drop { reason: DropReason },
    /// l2: a unicast DHCPv4 reply to an address no slave owns (yet), whose xid this slave's
    /// client sent (`crate::dhcp`): give it to this slave only. (Broadcast replies are not
    /// steered: every slave gets them, as from the kernel, R-RX-L2-2.)
    Steer(SlaveId),
}

/// One slave's share of a multicast frame (R-MC-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McCopy {
    Deliver(SlaveId),
    /// Too long for the receiver (slave-originated copies only, R-MTU-4).
    Drop(SlaveId, DropReason),
}

fn drop_tx(reason: DropReason, site: DropSite) -> TxAction {
    TxAction::Drop { reason, site }
}

/// Local unicast delivery to `to`, subject to R-MTU-4.
fn deliver_local(port: &Port, to: SlaveId, frame: &Classified, meta: TxMeta) -> TxAction {
    match port.slave(to) {
        Some(s) if s.fits(frame.len, meta.gso) => TxAction::Deliver(to),
        Some(_) => drop_tx(DropReason::MtuExceeded, DropSite::Receiver(to)),
        None => drop_tx(DropReason::ReceiverDown, DropSite::Receiver(to)),
    }
}

/// Decides a frame transmitted by slave `from` (spec §4). `from` is only used to charge
/// counters; the kernel delivers a slave's frame to itself when it targets its own address
/// (R-SPC-LOOP-2).
pub fn decide_tx(port: &Port, frame: &[u8], meta: TxMeta) -> TxAction {
    let Ok(frame) = classify(frame) else {
        return drop_tx(DropReason::Runt, DropSite::Sender); // R-TX-0
    };
    if let Some(from) = meta.from {
        if port.slave(from).is_some_and(|s| s.mac_guard()) && frame.src_mac != port.master().mac {
            // Judged before the identity rewrite (`crate::identity`), which would hide it.
            return drop_tx(DropReason::ForeignSourceMac, DropSite::Sender);
        }
    }
    if let Some(reason) = meta.from.and_then(|s| guard(port, s, &frame)) {
        return drop_tx(reason, DropSite::Sender);
    }
    if meta
        .from
        .and_then(|s| port.slave(s))
        .is_some_and(|s| s.is_host())
    {
        return decide_tx_host(port, &frame, meta);
    }
    if let Some(to) = host_target(port, &frame) {
        // `hostreach`: a slave to the master's own address, inside the port whatever the flag.
        return deliver_local(port, to, &frame, meta);
    }
    match port.mode() {
        Mode::L2 => decide_tx_l2(port, &frame, meta),
        Mode::L3 | Mode::L3s => decide_tx_l3(port, &frame, meta),
    }
}

/// The opt-in guard (`spoofchk on`); the kernel has none (R-TX-NOVALIDATE, R-SPC-SPOOF-1).
/// With it a slave can only speak for its own addresses:
/// - an IPv4/IPv6 packet or ARP frame must come from an address it owns (`spoofed_source`);
///   unspecified sources stay allowed (DAD, ARP probes, DHCP);
/// - a neighbour advertisement may only advertise an address it owns, and a duplicate-address
///   probe (a solicitation from `::`) may not ask about an address another slave owns
///   (`spoofed_source`): it can neither claim a neighbour's address nor make a neighbour
///   doubt it (probing an address nobody owns yet is how its own DAD starts);
/// - router advertisements and redirects are dropped (`router_message`) unless the slave is
///   allowed to be a router (`router on`).
///
/// Frames without an IP source are not judged, except a tagged frame whose payload the guard
/// cannot see (behind a second VLAN tag): that is dropped (`spoofed_source`). The L2
/// addresses inside ARP and NDP are made the master's for every slave, guard or not
/// (`crate::identity`).
fn guard(port: &Port, from: SlaveId, frame: &Classified) -> Option<DropReason> {
    let slave = port.slave(from).filter(|s| s.source_guard())?;
    let owns = |a: IpAddr| port.addresses(from).contains(&a);
    let foreign = |a: IpAddr| !a.is_unspecified() && !owns(a);
    let spoofed = Some(DropReason::SpoofedSource);
    match frame.l3 {
        L3::Arp { sender, .. } => foreign(sender.into()).then_some(DropReason::SpoofedSource),
        L3::Ipv4 { src, .. } => foreign(src.into()).then_some(DropReason::SpoofedSource),
        L3::Ipv6 { src, icmp, .. } => {
            if foreign(src.into()) {
                return spoofed;
            }
            let icmp = icmp?;
            match (icmp.kind, icmp.nd_target) {
                (ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT, _) if !slave.router() => {
                    Some(DropReason::RouterMessage)
                }
                (ICMPV6_NEIGHBOUR_ADVERT, Some(t)) if !owns(t.into()) => spoofed,
                (ICMPV6_NEIGHBOUR_SOLICIT, Some(t))
                    if src.is_unspecified()
                        && port.table().owner(t.into()).is_some_and(|o| o != from) =>
                {
                    spoofed
                }
                _ => None,
            }
        }
        L3::Other if frame.vlan.is_some() => spoofed,
        _ => None,
    }
}

/// `hostreach`: the host slave, when a slave's unicast frame is for an address it holds (the
/// master's own): in l2 only a frame sent to the shared MAC (what the master's stack would
/// accept), in l3/l3s any unicast frame (the MAC is not looked at, R-TX-L3-2).
fn host_target(port: &Port, frame: &Classified) -> Option<SlaveId> {
    if frame.dst_mac.is_multicast()
        || (port.mode() == Mode::L2 && frame.dst_mac != port.master().mac)
    {
        return None;
    }
    let to = frame.keys_tx().dst.and_then(|k| port.lookup(k))?;
    port.slave(to).is_some_and(|s| s.is_host()).then_some(to)
}

/// A frame the host slave (`hostreach on`) sent: the master's stack speaking to the slaves.
/// It reaches slaves only and never leaves through the master, whatever the flag (`private`
/// and `vepa` restrict slave-to-slave traffic; the host is not a slave): unicast goes to the
/// slave owning the destination (else it is dropped, reason `receiver_down`); in l2 its
/// multicast and broadcast go to the slaves ([`multicast_fanout`] does not send it out), in
/// l3/l3s they are dropped (`l3_multicast`) as a slave's are.
fn decide_tx_host(port: &Port, frame: &Classified, meta: TxMeta) -> TxAction {
    if frame.dst_mac.is_multicast() {
        return match port.mode() {
            Mode::L2 if frame.l3 == L3::Pause && frame.vlan.is_none() => {
                drop_tx(DropReason::PauseFrame, DropSite::Sender)
            }
            Mode::L2 => TxAction::Multicast,
            Mode::L3 | Mode::L3s => drop_tx(DropReason::L3Multicast, DropSite::Sender),
        };
    }
    match frame.keys_tx().dst.and_then(|k| port.lookup(k)) {
        Some(to) if Some(to) != meta.from => deliver_local(port, to, frame, meta),
        _ => drop_tx(DropReason::ReceiverDown, DropSite::Sender),
    }
}

/// ICMPv6 message types the guard judges (RFC 4861 §4).
const ICMPV6_ROUTER_ADVERT: u8 = 134;
const ICMPV6_NEIGHBOUR_SOLICIT: u8 = 135;
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;
const ICMPV6_REDIRECT: u8 = 137;

fn decide_tx_l2(port: &Port, frame: &Classified, meta: TxMeta) -> TxAction {
    let flag = port.flag();
    // R-TX-L2-1(1): addressed to itself (the shared MAC) → local candidate, unless vepa (R-TX-L2-4).
    if flag != Flag::Vepa && frame.dst_mac == frame.src_mac {
        return match frame.keys_tx().dst.and_then(|k| port.lookup(k)) {
            Some(_) if flag == Flag::Private => {
                drop_tx(DropReason::PrivateUnicast, DropSite::Sender) // R-TX-L2-2
            }
            Some(to) => deliver_local(port, to, frame, meta),
            // R-TX-L2-3: no slave owns it, so it is for the master's own stack.
            None if meta.gso || frame.len <= port.master().mtu as usize + MTU_SLACK => {
                TxAction::ToHost
            }
            None => drop_tx(DropReason::MtuExceeded, DropSite::Master),
        };
    }
    if frame.dst_mac.is_multicast() {
        // R-TX-L2-1(2); PAUSE frames are never queued (R-MC-1).
        return if frame.l3 == L3::Pause && frame.vlan.is_none() {
            drop_tx(DropReason::PauseFrame, DropSite::Sender)
        } else {
            TxAction::Multicast
        };
    }
    // R-TX-L2-1(3), R-TX-L2-5: out of the master, Ethernet header kept but for the source MAC.
    TxAction::Transmit {
        src_mac: port.master().mac,
    }
}

fn decide_tx_l3(port: &Port, frame: &Classified, meta: TxMeta) -> TxAction {
    let flag = port.flag();
    // R-TX-L3-2: local switching by destination key, unless vepa (R-TX-VEPA-1).
    if flag != Flag::Vepa {
        if let Some(to) = frame.keys_tx().dst.and_then(|k| port.lookup(k)) {
            return if flag == Flag::Private {
                drop_tx(DropReason::PrivateUnicast, DropSite::Sender)
            } else {
                deliver_local(port, to, frame, meta)
            };
        }
    }
    // R-TX-L3-3: outbound through the master namespace.
    if frame.dst_mac.is_multicast() {
        return drop_tx(DropReason::L3Multicast, DropSite::Sender);
    }
    if frame.vlan.is_some() {
        // The outer EtherType is a TPID: not IP (R-CLS-4).
        return drop_tx(DropReason::L3NotIp, DropSite::Sender);
    }
    match frame.l3 {
        L3::Ipv4 { .. } => TxAction::Route {
            family: IpFamily::V4,
            l3_offset: HEADER_LEN,
        },
        L3::Ipv6 { .. } => TxAction::Route {
            family: IpFamily::V6,
            l3_offset: HEADER_LEN,
        },
        L3::Malformed(crate::Malformed::Ipv4(_) | crate::Malformed::Ipv6(_)) => {
            drop_tx(DropReason::MalformedIp, DropSite::Sender)
        }
        _ => drop_tx(DropReason::L3NotIp, DropSite::Sender),
    }
}

/// Decides a frame received on the master (spec §6).
pub fn decide_rx(port: &Port, raw: &[u8], meta: RxMeta) -> RxAction {
    let Ok(frame) = classify(raw) else {
        return RxAction::Pass; // Not ours to judge: the master's stack drops runts itself.
    };
    match port.mode() {
        Mode::L2 => decide_rx_l2(port, &frame, raw, meta),
        Mode::L3 => decide_rx_l3(port, &frame),
        Mode::L3s => decide_rx_l3s(port, &frame),
    }
}

/// A VLAN id other than 0 (priority tags are ordinary frames to the stack).
fn foreign_vlan(frame: &Classified) -> bool {
    frame.vlan.is_some_and(|t| t.vid() != 0)
}

fn decide_rx_l2(port: &Port, frame: &Classified, raw: &[u8], meta: RxMeta) -> RxAction {
    if meta.looped_back {
        return RxAction::Pass; // R-RX-L2-1
    }
    if !frame.dst_mac.is_multicast() {
        return match decide_rx_l3(port, frame) {
            // R-RX-L2-3; an address no slave owns may be a DHCP offer for one.
            RxAction::Pass => {
                dhcp_reply_for(port, frame, raw, meta).map_or(RxAction::Pass, RxAction::Steer)
            }
            a => a,
        };
    }
    // R-RX-L2-2: the master always gets it; slaves get a copy unless it is their own traffic
    // reflected back (source MAC is the shared MAC and the source key is a slave's).
    let own_reflection = frame.src_mac == port.master().mac
        && frame
            .keys_rx()
            .src
            .and_then(|k| port.lookup_rx(k))
            .is_some();
    // A broadcast DHCP reply is not steered: every slave gets it, as from the kernel, so that
    // a slave that sends another slave's xid (it sees their broadcast DISCOVERs) cannot take
    // the reply from it. Steering only adds what the kernel loses: unicast replies.
    if own_reflection || frame.l3 == L3::Pause || foreign_vlan(frame) {
        RxAction::Pass
    } else {
        RxAction::PassAndMulticast
    }
}

/// The up slave whose client sent the xid of this DHCPv4 reply less than
/// [`crate::dhcp::XID_TTL_NS`] ago, if `frame` is one (`crate::dhcp::parse`: untagged only).
fn dhcp_reply_for(port: &Port, frame: &Classified, raw: &[u8], meta: RxMeta) -> Option<SlaveId> {
    if !matches!(frame.l3, L3::Ipv4 { protocol: 17, .. }) {
        return None; // the cheap test first: most frames stop here
    }
    let msg = crate::dhcp::parse(raw)?;
    if msg.direction != crate::dhcp::Direction::Reply {
        return None;
    }
    let to = port.dhcp_xids().lookup(msg.xid, meta.now)?;
    port.slave(to).filter(|s| s.is_up()).map(|s| s.id())
}

fn decide_rx_l3(port: &Port, frame: &Classified) -> RxAction {
    // R-RX-L3-1: claimed by destination key; the destination MAC is not checked. The host
    // slave's entries (the master's own addresses) are not: those frames stay the master's.
    match frame.keys_rx().dst.and_then(|k| port.lookup_rx(k)) {
        Some(_) if foreign_vlan(frame) => RxAction::Drop {
            reason: DropReason::ForeignVlan,
        },
        Some(to) => RxAction::Deliver(to),
        None => RxAction::Pass,
    }
}

fn decide_rx_l3s(port: &Port, frame: &Classified) -> RxAction {
    // R-RX-L3S-1: nothing is claimed at the hook; IP packets for a slave go through the master
    // namespace's input path first. ARP and everything else stay with the master (R-RX-L3S-3).
    if !frame.is_ip() || foreign_vlan(frame) {
        return RxAction::Pass;
    }
    match frame.keys_rx().dst.and_then(|k| port.lookup_rx(k)) {
        Some(to) => RxAction::DeliverViaHost(to),
        None => RxAction::Pass,
    }
}

/// Who gets a copy of one multicast frame taken from the backlog (R-MC-2): slaves in creation
/// order that are up, accept the destination MAC and are not the sender; copies of
/// slave-originated frames must fit the receiver's MTU (R-MTU-4). Returns whether the frame
/// then leaves on the master (slave-originated frames do, once). `hostreach`: the host slave
/// gets the slaves' frames but not the wire's (the master's stack has those already), and its
/// own frames go to the slaves only.
pub fn multicast_fanout(
    port: &Port,
    origin: McOrigin,
    frame: &[u8],
    gso: bool,
    out: &mut Vec<McCopy>,
) -> bool {
    out.clear();
    if frame.len() < HEADER_LEN {
        return false;
    }
    let dst = MacAddr(crate::wire::array(frame, 0));
    let sender = match origin {
        McOrigin::Slave(s) => Some(s),
        McOrigin::Wire => None,
    };
    let host_sender = sender
        .and_then(|s| port.slave(s))
        .is_some_and(|s| s.is_host());
    for s in port.slaves() {
        if Some(s.id()) == sender
            || (sender.is_none() && s.is_host())
            || !s.mc_filter.accepts(dst)
            || !s.is_up()
        {
            continue;
        }
        if sender.is_some() && !s.fits(frame.len(), gso) {
            out.push(McCopy::Drop(s.id(), DropReason::MtuExceeded));
        } else {
            out.push(McCopy::Deliver(s.id()));
        }
    }
    sender.is_some() && !host_sender
}

#[cfg(test)]
mod tests;
