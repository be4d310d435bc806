//! Running the system tools the daemon drives (`nft`, `ip`), with their error output kept.

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// Runs `cmd`, feeding it `input` on stdin; an error carries the tool's own message.
pub(crate) fn run(cmd: &mut Command, input: Option<&str>) -> io::Result<()> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the {program} command is missing: install it (nftables, iproute2)"),
                )
            } else {
                e
            }
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Applies an nftables script atomically (`nft -f -`).
pub(crate) fn nft(script: &str) -> io::Result<()> {
    run(Command::new("nft").args(["-f", "-"]), Some(script))
}
