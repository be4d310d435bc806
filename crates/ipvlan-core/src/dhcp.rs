//! DHCPv4 on a shared MAC (issue 19): every slave's DHCP client sends the master's MAC as its
//! hardware address (`chaddr`), so a server's reply cannot be told apart by MAC, and a reply
//! unicast to the offered address (`yiaddr`) cannot be told apart by IP before the slave owns
//! it. The transaction id (`xid`, RFC 2131 §2, §4.1) a client puts in its request and finds
//! again in the server's reply can: [`XidTable`] remembers which slave sent which xid, and
//! `decide_rx` steers a *unicast* BOOTREPLY with a known xid to that slave (`RxAction::Steer`).
//! Broadcast replies are not steered: every slave gets them, as from the kernel (R-RX-L2-2),
//! so a slave that repeats another's xid (it sees their broadcast DISCOVERs) cannot take a
//! reply from it that the kernel would have delivered.
//!
//! [`ClientIdWatch`] notices clients that would still share one lease: servers key leases by
//! the client identifier (option 61, RFC 2132 §9.14) when present, else by `chaddr` — the same
//! for every slave.
//!
//! Everything here is pure: times are passed in (nanoseconds of any monotonic clock), nothing
//! is read from a clock. The eBPF programs (`crates/ipvlan-bpf/bpf/ipvlan.bpf.c`, map
//! `dhcp_xids`) implement the same parse and table.

use std::collections::HashMap;

use crate::slave_id::SlaveId;

/// UDP port of DHCP servers (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;
/// BOOTP fixed header (236 bytes, RFC 2131 §2) plus the magic cookie (4 bytes): a message
/// shorter than this is not steered.
pub const FIXED_LEN: usize = 236 + 4;
/// How long an xid steers replies after the last request that carried it: 60 s, in ns.
pub const XID_TTL_NS: u64 = 60_000_000_000;
/// Entries the table keeps at most (`DHCP_XID_MAX` in the C source); the oldest go first.
pub const XID_MAX: usize = 1024;

/// Which way a DHCP message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// BOOTREQUEST (op 1), UDP 68 → 67: DISCOVER, REQUEST, INFORM, RELEASE, DECLINE.
    Request,
    /// BOOTREPLY (op 2), UDP 67 → 68: OFFER, ACK, NAK.
    Reply,
}

/// A DHCPv4 message found in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub direction: Direction,
    /// The transaction id, as the 32-bit big-endian number on the wire.
    pub xid: u32,
    /// The options after the magic cookie, up to the IP packet's end (may be empty).
    pub options: &'a [u8],
}

/// Finds a DHCPv4 message in an untagged Ethernet frame: IPv4 (version 4, header length at
/// least 20, total length within the bytes present and not below the header), UDP, not a
/// non-first fragment (offset 0), 68 → 67 with op 1 or 67 → 68 with op 2, and at least
/// [`FIXED_LEN`] bytes of UDP payload inside the IP total length. The magic cookie is not
/// checked (plain BOOTP is steered alike). `None` for anything else; never panics.
pub fn parse(frame: &[u8]) -> Option<Message<'_>> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let first = *ip.first()?;
    let hl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || hl < 20 || ip.len() < 20 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total > ip.len() || total < hl || ip[9] != 17 {
        return None;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 || hl + 8 + FIXED_LEN > total {
        return None;
    }
    let udp = &ip[hl..total];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let op = udp[8];
    let direction = match (sport, dport, op) {
        (CLIENT_PORT, SERVER_PORT, 1) => Direction::Request,
        (SERVER_PORT, CLIENT_PORT, 2) => Direction::Reply,
        _ => return None,
    };
    Some(Message {
        direction,
        xid: u32::from_be_bytes([udp[12], udp[13], udp[14], udp[15]]),
        options: &udp[8 + FIXED_LEN..],
    })
}

/// DHCP message types (option 53, RFC 2132 §9.6) that ask a server for a lease.
pub const DISCOVER: u8 = 1;
pub const REQUEST: u8 = 3;

impl<'a> Message<'a> {
    /// The value of option `code` (RFC 2132 §2: pad 0 and end 255 have no length), the first
    /// time it occurs; `None` when absent or cut off. Options in `file`/`sname` (overload,
    /// option 52) are not searched.
    pub fn option(&self, code: u8) -> Option<&'a [u8]> {
        match find_option(self.options, code) {
            Found::Value(v) => Some(v),
            Found::Absent | Found::CutOff => None,
        }
    }

    /// The message type (option 53).
    pub fn message_type(&self) -> Option<u8> {
        self.option(53).and_then(|v| v.first().copied())
    }

    /// The client identifier (option 61).
    pub fn client_id(&self) -> Option<&'a [u8]> {
        self.option(61)
    }
}

/// What [`find_option`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Value(&'a [u8]),
    /// The end option (255), or the exact end of the bytes, came first.
    Absent,
    /// The bytes end inside an option: what follows is unknown.
    CutOff,
}

/// Searches DHCP options (RFC 2132 §2: pad 0 and end 255 are single bytes, every other
/// option is code, length, value) for the first `code`.
pub fn find_option(o: &[u8], code: u8) -> Found<'_> {
    let mut i = 0;
    while i < o.len() {
        match o[i] {
            0 => i += 1,
            255 => return Found::Absent,
            c => {
                let Some(&len) = o.get(i + 1) else {
                    return Found::CutOff;
                };
                let Some(value) = o.get(i + 2..i + 2 + usize::from(len)) else {
                    return Found::CutOff;
                };
                if c == code {
                    return Found::Value(value);
                }
                i += 2 + usize::from(len);
            }
        }
    }
    Found::Absent
}

