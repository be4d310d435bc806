//! Routes and policy-routing rules (`RTM_{NEW,DEL,GET}ROUTE`, `RTM_{NEW,DEL}RULE`), as
//! `ip route` and `ip rule` send them. The messages are built by pure functions (unit-tested
//! below); the [`Rtnl`] methods send them.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::{address_family, family_of, IpFamily, Rtnl, RtnlError, RtnlOp};

/// The main routing table (`RT_TABLE_MAIN`, `<linux/rtnetlink.h>`).
pub const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The header's 8-bit table field: the table itself if it fits, else `RT_TABLE_UNSPEC` (the
/// `RTA_TABLE`/`FRA_TABLE` attribute, always sent, carries the full 32 bits).
fn header_table(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC)
}

/// The table a dumped route belongs to: `RTA_TABLE` if present, else the header's field.
fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// `ip rule add fwmark MARK table TABLE pref PREF` (with `pref: Some`) or the selector of
/// `ip rule del fwmark MARK table TABLE` (with `None`). The kernel matches the mark under the
/// full mask (`0xffffffff`) when none is given.
pub(crate) fn fwmark_rule(
    family: IpFamily,
    mark: u32,
    table: u32,
    pref: Option<u32>,
) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = address_family(family);
    msg.header.table = header_table(table);
    msg.header.action = RuleAction::ToTable;
    msg.attributes.push(RuleAttribute::FwMark(mark));
    msg.attributes.push(RuleAttribute::Table(table));
    if let Some(pref) = pref {
        msg.attributes.push(RuleAttribute::Priority(pref));
    }
    msg
}

/// `ip route replace local 0.0.0.0/0 dev lo table TABLE` (or `local ::/0`): every address is
/// local for the packets routed by `table`.
pub(crate) fn local_default_route(family: IpFamily, table: u32, lo: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = address_family(family);
    msg.header.destination_prefix_length = 0;
    msg.header.table = header_table(table);
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.scope = RouteScope::Host;
    msg.header.kind = RouteType::Local;
    msg.attributes.push(RouteAttribute::Table(table));
    msg.attributes.push(RouteAttribute::Oif(lo));
    msg
}

/// The `RTM_DELROUTE` for a dumped route: its header and the attributes that select it
/// (destination, source, gateway, output device, metric, table), as `ip route flush` does.
pub(crate) fn deletion_of(r: &RouteMessage) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header = r.header.clone();
    msg.attributes = r
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Source(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
                    | RouteAttribute::Table(_)
            )
        })
        .cloned()
        .collect();
    msg
}

/// The output device of the preferred default route among dumped routes: a unicast route to
/// `/0` in the main table, with the lowest metric (`RTA_PRIORITY`, 0 when absent); its
/// `RTA_OIF`, or for a multipath route the first next hop's device.
pub(crate) fn default_route_oif(routes: &[RouteMessage]) -> Option<u32> {
    routes
        .iter()
        .filter(|r| {
            r.header.destination_prefix_length == 0
                && r.header.kind == RouteType::Unicast
                && route_table(r) == TABLE_MAIN
        })
        .filter_map(|r| {
            let metric = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Priority(p) => Some(*p),
                    _ => None,
                })
                .unwrap_or(0);
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
                _ => None,
            })?;
            Some((metric, oif))
        })
        .min_by_key(|&(metric, _)| metric)
        .map(|(_, oif)| oif)
}

/// A unicast route as `ip route add` takes it and a dump reports it: `dst/prefix_len` (the
/// default route with 0) via `gateway` or directly on link `oif`, with its metric
/// (`RTA_PRIORITY`), table (`RTA_TABLE`) and scope (`rtm_scope`, `RT_SCOPE_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    /// Output device; `None` in a dump for a route without `RTA_OIF` (a multipath route's
    /// first next hop's device is reported).
    pub oif: Option<u32>,
    /// Metric; 0 when absent.
    pub priority: u32,
    /// Table; [`TABLE_MAIN`] by default.
    pub table: u32,
    /// `RT_SCOPE_*`; `None`: universe with a gateway, link without, as `ip route` picks.
    pub scope: Option<u8>,
}

