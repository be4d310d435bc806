//! The words after `type ipvlan`, parsed with iproute2's grammar (R-CLI-1..3).
//!
//! Kept here, not in the CLI, because what is *sent* (which attributes are present) decides what the
//! port does (R-CRT-5, R-MODE-5), and that is core behaviour.

use thiserror::Error;

use crate::mode::{Flag, Mode};

/// iproute2's usage text for `type ipvlan` (R-CLI-3).
pub const USAGE: &str = "Usage: ... ipvlan [ mode MODE ] [ FLAGS ]\n\
\n\
MODE: l3 | l3s | l2\n\
FLAGS: bridge | private | vepa\n\
(first values are the defaults if nothing is specified).";

/// What a `type ipvlan …` clause asks for, as the attributes iproute2 would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkTypeArgs {
    /// `IFLA_IPVLAN_MODE`: present only when `mode` was given.
    pub mode: Option<Mode>,
    /// `IFLA_IPVLAN_FLAGS`: present whenever *any* word followed `type ipvlan` (R-CLI-2), so
    /// `mode l2` alone resets a private/vepa port to bridge.
    pub flag: Option<Flag>,
}

/// Why the words were refused. `Display` gives iproute2's own text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LinkArgsError {
    #[error("Error: argument of \"mode\" must be either \"l2\", \"l3\" or \"l3s\"")]
    BadMode(String),
    #[error("ipvlan: unknown option \"{0}\"?\n{USAGE}")]
    UnknownOption(String),
    #[error("Command line is not complete. Try option \"help\"")]
    Incomplete,
    #[error("{USAGE}")]
    Help,
}

/// iproute2's `matches(word, keyword)`: the word is a prefix of the keyword.
fn abbreviates(word: &str, keyword: &str) -> bool {
    keyword.starts_with(word)
}

impl LinkTypeArgs {
    /// Parses the words that follow `type ipvlan`.
    ///
    /// A second flag word is an unknown option (`private vepa` → `unknown option "vepa"?`), which is
    /// how iproute2 makes private-with-vepa impossible to send (R-CLI-3, T-03).
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<LinkTypeArgs, LinkArgsError> {
        let mut args = LinkTypeArgs::default();
        if words.is_empty() {
            return Ok(args); // R-CLI-1: nothing is sent.
        }
        let mut flag = None;
        let mut iter = words.iter().map(AsRef::as_ref);
        while let Some(word) = iter.next() {
            if abbreviates(word, "mode") {
                let value = iter.next().ok_or(LinkArgsError::Incomplete)?;
                let mode = value
                    .parse::<Mode>()
                    .map_err(|_| LinkArgsError::BadMode(value.to_owned()))?;
                args.mode = Some(mode);
            } else if flag.is_none() && abbreviates(word, "private") {
                flag = Some(Flag::Private);
            } else if flag.is_none() && abbreviates(word, "vepa") {
                flag = Some(Flag::Vepa);
            } else if flag.is_none() && abbreviates(word, "bridge") {
                flag = Some(Flag::Bridge);
            } else if abbreviates(word, "help") {
                return Err(LinkArgsError::Help);
            } else {
                return Err(LinkArgsError::UnknownOption(word.to_owned()));
            }
        }
        args.flag = Some(flag.unwrap_or_default()); // R-CLI-2
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<LinkTypeArgs, LinkArgsError> {
        LinkTypeArgs::parse(&s.split_whitespace().collect::<Vec<_>>())
    }

    #[test]
    fn r_cli_1_nothing_after_type_sends_nothing() {
        assert_eq!(
            parse(""),
            Ok(LinkTypeArgs {
                mode: None,
                flag: None
            })
        );
    }

    #[test]
    fn r_cli_2_any_word_sends_flags() {
        assert_eq!(
            parse("mode l2"),
            Ok(LinkTypeArgs {
                mode: Some(Mode::L2),
                flag: Some(Flag::Bridge)
            })
        );
        assert_eq!(
            parse("vepa"),
            Ok(LinkTypeArgs {
                mode: None,
                flag: Some(Flag::Vepa)
            })
        );
        assert_eq!(
            parse("mode l3s private"),
            Ok(LinkTypeArgs {
                mode: Some(Mode::L3s),
                flag: Some(Flag::Private)
            })
        );
    }

    #[test]
    fn r_cli_3_words_match_by_prefix() {
        assert_eq!(
            parse("m l2 p"),
            Ok(LinkTypeArgs {
                mode: Some(Mode::L2),
                flag: Some(Flag::Private)
            })
        );
        assert_eq!(parse("br").map(|a| a.flag), Ok(Some(Flag::Bridge)));
        assert_eq!(parse("ve").map(|a| a.flag), Ok(Some(Flag::Vepa)));
    }

    #[test]
    fn r_cli_3_t_03_second_flag_is_an_unknown_option() {
        let err = parse("mode l2 private vepa").unwrap_err();
        assert_eq!(err, LinkArgsError::UnknownOption("vepa".into()));
        let text = err.to_string();
        assert!(text.starts_with(
            "ipvlan: unknown option \"vepa\"?\nUsage: ... ipvlan [ mode MODE ] [ FLAGS ]"
        ));
        assert!(text.contains("FLAGS: bridge | private | vepa"));
        assert_eq!(
            parse("bridge bridge"),
            Err(LinkArgsError::UnknownOption("bridge".into()))
        );
        assert_eq!(
            parse("vepa private"),
            Err(LinkArgsError::UnknownOption("private".into()))
        );
    }

    #[test]
    fn r_cli_3_t_04_bad_mode_argument() {
        for bad in ["l4", "L2", "l3S"] {
            let err = parse(&format!("mode {bad}")).unwrap_err();
            assert_eq!(
                err.to_string(),
                "Error: argument of \"mode\" must be either \"l2\", \"l3\" or \"l3s\""
            );
        }
    }

    #[test]
    fn mode_without_value_is_incomplete() {
        assert_eq!(parse("mode"), Err(LinkArgsError::Incomplete));
        assert_eq!(
            LinkArgsError::Incomplete.to_string(),
            "Command line is not complete. Try option \"help\""
        );
    }

    #[test]
    fn help_and_garbage() {
        assert_eq!(parse("help"), Err(LinkArgsError::Help));
        assert_eq!(
            parse("xyz"),
            Err(LinkArgsError::UnknownOption("xyz".into()))
        );
    }
}
