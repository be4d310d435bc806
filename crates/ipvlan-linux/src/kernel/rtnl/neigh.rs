//! Proxy neighbour entries (`RTM_{NEW,DEL}NEIGH` with `NTF_PROXY`), as `ip -6 neigh
//! add|del proxy ADDR dev DEV` sends them: with `proxy_ndp` on the device, the stack answers
//! neighbour solicitations for `ADDR` received on it (`ndisc_recv_ns`, `pneigh_lookup`).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::{address_family, family_of, Rtnl, RtnlError, RtnlOp};

/// The message body of the proxy entry `addr` on link `index`.
pub(crate) fn proxy_neighbour(addr: IpAddr, index: u32) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.family = address_family(family_of(addr));
    msg.header.ifindex = index;
    msg.header.flags = NeighbourFlags::Proxy;
    msg.attributes
        .push(NeighbourAttribute::Destination(match addr {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    msg
}

impl Rtnl {
    /// `ip neigh replace proxy ADDR dev INDEX`: adds the proxy entry, or keeps it.
    pub fn add_proxy_neighbour(&mut self, addr: IpAddr, index: u32) -> Result<(), RtnlError> {
        let op = RtnlOp::ProxyNeighbour {
            add: true,
            addr,
            index,
        };
        self.request(
            op,
            RouteNetlinkMessage::NewNeighbour(proxy_neighbour(addr, index)),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// `ip neigh del proxy ADDR dev INDEX` (`ENOENT` if there is none).
    pub fn del_proxy_neighbour(&mut self, addr: IpAddr, index: u32) -> Result<(), RtnlError> {
        let op = RtnlOp::ProxyNeighbour {
            add: false,
            addr,
            index,
        };
        self.request(
            op,
            RouteNetlinkMessage::DelNeighbour(proxy_neighbour(addr, index)),
            NLM_F_ACK,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::neighbour::NeighbourFlags;
    use netlink_packet_route::AddressFamily;

    use super::proxy_neighbour;

    #[test]
    fn a_proxy_entry_names_the_address_and_the_device() {
        let m = proxy_neighbour("2001:db8:1::1".parse().unwrap(), 7);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.ifindex, 7);
        assert_eq!(m.header.flags, NeighbourFlags::Proxy);
        assert_eq!(m.attributes.len(), 1);
    }
}