/// The `RTM_NEWROUTE` for `r` (protocol static, as `ip route add` sends).
pub(crate) fn new_route(r: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = address_family(family_of(r.dst));
    msg.header.destination_prefix_length = r.prefix_len;
    msg.header.table = header_table(r.table);
    msg.header.protocol = RouteProtocol::Static;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = match (r.scope, r.gateway) {
        (Some(s), _) => RouteScope::from(s),
        (None, Some(_)) => RouteScope::Universe,
        (None, None) => RouteScope::Link,
    };
    if r.prefix_len > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(r.dst)));
    }
    if let Some(gw) = r.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(oif) = r.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if r.priority != 0 {
        msg.attributes.push(RouteAttribute::Priority(r.priority));
    }
    msg.attributes.push(RouteAttribute::Table(r.table));
    msg
}

/// The `RTM_NEWROUTE`/`RTM_DELROUTE` body of a link-scope route to `dst/prefix_len` on `oif`
/// in the main table with protocol `proto`.
/// A route [`Rtnl::proto_routes`] lists: `(dst, prefix_len, oif, prefsrc)`.
pub type ProtoRoute = (IpAddr, u8, Option<u32>, Option<IpAddr>);

pub(crate) fn proto_route(
    dst: IpAddr,
    prefix_len: u8,
    oif: u32,
    proto: u8,
    src: Option<IpAddr>,
) -> RouteMessage {
    let mut msg = new_route(&Route {
        dst,
        prefix_len,
        gateway: None,
        oif: Some(oif),
        priority: 0,
        table: TABLE_MAIN,
        scope: None,
    });
    msg.header.protocol = RouteProtocol::from(proto);
    if let Some(src) = src {
        msg.attributes.push(RouteAttribute::PrefSource(match src {
            IpAddr::V4(v4) => RouteAddress::Inet(v4),
            IpAddr::V6(v6) => RouteAddress::Inet6(v6),
        }));
    }
    msg
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A dumped unicast route as a [`Route`]; `None` for other kinds (local, broadcast…).
pub(crate) fn parse_route(r: &RouteMessage) -> Option<Route> {
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut out = Route {
        dst: match r.header.address_family {
            netlink_packet_route::AddressFamily::Inet6 => {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            }
            _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        },
        prefix_len: r.header.destination_prefix_length,
        gateway: None,
        oif: None,
        priority: 0,
        table: route_table(r),
        scope: Some(u8::from(r.header.scope)),
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => out.dst = route_addr(d)?,
            RouteAttribute::Gateway(g) => out.gateway = route_addr(g),
            RouteAttribute::Oif(i) => out.oif = Some(*i),
            RouteAttribute::Priority(p) => out.priority = *p,
            RouteAttribute::MultiPath(hops) if out.oif.is_none() => {
                out.oif = hops.first().map(|h| h.interface_index);
            }
            _ => {}
        }
    }
    Some(out)
}