/// One remembered transaction: who sent it, and when last (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XidEntry {
    pub slave: SlaveId,
    pub at: u64,
}

/// What [`XidTable::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new entry, or the same slave's entry refreshed, or an expired one replaced.
    Fresh,
    /// Another slave's live entry for the same xid was overwritten (the newest writer wins).
    Taken { from: SlaveId },
}

/// xid → slave, bounded to [`XID_MAX`] entries, each live for [`XID_TTL_NS`] after the last
/// request carrying it.
#[derive(Debug, Clone, Default)]
pub struct XidTable {
    entries: HashMap<u32, XidEntry>,
}

impl XidTable {
    /// Remembers that `slave` sent a request with `xid` at `now`. When the table is full, the
    /// expired entries go, then the oldest.
    pub fn record(&mut self, xid: u32, slave: SlaveId, now: u64) -> Recorded {
        let prev = self.entries.get(&xid).copied();
        if prev.is_none() && self.entries.len() >= XID_MAX {
            self.entries.retain(|_, e| live(e, now));
            if self.entries.len() >= XID_MAX {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.at)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(xid, XidEntry { slave, at: now });
        match prev {
            Some(p) if p.slave != slave && live(&p, now) => Recorded::Taken { from: p.slave },
            _ => Recorded::Fresh,
        }
    }

    /// The slave a reply with `xid` is for, if a request with it was seen less than
    /// [`XID_TTL_NS`] before `now`.
    pub fn lookup(&self, xid: u32, now: u64) -> Option<SlaveId> {
        self.entries
            .get(&xid)
            .filter(|e| live(e, now))
            .map(|e| e.slave)
    }

    /// Forgets every transaction of `slave` (it is gone; its id may be reused).
    pub fn forget_slave(&mut self, slave: SlaveId) {
        self.entries.retain(|_, e| e.slave != slave);
    }

    /// Entries held, live or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn live(e: &XidEntry, now: u64) -> bool {
    now.saturating_sub(e.at) < XID_TTL_NS
}

/// A DHCP client of a slave that would share its lease with other slaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdProblem {
    /// DISCOVER/REQUEST without option 61: the server keys the lease by `chaddr`, which is the
    /// master's MAC for every slave.
    Missing,
    /// The same option 61 as `other`'s request less than [`CLIENT_ID_RECENT_NS`] ago.
    SameAs { other: SlaveId },
}

/// How long a slave's client identifier counts as "recent" for [`ClientIdProblem::SameAs`]:
/// 10 minutes, in ns.
pub const CLIENT_ID_RECENT_NS: u64 = 600_000_000_000;
/// At most one warning per slave this often: 10 minutes, in ns.
pub const WARN_EVERY_NS: u64 = 600_000_000_000;

/// Watches the client identifiers of the slaves' DHCP requests and says, at most once per
/// [`WARN_EVERY_NS`] per slave, when a slave's client would share a lease.
#[derive(Debug, Clone, Default)]
pub struct ClientIdWatch {
    /// Each slave's last DISCOVER/REQUEST client id (`None`: it sent none) and when.
    last: HashMap<SlaveId, (Option<Vec<u8>>, u64)>,
    /// When each slave was last warned about.
    warned: HashMap<SlaveId, u64>,
}

impl ClientIdWatch {
    /// Notes a request of `slave` at `now`. Only DISCOVER and REQUEST count (RELEASE, INFORM,
    /// DECLINE do not get a lease). Returns the problem to warn about, if one is found and the
    /// slave was not warned about within [`WARN_EVERY_NS`].
    pub fn check(
        &mut self,
        slave: SlaveId,
        msg: &Message<'_>,
        now: u64,
    ) -> Option<ClientIdProblem> {
        if msg.direction != Direction::Request {
            return None;
        }
        self.check_options(slave, msg.options, false, now)
    }

    /// [`Self::check`] on the options of a request alone (what the eBPF programs copy for the
    /// daemon, map `dhcp_reqs`): `truncated` says more options followed than `options` holds,
    /// so a client id not found in them is not known to be missing (nothing is said then).
    pub fn check_options(
        &mut self,
        slave: SlaveId,
        options: &[u8],
        truncated: bool,
        now: u64,
    ) -> Option<ClientIdProblem> {
        let Found::Value(&[kind, ..]) = find_option(options, 53) else {
            return None;
        };
        if !matches!(kind, DISCOVER | REQUEST) {
            return None;
        }
        let cid = match find_option(options, 61) {
            Found::Value(v) => Some(v),
            Found::Absent if !truncated => None,
            Found::Absent | Found::CutOff => return None,
        };
        let problem = match cid {
            None => Some(ClientIdProblem::Missing),
            Some(c) => self
                .last
                .iter()
                .find(|(s, (other, at))| {
                    **s != slave
                        && other.as_deref() == Some(c)
                        && now.saturating_sub(*at) < CLIENT_ID_RECENT_NS
                })
                .map(|(s, _)| ClientIdProblem::SameAs { other: *s }),
        };
        self.last.insert(slave, (cid.map(<[u8]>::to_vec), now));
        let problem = problem?;
        if let Some(&at) = self.warned.get(&slave) {
            if now.saturating_sub(at) < WARN_EVERY_NS {
                return None;
            }
        }
        self.warned.insert(slave, now);
        Some(problem)
    }

    /// Forgets `slave` (it is gone).
    pub fn forget_slave(&mut self, slave: SlaveId) {
        self.last.remove(&slave);
        self.warned.remove(&slave);
    }
}

#[cfg(test)]
mod tests;
