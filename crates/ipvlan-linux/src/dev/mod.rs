//! Where frames enter and leave: the slaves' TAP devices ([`tap`], with flow steering over
//! their queues in [`steer`]) or veth pairs ([`veth`], read through a packet socket on the
//! host end), the TAPs of virtual machines' NICs ([`vmtap`], switched as veth host ends), the master's packet sockets ([`packet`]), and the raw sockets
//! into the master namespace's own stack ([`host`]). All of them carry the `virtio_net_hdr` of
//! [`vnet`] in front of each frame, except [`host`], which takes bare IP packets.

pub mod host;
pub mod packet;
pub mod steer;
pub mod tap;
pub mod veth;
pub mod vmtap;
pub mod vnet;