impl Rtnl {
    /// Adds a route in the main table to `dst`/`prefix_len` (the default route with 0) via
    /// `gateway` or directly on link `oif` (`RTM_NEWROUTE`, `EEXIST` if there is one).
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        oif: u32,
    ) -> Result<(), RtnlError> {
        self.add_route_full(&Route {
            dst,
            prefix_len,
            gateway,
            oif: Some(oif),
            priority: 0,
            table: TABLE_MAIN,
            scope: None,
        })
    }

    /// Adds route `r` (`RTM_NEWROUTE` with `NLM_F_EXCL`: `EEXIST` if that route is there).
    pub fn add_route_full(&mut self, r: &Route) -> Result<(), RtnlError> {
        let msg = new_route(r);
        let op = RtnlOp::AddRoute {
            dst: r.dst,
            prefix_len: r.prefix_len,
            oif: r.oif.unwrap_or(0),
        };
        self.request(
            op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// `ip route add DST/LEN dev OIF proto PROTO` in the main table: a host route (`/32`,
    /// `/128` with the full `prefix_len`) marked with routing protocol number `proto`
    /// (`rtm_protocol`, `<linux/rtnetlink.h>`), so that its owner finds it again
    /// ([`Rtnl::proto_routes`]). `EEXIST` if it is there.
    pub fn add_proto_route(
        &mut self,
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
        proto: u8,
        src: Option<IpAddr>,
    ) -> Result<(), RtnlError> {
        let msg = proto_route(dst, prefix_len, oif, proto, src);
        let op = RtnlOp::AddRoute {
            dst,
            prefix_len,
            oif,
        };
        self.request(
            op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes the main table's route to `dst/prefix_len` on `oif` with protocol `proto`
    /// (`RTM_DELROUTE`; `ESRCH` if there is none).
    pub fn del_proto_route(
        &mut self,
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
        proto: u8,
    ) -> Result<(), RtnlError> {
        let msg = proto_route(dst, prefix_len, oif, proto, None);
        let op = RtnlOp::DeleteRoute {
            dst,
            prefix_len,
            oif,
        };
        self.request(op, RouteNetlinkMessage::DelRoute(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// The main table's unicast routes of `family` with protocol `proto`, as `(dst,
    /// prefix_len, oif, prefsrc)` (`ip route show proto PROTO`).
    pub fn proto_routes(
        &mut self,
        family: IpFamily,
        proto: u8,
    ) -> Result<Vec<ProtoRoute>, RtnlError> {
        Ok(self
            .routes(family)?
            .iter()
            .filter(|r| u8::from(r.header.protocol) == proto && route_table(r) == TABLE_MAIN)
            .filter_map(|m| {
                let src = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::PrefSource(s) => route_addr(s),
                    _ => None,
                });
                parse_route(m).map(|r| (r.dst, r.prefix_len, r.oif, src))
            })
            .collect())
    }

    /// `ip rule add fwmark MARK table TABLE pref PREF` for `family`: packets carrying `mark`
    /// are routed by `table`. `EEXIST` if that exact rule (same preference) is there.
    pub fn add_rule_fwmark(
        &mut self,
        family: IpFamily,
        mark: u32,
        table: u32,
        pref: u32,
    ) -> Result<(), RtnlError> {
        let msg = fwmark_rule(family, mark, table, Some(pref));
        let op = RtnlOp::AddRule {
            family,
            mark,
            table,
            pref,
        };
        self.request(
            op,
            RouteNetlinkMessage::NewRule(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// `ip rule del fwmark MARK table TABLE` for `family`: deletes one matching rule, whatever
    /// its preference. `ENOENT` (kind `NotFound`) if there is none.
    pub fn del_rule_fwmark(
        &mut self,
        family: IpFamily,
        mark: u32,
        table: u32,
    ) -> Result<(), RtnlError> {
        let msg = fwmark_rule(family, mark, table, None);
        let op = RtnlOp::DeleteRule {
            family,
            mark,
            table,
        };
        self.request(op, RouteNetlinkMessage::DelRule(msg), NLM_F_ACK)?;
        Ok(())
    }

    /// `ip route replace local 0.0.0.0/0 dev lo table TABLE` (IPv4) or
    /// `local ::/0 dev lo table TABLE` (IPv6): creates the route or replaces whatever default
    /// route `table` had.
    pub fn replace_local_default_route(
        &mut self,
        family: IpFamily,
        table: u32,
    ) -> Result<(), RtnlError> {
        let op = RtnlOp::ReplaceLocalDefault { family, table };
        let lo = self
            .link_by_name("lo")?
            .ok_or_else(|| RtnlError::Request {
                op: op.clone(),
                source: std::io::Error::from_raw_os_error(libc::ENODEV),
            })?
            .index;
        let msg = local_default_route(family, table, lo);
        self.request(
            op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// `ip route flush table TABLE` for `family`: deletes every route of `table` and returns
    /// how many. Routes that vanish meanwhile (`ESRCH`, `ENOENT`) are not errors.
    pub fn flush_route_table(&mut self, family: IpFamily, table: u32) -> Result<usize, RtnlError> {
        let mut removed = 0;
        for r in self.routes(family)? {
            if route_table(&r) != table {
                continue;
            }
            let op = RtnlOp::FlushTable { family, table };
            match self.request(
                op,
                RouteNetlinkMessage::DelRoute(deletion_of(&r)),
                NLM_F_ACK,
            ) {
                Ok(_) => removed += 1,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The interface index of the device the main table's default route for `family` leaves
    /// through (the lowest-metric one if there are several; the first next hop of a multipath
    /// route); `None` without a default route.
    pub fn default_route_device(&mut self, family: IpFamily) -> Result<Option<u32>, RtnlError> {
        Ok(default_route_oif(&self.routes(family)?))
    }

    /// Every unicast route of `family`, in every table (`RTM_GETROUTE` dump), as `ip route
    /// show table all type unicast` lists them.
    pub fn unicast_routes(&mut self, family: IpFamily) -> Result<Vec<Route>, RtnlError> {
        Ok(self
            .routes(family)?
            .iter()
            .filter_map(parse_route)
            .collect())
    }

    /// Every route of `family`, in every table (`RTM_GETROUTE` dump).
    fn routes(&mut self, family: IpFamily) -> Result<Vec<RouteMessage>, RtnlError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = address_family(family);
        let replies = self.request(
            RtnlOp::ListRoutes { family },
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.address_family == address_family(family) =>
                {
                    Some(r)
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::route::RouteNextHop;
    use netlink_packet_route::AddressFamily;

    use super::super::parse::messages;
    use super::*;

    /// Serialises and reads back `msg` through netlink-packet-route, as the kernel would see it.
    fn round_trip(msg: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        let back = messages(&buf).next().map(|m| m.payload);
        match back {
            Some(NetlinkPayload::InnerMessage(m)) => m,
            other => panic!("did not read back: {other:?}"),
        }
    }

    #[test]
    fn a_fwmark_rule_carries_mark_table_and_preference() {
        let msg = fwmark_rule(IpFamily::V6, 0x1d, 1000, Some(90));
        let RouteNetlinkMessage::NewRule(back) = round_trip(RouteNetlinkMessage::NewRule(msg))
        else {
            panic!("not a rule");
        };
        assert_eq!(back.header.family, AddressFamily::Inet6);
        assert_eq!(back.header.action, RuleAction::ToTable);
        // Table 1000 does not fit the header: RT_TABLE_UNSPEC there, FRA_TABLE has it.
        assert_eq!(back.header.table, 0);
        for a in [
            RuleAttribute::FwMark(0x1d),
            RuleAttribute::Table(1000),
            RuleAttribute::Priority(90),
        ] {
            assert!(
                back.attributes.contains(&a),
                "{a:?} in {:?}",
                back.attributes
            );
        }
        let del = fwmark_rule(IpFamily::V4, 7, 100, None);
        assert_eq!(del.header.table, 100);
        assert!(!del
            .attributes
            .iter()
            .any(|a| matches!(a, RuleAttribute::Priority(_))));
    }

    #[test]
    fn the_local_default_route_is_local_host_scope_on_lo() {
        let msg = local_default_route(IpFamily::V4, 300, 1);
        let RouteNetlinkMessage::NewRoute(back) = round_trip(RouteNetlinkMessage::NewRoute(msg))
        else {
            panic!("not a route");
        };
        assert_eq!(back.header.kind, RouteType::Local);
        assert_eq!(back.header.scope, RouteScope::Host);
        assert_eq!(back.header.destination_prefix_length, 0);
        assert_eq!(route_table(&back), 300);
        assert!(back.attributes.contains(&RouteAttribute::Oif(1)));
        assert!(!back
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(_))));
    }

    fn route(table: u32, prefix: u8, kind: RouteType, attrs: Vec<RouteAttribute>) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = header_table(table);
        r.header.destination_prefix_length = prefix;
        r.header.kind = kind;
        r.attributes = attrs;
        r.attributes.push(RouteAttribute::Table(table));
        r
    }

    #[test]
    fn the_default_route_device_is_the_lowest_metric_unicast_default_of_main() {
        let dst = RouteAttribute::Destination(RouteAddress::from(IpAddr::from([192, 0, 2, 0])));
        let routes = vec![
            route(
                TABLE_MAIN,
                24,
                RouteType::Unicast,
                vec![dst, RouteAttribute::Oif(2)],
            ),
            route(100, 0, RouteType::Unicast, vec![RouteAttribute::Oif(3)]),
            route(
                TABLE_MAIN,
                0,
                RouteType::Unicast,
                vec![RouteAttribute::Oif(4), RouteAttribute::Priority(200)],
            ),
            route(
                TABLE_MAIN,
                0,
                RouteType::Unicast,
                vec![RouteAttribute::Oif(5), RouteAttribute::Priority(100)],
            ),
            route(TABLE_MAIN, 0, RouteType::BlackHole, vec![]),
        ];
        assert_eq!(default_route_oif(&routes), Some(5));
        assert_eq!(default_route_oif(&routes[..2]), None);
        let mut hop = RouteNextHop::default();
        hop.interface_index = 9;
        let multipath = vec![route(
            TABLE_MAIN,
            0,
            RouteType::Unicast,
            vec![RouteAttribute::MultiPath(vec![hop])],
        )];
        assert_eq!(default_route_oif(&multipath), Some(9));
    }

    #[test]
    fn a_deletion_keeps_the_selector_and_drops_the_rest() {
        let mut r = route(
            200,
            0,
            RouteType::Local,
            vec![
                RouteAttribute::Oif(1),
                RouteAttribute::Priority(1024),
                RouteAttribute::Mark(3),
            ],
        );
        r.header.scope = RouteScope::Host;
        let d = deletion_of(&r);
        assert_eq!(d.header, r.header);
        assert_eq!(
            d.attributes,
            vec![
                RouteAttribute::Oif(1),
                RouteAttribute::Priority(1024),
                RouteAttribute::Table(200),
            ]
        );
    }

    #[test]
    fn a_route_reads_back_as_it_was_built() {
        let r = Route {
            dst: "2001:db8::".parse().unwrap(),
            prefix_len: 32,
            gateway: Some("2001:db8::1".parse().unwrap()),
            oif: Some(7),
            priority: 100,
            table: TABLE_MAIN,
            scope: Some(0),
        };
        let RouteNetlinkMessage::NewRoute(m) =
            round_trip(RouteNetlinkMessage::NewRoute(new_route(&r)))
        else {
            panic!("not a route")
        };
        assert_eq!(parse_route(&m), Some(r));
        let v4 = Route {
            dst: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            gateway: None,
            oif: Some(3),
            priority: 0,
            table: 1000,
            scope: None,
        };
        let RouteNetlinkMessage::NewRoute(m) =
            round_trip(RouteNetlinkMessage::NewRoute(new_route(&v4)))
        else {
            panic!("not a route")
        };
        // Read back, the scope is the one `ip route` picks without a gateway: link (253).
        assert_eq!(
            parse_route(&m),
            Some(Route {
                scope: Some(253),
                ..v4
            })
        );
    }
}
