//! Talking to the kernel about devices rather than through them: rtnetlink ([`rtnl`]),
//! network namespaces ([`netns`]), the control socket's peer credentials ([`cred`]) and the
//! event loop's primitives ([`poll`]).

pub mod cred;
pub mod netns;
pub mod poll;
pub mod rtnl;
