//! Policy routing through rtnetlink: the `fwmark` rule and the `local default` route that l3s
//! needs (see [`crate::netfilter`]), as requests on our own [`Rtnl`] socket instead of `ip rule`
//! and `ip route` processes.
//!
//! Each method acts in the namespace the socket was opened in and returns the kernel's error as
//! an `io::Error` (`raw_os_error()` is the errno).

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::rtnl::Rtnl;

/// An IP address family, for the requests that exist once per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    /// Both families, IPv4 first.
    pub const ALL: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> IpFamily {
        match addr {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    fn netlink(self) -> AddressFamily {
        match self {
            IpFamily::V4 => AddressFamily::Inet,
            IpFamily::V6 => AddressFamily::Inet6,
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// A `fwmark MARK lookup TABLE` rule message (tables above 255 go in `FRA_TABLE`).
fn fwmark_rule(family: IpFamily, mark: u32, table: u32) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = family.netlink();
    msg.header.table = table_in_header(table);
    msg.header.action = RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::FwMark(mark));
    msg.attributes.push(RuleAttribute::Table(table));
    msg
}

/// The 8-bit header field: the id itself up to 255, else `RT_TABLE_UNSPEC` (the id is then in
/// the `*_TABLE` attribute), as iproute2 does.
fn table_in_header(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC)
}

/// The routing table a dumped route belongs to (`RTA_TABLE` if present, else the header).
fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

impl Rtnl {
    /// `ip rule add fwmark MARK lookup TABLE pref PREF` for one family. Fails with `EEXIST` only if
    /// an identical rule exists (the kernel checks with `NLM_F_EXCL`).
    pub fn add_fwmark_rule(
        &mut self,
        family: IpFamily,
        mark: u32,
        table: u32,
        pref: u32,
    ) -> io::Result<()> {
        let mut msg = fwmark_rule(family, mark, table);
        msg.attributes.push(RuleAttribute::Priority(pref));
        self.request(
            RouteNetlinkMessage::NewRule(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// `ip rule del fwmark MARK lookup TABLE` for one family, whatever its preference. Returns
    /// `false` if there was no such rule (`ENOENT`), which is not an error.
    pub fn del_fwmark_rule(&mut self, family: IpFamily, mark: u32, table: u32) -> io::Result<bool> {
        let msg = fwmark_rule(family, mark, table);
        match self.request(RouteNetlinkMessage::DelRule(msg), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip route replace local default dev <oif> table TABLE` for one family (`0.0.0.0/0` or
    /// `::/0`): every destination is local when looked up in `table`. The kernel refuses it
    /// (`ENETDOWN`) while `oif` (normally the loopback device) is down.
    pub fn replace_local_default_route(
        &mut self,
        family: IpFamily,
        table: u32,
        oif: u32,
    ) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.netlink();
        msg.header.destination_prefix_length = 0;
        msg.header.table = table_in_header(table);
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Host;
        msg.header.kind = RouteType::Local;
        msg.attributes.push(RouteAttribute::Table(table));
        msg.attributes.push(RouteAttribute::Oif(oif));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// The routes of one family in routing table `table`, as dumped by the kernel.
    pub fn routes_in_table(
        &mut self,
        family: IpFamily,
        table: u32,
    ) -> io::Result<Vec<RouteMessage>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.netlink();
        Ok(self
            .request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) if route_table(&r) == table => Some(r),
                _ => None,
            })
            .collect())
    }

    /// `ip route flush table TABLE` for one family: deletes every route in it and returns how
    /// many there were. A route that vanished in between (`ESRCH`) is not an error.
    pub fn flush_route_table(&mut self, family: IpFamily, table: u32) -> io::Result<usize> {
        let routes = self.routes_in_table(family, table)?;
        let count = routes.len();
        for mut route in routes {
            // Ids above 255 fit only the attribute: make sure the request names the table.
            if !route
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Table(_)))
            {
                route.attributes.push(RouteAttribute::Table(table));
            }
            match self.request(RouteNetlinkMessage::DelRoute(route), NLM_F_ACK) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_table_ids_go_in_the_attribute() {
        assert_eq!(table_in_header(254), 254);
        assert_eq!(table_in_header(0x1e5b_0003), RouteHeader::RT_TABLE_UNSPEC);
        let msg = fwmark_rule(IpFamily::V6, 7, 0x1e5b_0003);
        assert!(msg.attributes.contains(&RuleAttribute::Table(0x1e5b_0003)));
        assert!(msg.attributes.contains(&RuleAttribute::FwMark(7)));
        assert_eq!(msg.header.family, AddressFamily::Inet6);
        assert_eq!(msg.header.action, RuleAction::ToTable);
    }

    #[test]
    fn family_of_an_address() {
        assert_eq!(
            IpFamily::of(&"2001:db8::1".parse().expect("literal")),
            IpFamily::V6
        );
    }
}
