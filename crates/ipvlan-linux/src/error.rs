//! What the typed errors of this crate have in common ([`crate::tap::TapError`],
//! [`crate::veth::VethError`],
//! [`crate::packet::PacketError`], [`crate::host::HostError`], [`crate::steer::SteerError`],
//! [`crate::rtnl::RtnlError`], [`crate::netns::NetNsError`]).
//!
//! Each is one enum per module, with a variant per failing operation that names the device,
//! link or namespace it was done to and keeps the kernel's `io::Error` as its
//! [`source`](std::error::Error::source). Its `Display` says what was being done and ends with
//! the kernel's own words (`creating TAP device s1 (TUNSETIFF): Device or resource busy (os
//! error 16)`), because most callers print errors with `{}` alone; a printer that also walks
//! the `source` chain (anyhow's `{:#}`) shows those words twice.
//!
//! Each also has `raw_os_error()` and `kind()`, as `io::Error` does, and converts into an
//! `io::Error` with the same kind and its `Display` as the message, so code written against
//! `io::Result` keeps working with `?`. The per-frame calls (`Tap::recv/send`,
//! `PacketSocket::recv/send`, `HostStack::send`) return plain `io::Result`: their callers only
//! ask whether the error is `WouldBlock`.

use std::io;

/// Turns a typed error into an `io::Error` of kind `kind` whose message is `err`'s `Display`
/// (which already ends with the kernel's words, so the message has no further `source`: an
/// error-chain printer such as anyhow's `{:#}` shows them once).
///
/// One exception: running out of descriptors (`EMFILE`, `ENFILE`) converts into the bare OS
/// error, so that `raw_os_error()` on the converted error still tells the caller to raise its
/// open-file limit; an `io::Error` cannot carry both an OS code and a message.
pub(crate) fn into_io(
    kind: io::ErrorKind,
    raw: Option<i32>,
    err: &dyn std::fmt::Display,
) -> io::Error {
    match raw {
        Some(code) if code == libc::EMFILE || code == libc::ENFILE => {
            io::Error::from_raw_os_error(code)
        }
        _ => io::Error::new(kind, err.to_string()),
    }
}

/// Gives a typed error `raw_os_error()`, `kind()` and `From<…> for io::Error`, from two private
/// methods the type provides: `io_source(&self) -> Option<&io::Error>` (the kernel's error, if
/// the failure came from the kernel) and `own_kind(&self) -> Option<io::ErrorKind>` (a kind that
/// overrides the source's, or the kind of a failure with no source).
macro_rules! io_like_error {
    ($ty:ident) => {
        impl $ty {
            /// The OS error code (`errno`) the kernel returned, if the failure came from it.
            pub fn raw_os_error(&self) -> Option<i32> {
                self.io_source().and_then(std::io::Error::raw_os_error)
            }

            /// The `io::ErrorKind` of the failure: the kernel error's kind, unless the variant
            /// says otherwise (see the variants' docs).
            pub fn kind(&self) -> std::io::ErrorKind {
                self.own_kind()
                    .or_else(|| self.io_source().map(std::io::Error::kind))
                    .unwrap_or(std::io::ErrorKind::Other)
            }
        }

        impl From<$ty> for std::io::Error {
            fn from(e: $ty) -> std::io::Error {
                $crate::error::into_io(e.kind(), e.raw_os_error(), &e)
            }
        }
    };
}

pub(crate) use io_like_error;
