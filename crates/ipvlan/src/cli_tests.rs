//! Table tests for the command line's grammar: pure, without root and without a daemon.
//!
//! A request is checked as the JSON it goes over the socket as (`serde_json::to_value`), with
//! absent (`null`) fields left out, so the tests hold while the protocol's Rust types change and
//! its wire shape does not. A refusal is checked by its exit code (iproute2's: 255 for a
//! command-line error, 1 for a bad argument, 2 when the request is refused) and a piece of its
//! message. The first cases of `bad_input_gets_clear_errors_and_creates_nothing`
//! (`tests/e2e_daemon.rs`, which keeps them end to end) are here as the first rows of
//! [`REFUSED`].

use std::path::PathBuf;

use serde_json::{json, Value};

use super::*;
use crate::proto::Attachment;

/// The request `ipvlan link WORDS` makes, as JSON without its `null` fields, or the exit code
/// and message it is refused with.
fn link(words: &str) -> Result<Value, (u8, String)> {
    let words: Vec<String> = words.split_whitespace().map(String::from).collect();
    match parse_link(&words) {
        Ok((req, _)) => Ok(without_nulls(serde_json::to_value(&req).unwrap())),
        Err(CliError { msg, code, .. }) => Err((code, msg)),
    }
}

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

/// Words after `ipvlan link` that parse, and the request each makes.
fn accepted() -> Vec<(&'static str, Value)> {
    let add = |mode: Option<&str>, flag: Option<&str>| {
        let mut r = json!({"cmd": "link_add", "master": "m0", "name": "s1"});
        if let Some(m) = mode {
            r["mode"] = json!(m);
        }
        if let Some(f) = flag {
            r["flag"] = json!(f);
        }
        r
    };
    let set = |extra: Value| {
        let mut r = json!({"cmd": "link_set", "name": "s1"});
        r.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        r
    };
    vec![
        // `type ipvlan` alone sends neither mode nor flag (R-CLI-1); any word sends the flag,
        // bridge unless another is given (R-CLI-2).
        ("add link m0 s1 type ipvlan", add(None, None)),
        (
            "add link m0 s1 type ipvlan mode l2",
            add(Some("l2"), Some("bridge")),
        ),
        (
            "add link m0 s1 type ipvlan mode l3",
            add(Some("l3"), Some("bridge")),
        ),
        (
            "add link m0 s1 type ipvlan mode l3s",
            add(Some("l3s"), Some("bridge")),
        ),
        (
            "add link m0 s1 type ipvlan bridge",
            add(None, Some("bridge")),
        ),
        (
            "add link m0 s1 type ipvlan private",
            add(None, Some("private")),
        ),
        ("add link m0 s1 type ipvlan vepa", add(None, Some("vepa"))),
        (
            "add link m0 s1 type ipvlan mode l2 private",
            add(Some("l2"), Some("private")),
        ),
        (
            "add link m0 s1 type ipvlan private mode l3s",
            add(Some("l3s"), Some("private")),
        ),
        (
            "add link m0 s1 type ipvlan mode l3 vepa",
            add(Some("l3"), Some("vepa")),
        ),
        // iproute2's keyword prefixes (R-CLI-3), for the verb and after `type ipvlan`.
        (
            "a link m0 s1 type ipvlan m l2 p",
            add(Some("l2"), Some("private")),
        ),
        (
            "ad link m0 s1 type ipvlan mo l3 b",
            add(Some("l3"), Some("bridge")),
        ),
        (
            "add link m0 s1 type ipvlan mod l3s ve",
            add(Some("l3s"), Some("vepa")),
        ),
        ("add link m0 s1 type ipvlan pri", add(None, Some("private"))),
        ("add link m0 s1 type ipvlan br", add(None, Some("bridge"))),
        ("add link m0 s1 type ipvlan v", add(None, Some("vepa"))),
        // `mode` twice: the last one counts, as in iproute2.
        (
            "add link m0 s1 type ipvlan mode l2 mode l3",
            add(Some("l3"), Some("bridge")),
        ),
        // The name, bare or after `name`/`dev`, and key/value pairs in any order.
        ("add link m0 name s1 type ipvlan", add(None, None)),
        ("add link m0 dev s1 type ipvlan", add(None, None)),
        ("add s1 link m0 type ipvlan", add(None, None)),
        ("add name s1 link m0 type ipvlan", add(None, None)),
        (
            "add mtu 1400 link m0 spoofchk on s1 type ipvlan mode l2",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "mode": "l2",
                   "flag": "bridge", "mtu": 1400, "spoofchk": true}),
        ),
        (
            "add s1 spoofchk off mtu 9000 link m0 type ipvlan",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "mtu": 9000,
                   "spoofchk": false}),
        ),
        // `backend veth|tap` (before `type`, as spoofchk): what the slave's device is made of.
        (
            "add link m0 s1 backend veth type ipvlan mode l2",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "mode": "l2",
                   "flag": "bridge", "backend": "veth"}),
        ),
        (
            "add backend tap link m0 s1 type ipvlan",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "backend": "tap"}),
        ),
        // A zero MTU parses, as in iproute2; the daemon refuses it with the range (exit 2, the
        // e2e case `mtu 67`).
        (
            "add link m0 s1 mtu 0 type ipvlan",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "mtu": 0}),
        ),
        // `address` is accepted and ignored: a slave carries its master's MAC (R-MAC-1).
        (
            "add link m0 s1 address 02:00:00:00:00:99 type ipvlan",
            add(None, None),
        ),
        // `link set`: mode, flag and spoofchk, in any order, with prefixes.
        (
            "set dev s1 type ipvlan mode l3",
            set(json!({"mode": "l3", "flag": "bridge"})),
        ),
        (
            "set s1 type ipvlan mo l2 pri",
            set(json!({"mode": "l2", "flag": "private"})),
        ),
        ("s s1 type ipvlan vepa", set(json!({"flag": "vepa"}))),
        ("se s1 spoofchk on", set(json!({"spoofchk": true}))),
        ("set spoofchk off s1", set(json!({"spoofchk": false}))),
        ("set spoofchk on dev s1", set(json!({"spoofchk": true}))),
        (
            "set s1 spoofchk off type ipvlan private",
            set(json!({"flag": "private", "spoofchk": false})),
        ),
        // `type ipvlan` with nothing after it sends nothing to change (R-CLI-1).
        ("set s1 type ipvlan", set(json!({}))),
        // `hostreach on|off`: on a slave or the master, before or after `type ipvlan`.
        (
            "set dev m0 hostreach on",
            json!({"cmd": "link_set", "name": "m0", "hostreach": true}),
        ),
        (
            "set s1 type ipvlan mode l3 hostreach off",
            set(json!({"mode": "l3", "flag": "bridge", "hostreach": false})),
        ),
        (
            "add link m0 s1 type ipvlan mode l2 hostreach on",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "mode": "l2",
                   "flag": "bridge", "hostreach": true}),
        ),
        (
            "add link m0 s1 hostreach off type ipvlan",
            json!({"cmd": "link_add", "master": "m0", "name": "s1", "hostreach": false}),
        ),
        // `link del` and `link show`, with and without `dev`, and their prefixes.
        ("del s1", json!({"cmd": "link_del", "name": "s1"})),
        ("delete dev s1", json!({"cmd": "link_del", "name": "s1"})),
        ("d s1", json!({"cmd": "link_del", "name": "s1"})),
        ("", json!({"cmd": "link_show"})),
        ("show", json!({"cmd": "link_show"})),
        ("sh s1", json!({"cmd": "link_show", "name": "s1"})),
        ("show dev s1", json!({"cmd": "link_show", "name": "s1"})),
        ("list s1", json!({"cmd": "link_show", "name": "s1"})),
        ("ls", json!({"cmd": "link_show"})),
    ]
}

/// Words after `ipvlan link` that are refused: exit code and a piece of the message.
const REFUSED: &[(&str, u8, &str)] = &[
    (
        "set m0 hostreach maybe",
        1,
        "argument of \"hostreach\" must be \"on\" or \"off\"",
    ),
    ("set m0 hostreach", 255, "\"hostreach\" needs on or off"),
    (
        "add link m0 s1 backend foo type ipvlan",
        1,
        "\"backend\" is veth or tap",
    ),
    (
        "add link m0 s1 backend type ipvlan",
        255,
        "\"backend\" needs a value",
    ),
    // The first seven cases of e2e_daemon's bad_input_gets_clear_errors_and_creates_nothing.
    (
        "add link m0 s1 type ipvlan mode l4",
        1,
        "argument of \"mode\" must be either \"l2\", \"l3\" or \"l3s\"",
    ),
    (
        "add link m0 s1 type ipvlan mode L2",
        1,
        "argument of \"mode\"",
    ),
    (
        "add link m0 s1 type ipvlan mode l2 private vepa",
        1,
        "ipvlan: unknown option \"vepa\"?",
    ),
    (
        "add link m0 s1 type ipvlan bridge bridge",
        1,
        "unknown option \"bridge\"",
    ),
    (
        "add link m0 s1 type ipvlan mode",
        255,
        "Command line is not complete",
    ),
    ("add s1 type ipvlan mode l2", 2, "needs its master"),
    ("add link m0 s1", 255, "\"type\" argument is required"),
    // `type`: incomplete, another kind, an unknown word, help.
    ("add link m0 s1 type", 255, "Command line is not complete"),
    (
        "add link m0 s1 type macvlan",
        1,
        "only creates ipvlan links, not \"macvlan\"",
    ),
    (
        "add link m0 s1 type ipvtap user",
        255,
        "\"user\" needs a value",
    ),
    (
        "add link m0 s1 type ipvtap group wheel",
        1,
        "\"group\" is a numeric id",
    ),
    (
        "add link m0 s1 backend veth type ipvtap",
        1,
        "\"backend\" does not go with type ipvtap",
    ),
    (
        "add link m0 s1 type ipvtap user 1000 backend tap",
        1,
        "\"backend\" does not go with type ipvtap",
    ),
    ("add link m0 s1 type ipvlan l2", 1, "unknown option \"l2\"?"),
    (
        "add link m0 s1 type ipvlan mode l2 mode",
        255,
        "Command line is not complete",
    ),
    // Names.
    (
        "add link m0 type ipvlan",
        255,
        "\"name\" argument is required",
    ),
    (
        "add link m0 this-name-is-too-long type ipvlan",
        1,
        "longer than 15 bytes",
    ),
    (
        "add link m0 s1 s2 type ipvlan",
        255,
        "either \"dev\" is duplicate, or \"s2\" is a garbage",
    ),
    ("add s1 link type ipvlan", 255, "\"link\" needs a value"),
    (
        "add link m0 name type ipvlan",
        255,
        "\"name\" needs a value",
    ),
    // mtu and spoofchk values.
    (
        "add link m0 s1 mtu abc type ipvlan",
        1,
        "argument \"abc\" is wrong: Invalid \"mtu\" value",
    ),
    (
        "add link m0 s1 mtu -1 type ipvlan",
        1,
        "Invalid \"mtu\" value",
    ),
    (
        "add link m0 s1 mtu 1.5 type ipvlan",
        1,
        "Invalid \"mtu\" value",
    ),
    (
        "add link m0 s1 mtu type ipvlan",
        255,
        "\"mtu\" needs a value",
    ),
    (
        "add link m0 s1 spoofchk yes type ipvlan",
        1,
        "argument of \"spoofchk\" must be \"on\" or \"off\", not \"yes\"",
    ),
    (
        "add link m0 s1 spoofchk ON type ipvlan",
        1,
        "must be \"on\" or \"off\"",
    ),
    (
        "add link m0 s1 spoofchk type ipvlan",
        255,
        "\"spoofchk\" needs a value",
    ),
    (
        "add link m0 s1 address type ipvlan",
        255,
        "\"address\" needs a value",
    ),
    // link set: nothing to change, no name, what `ip link set` does, bad values.
    (
        "set s1",
        255,
        "Not enough information: give \"type ipvlan\"",
    ),
    (
        "set dev s1",
        255,
        "Not enough information: give \"type ipvlan\"",
    ),
    (
        "set type ipvlan mode l2",
        255,
        "\"dev\" argument is required",
    ),
    ("set", 255, "\"dev\" argument is required"),
    ("set s1 mtu 1400", 1, "for \"mtu\" use `ip link set`"),
    // The mode and flags go after "type ipvlan" (as iproute2's); not sent to `ip link set`.
    (
        "set dev vmtap0 mode l3",
        1,
        "\"mode\" goes after \"type ipvlan\": ipvlan link set dev vmtap0 type ipvlan mode l3",
    ),
    (
        "set s1 private",
        1,
        "\"private\" goes after \"type ipvlan\": ipvlan link set dev s1 type ipvlan private",
    ),
    (
        "set s1 spoofchk maybe",
        1,
        "must be \"on\" or \"off\", not \"maybe\"",
    ),
    ("set s1 spoofchk", 255, "\"spoofchk\" needs on or off"),
    (
        "set s1 type ipvlan mode l4",
        1,
        "argument of \"mode\" must be either",
    ),
    (
        "set s1 type ipvlan private vepa",
        1,
        "unknown option \"vepa\"?",
    ),
    ("set s1 type veth", 1, "not \"veth\""),
    // link del and link show.
    ("del", 255, "\"dev\" argument is required"),
    ("del s1 s2", 255, "Garbage instead of arguments \"s1 s2\""),
    ("show s1 s2", 255, "Garbage instead of arguments \"s1 s2\""),
    // Unknown verbs, and help.
    (
        "frobnicate",
        255,
        "Command \"frobnicate\" is unknown, try \"ipvlan link help\"",
    ),
    ("up s1", 255, "Command \"up\" is unknown"),
];

#[test]
fn every_accepted_command_makes_its_request() {
    for (words, want) in accepted() {
        match link(words) {
            Ok(got) => assert_eq!(got, want, "`ipvlan link {words}`"),
            Err((code, msg)) => panic!("`ipvlan link {words}` refused ({code}): {msg}"),
        }
    }
}

#[test]
fn every_refused_command_gets_its_exit_code_and_message() {
    for &(words, code, needle) in REFUSED {
        match link(words) {
            Ok(req) => panic!("`ipvlan link {words}` accepted: {req}"),
            Err((got, msg)) => {
                assert_eq!(got, code, "`ipvlan link {words}` exit code; message: {msg}");
                assert!(
                    msg.contains(needle),
                    "`ipvlan link {words}`: expected {needle:?} in {msg:?}"
                );
            }
        }
    }
}

/// A socket path nothing listens on: a command that parses fails there, with exit code 1.
fn absent_socket() -> PathBuf {
    std::env::temp_dir().join(format!(
        "ipvlan-cli-test-{}-nobody-listens.sock",
        std::process::id()
    ))
}

/// The whole command line (options, object, verb) up to the socket: exit code and message.
fn whole(words: &[&str]) -> (u8, String) {
    match run(
        words.iter().map(|w| w.to_string()).collect(),
        &mut Options::default(),
    ) {
        Ok(code) => panic!("`ipvlan {}` succeeded ({code:?})", words.join(" ")),
        Err(CliError { msg, code, .. }) => (code, msg),
    }
}

#[test]
fn the_command_line_around_link_refuses_what_it_does_not_know() {
    let cases: &[(&[&str], u8, &str)] = &[
        (
            &["frob"],
            255,
            "Object \"frob\" is unknown, try \"ipvlan help\"",
        ),
        (
            &["link", "frobnicate"],
            255,
            "Command \"frobnicate\" is unknown",
        ),
        (&["-x", "link"], 255, "Option \"-x\" is unknown"),
        (&["--socket"], 255, "--socket needs a path"),
        (&[], 255, "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["-d"], 255, "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (
            &["daemon", "--bogus"],
            255,
            "daemon: unknown option \"--bogus\"",
        ),
        (&["daemon", "--socket"], 255, "--socket needs a path"),
        (
            &["daemon", "--state-dir"],
            255,
            "--state-dir needs a directory",
        ),
        (
            &["daemon", "--datapath", "kernel"],
            255,
            "--datapath: \"kernel\" is not one of auto, bpf, bpf-tc, user",
        ),
        (&["daemon", "--datapath"], 255, "--datapath needs auto"),
        (&["daemon", "--bpffs"], 255, "--bpffs needs a directory"),
    ];
    for &(words, code, needle) in cases {
        let (got, msg) = whole(words);
        assert_eq!(got, code, "`ipvlan {}`: {msg}", words.join(" "));
        assert!(
            msg.contains(needle),
            "`ipvlan {}`: {needle:?} not in {msg:?}",
            words.join(" ")
        );
    }
}

#[test]
fn a_command_that_parses_goes_to_the_socket() {
    let socket = absent_socket();
    let socket = socket.to_str().unwrap();
    for words in [
        &["--socket", socket, "l"][..],
        &["--socket", socket, "-j", "li", "sh"],
        &["-d", "-s", "--socket", socket, "link", "show", "dev", "s1"],
        &[
            "--socket", socket, "lin", "a", "link", "m0", "s1", "type", "ipvlan", "mo", "l2",
        ],
        &["--socket", socket, "link", "del", "s1"],
    ] {
        let (code, msg) = whole(words);
        assert_eq!(code, 1, "`ipvlan {}`: {msg}", words.join(" "));
        assert!(
            msg.contains("cannot reach the ipvlan daemon") && msg.contains(socket),
            "`ipvlan {}`: {msg}",
            words.join(" ")
        );
    }
}

/// A slave as a daemon shows it, with `attachment`.
fn shown(attachment: Option<Attachment>) -> LinkView {
    serde_json::from_value(json!({
        "name": "ipvl0", "current_name": "eth0", "master": "m0", "mode": "l2",
        "flag": "bridge", "id": 1, "mtu": 1500, "mac": "02:00:00:00:00:01",
        "netns": "c0", "ifindex": 7, "up": true, "noarp": false, "carrier": true,
        "spoofchk": false, "backend": "veth", "datapath": "bpf-tcx",
        "addresses": ["192.0.2.11"], "attachment": attachment, "conflicts": [],
        "stats": {"rx_packets": 0, "rx_bytes": 0, "rx_multicast": 0, "tx_packets": 0,
                  "tx_bytes": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0,
                  "drops": [], "address_conflicts": 0}
    }))
    .unwrap()
}

#[test]
fn details_name_the_container_a_plugin_made_the_slave_for() {
    let a = Attachment {
        network: "net1".into(),
        container_id: "c0ffee".into(),
        ifname: "eth0".into(),
    };
    let details = Options {
        details: true,
        ..Options::default()
    };
    let out = render(&shown(Some(a.clone())), &details);
    let line = out.lines().find(|l| l.contains("ipvlan  mode")).unwrap();
    assert!(line.ends_with(" attachment net1/c0ffee/eth0"), "{out}");
    assert!(!render(&shown(Some(a)), &Options::default()).contains("attachment"));
    assert!(!render(&shown(None), &details).contains("attachment"));
}

/// `ipvlan WORDS` as help: what it prints on stdout (exit 0), or why it is not help.
fn help_of(words: &[&str]) -> String {
    let (code, msg) = whole(words);
    assert_eq!(
        code,
        0,
        "`ipvlan {}` is help (exit 0): {msg}",
        words.join(" ")
    );
    msg
}

#[test]
fn every_subcommand_answers_help_before_acting() {
    let link_usage = "Usage: ipvlan link add link DEVICE";
    // No socket, no root, no devices here: a command that acted would fail, not print help.
    let cases: &[(&[&str], &str)] = &[
        (&["help"], "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["-h"], "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["--help"], "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["-help"], "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["-j", "-help"], "Usage: ipvlan [ OPTIONS ] OBJECT"),
        (&["demo", "--help"], "Usage: ipvlan demo"),
        (&["demo", "-h"], "Usage: ipvlan demo"),
        (&["demo", "help"], "Usage: ipvlan demo"),
        (&["matrix", "--help"], "Usage: ipvlan matrix"),
        (&["matrix", "help"], "Usage: ipvlan matrix"),
        (&["bench-forward", "--help"], "Usage: ipvlan bench-forward"),
        (
            &["bench-forward", "tap:x", "-h"],
            "Usage: ipvlan bench-forward",
        ),
        (&["daemon", "--help"], "Usage: ipvlan daemon"),
        (&["daemon", "help"], "Usage: ipvlan daemon"),
        (&["daemon", "-h"], "Usage: ipvlan daemon"),
        (
            &["daemon", "--datapath", "user", "--help"],
            "Usage: ipvlan daemon",
        ),
        (&["link", "help"], link_usage),
        (&["link", "--help"], link_usage),
        (&["link", "-h"], link_usage),
        (&["link", "add", "help"], link_usage),
        (&["link", "add", "--help"], link_usage),
        (&["link", "add", "link", "m0", "s1", "-h"], link_usage),
        (&["link", "set", "help"], link_usage),
        (&["link", "set", "s1", "--help"], link_usage),
        (&["link", "del", "help"], link_usage),
        (&["link", "delete", "-h"], link_usage),
        (&["link", "show", "help"], link_usage),
        (&["link", "show", "--help"], link_usage),
        (&["-d", "link", "show", "dev", "s1", "-h"], link_usage),
        // Help in every position, also where a value is expected: nothing starts (a daemon on
        // a state directory called "-h", a demo) and nothing is created (a pcap file "-h").
        (&["daemon", "--state-dir", "-h"], "Usage: ipvlan daemon"),
        (&["daemon", "--socket", "--help"], "Usage: ipvlan daemon"),
        (
            &["daemon", "--metrics-listen", "-h"],
            "Usage: ipvlan daemon",
        ),
        (&["demo", "now", "-h"], "Usage: ipvlan demo"),
        (&["matrix", "l2", "--help"], "Usage: ipvlan matrix"),
        (
            &["monitor", "drops", "dev", "-h"],
            "Usage: ipvlan [ -j ] monitor",
        ),
        (
            &["monitor", "drops", "--pcap", "--help"],
            "Usage: ipvlan [ -j ] monitor",
        ),
        (&["monitor", "-h", "drops"], "Usage: ipvlan [ -j ] monitor"),
        (&["metrics", "--openmetrics", "-h"], "Usage: ipvlan metrics"),
    ];
    for &(words, starts) in cases {
        let out = help_of(words);
        assert!(
            out.starts_with(starts),
            "`ipvlan {}`: {starts:?} is not how {out:?} starts",
            words.join(" ")
        );
    }
    // `link help` is the link object's part of the usage, whole.
    let link = help_of(&["link", "help"]);
    assert!(link.contains("ipvlan link delete") && link.contains("FLAGS: bridge"));
    assert!(!link.contains("ipvlan daemon"), "{link}");
}

/// What `ip link add type ipvlan help` prints (iproute2 6.1, `ip/iplink_ipvlan.c`
/// `ipvlan_explain`), byte for byte.
const IPROUTE2_IPVLAN_HELP: &str = "Usage: ... ipvlan [ mode MODE ] [ FLAGS ]

MODE: l3 | l3s | l2
FLAGS: bridge | private | vepa
(first values are the defaults if nothing is specified).";

#[test]
fn type_ipvlan_help_prints_what_iproute2_prints() {
    for words in [
        &["link", "add", "type", "ipvlan", "help"][..],
        &["link", "add", "link", "m0", "s1", "type", "ipvlan", "help"],
        &[
            "link", "add", "link", "m0", "s1", "type", "ipvlan", "mode", "l2", "help",
        ],
        &["link", "add", "type", "ipvlan", "he"],
        &["link", "set", "s1", "type", "ipvlan", "help"],
        // `-h` and `--help` too, as everywhere else (iproute2 knows only `help` there).
        &["link", "set", "s1", "type", "ipvlan", "mode", "l2", "-h"],
        &[
            "link", "add", "link", "m0", "s1", "type", "ipvlan", "--help",
        ],
    ] {
        assert_eq!(
            help_of(words),
            IPROUTE2_IPVLAN_HELP,
            "`ipvlan {}`",
            words.join(" ")
        );
    }
}

#[test]
fn type_ipvlan_help_matches_the_local_iproute2_where_there_is_one() {
    // The local `ip` prints its text even without the kernel driver; without `ip` (a build
    // machine), the constant above stands.
    let Ok(o) = std::process::Command::new("ip")
        .args(["link", "add", "type", "ipvlan", "help"])
        .output()
    else {
        return;
    };
    let theirs = String::from_utf8_lossy(&o.stderr);
    if theirs.contains("ipvlan [ mode MODE ] [ FLAGS ]") {
        assert_eq!(theirs.trim_end(), IPROUTE2_IPVLAN_HELP);
    }
}

#[test]
fn version_prints_the_tool_and_its_version_and_succeeds() {
    let want = format!("ipvlan utility, ipvlan-rs {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(version_line(), want);
    for opt in ["-V", "-Version", "--Version", "-Ver", "--V"] {
        let r = run(vec![opt.into(), "link".into()], &mut Options::default());
        assert!(matches!(r, Ok(ExitCode::SUCCESS)), "`ipvlan {opt}`");
    }
    // Lower case is not the version (iproute2's matching is case-sensitive).
    let (code, msg) = whole(&["-v"]);
    assert_eq!(code, 255, "{msg}");
}

#[test]
fn options_match_as_iproute2_matches_them() {
    let parsed = |words: &[&str]| {
        let mut o = Options::default();
        // `link help`: parsed up to the object, then help; no socket is needed.
        let mut args: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        args.extend(["link".into(), "help".into()]);
        let r = run(args, &mut o);
        assert!(matches!(r, Err(CliError { code: 0, .. })), "{words:?}");
        o
    };
    let o = parsed(&["-d", "-s", "-j", "-p", "-br"]);
    assert!(o.details && o.stats && o.json && o.pretty && o.brief);
    let o = parsed(&["-details", "-statistics", "-json", "-pretty", "-brief"]);
    assert!(o.details && o.stats && o.json && o.pretty && o.brief);
    let o = parsed(&["--det", "--stats", "--js", "--pre", "--bri"]);
    assert!(o.details && o.stats && o.json && o.pretty && o.brief);
    // `-b` is not enough for -brief (iproute2 keeps it for -batch).
    let (code, msg) = whole(&["-b", "link"]);
    assert_eq!(
        (code, msg.contains("Option \"-b\" is unknown")),
        (255, true)
    );
}

#[test]
fn commands_without_arguments_refuse_some() {
    let (code, msg) = whole(&["demo", "now"]);
    assert_eq!(code, 255);
    assert!(
        msg.contains("Garbage instead of arguments \"now\""),
        "{msg}"
    );
    assert!(msg.contains("Usage: ipvlan demo"), "{msg}");
    let (code, _) = whole(&["matrix", "l2"]);
    assert_eq!(code, 255);
}

/// A fixed set of slaves and ports covering every key of the JSON schema: a veth slave made
/// for a container, renamed, in a namespace, on the eBPF path, with traffic and drops; a TAP
/// slave in the daemon's namespace, down, l3 private, guarded, with a conflict; and a port
/// with drops of its own.
fn golden_set() -> (Vec<LinkView>, Vec<crate::proto::PortView>) {
    let links = serde_json::from_value(json!([
        {
            "name": "ipvl0", "current_name": "eth0", "master": "m0", "mode": "l2",
            "flag": "bridge", "id": 1, "mtu": 1500, "mac": "02:00:00:00:00:01",
            "netns": "c0", "ifindex": 7, "up": true, "noarp": false, "carrier": true,
            "spoofchk": false, "router": false, "backend": "veth", "queues": 0,
            "datapath": "bpf-tcx", "host_end": "ipvh4-1",
            "hostreach": true, "host_device": "ipvlh4",
            "addresses": ["192.0.2.11", "2001:db8:1::11"],
            "attachment": {"network": "net1", "containerID": "c0ffee", "ifname": "eth0"},
            "conflicts": [],
            "stats": {"rx_packets": 12, "rx_bytes": 1180, "rx_multicast": 3,
                      "tx_packets": 10, "tx_bytes": 980, "tx_errors": 1, "rx_dropped": 2,
                      "tx_dropped": 1,
                      "drops": [{"direction": "rx", "reason": "receiver_down", "count": 2},
                                {"direction": "tx", "reason": "spoofed_source", "count": 1}],
                      "address_conflicts": 0}
        },
        {
            "name": "ipvl1", "current_name": "ipvl1", "master": "m0", "mode": "l3",
            "flag": "private", "id": 2, "mtu": 1400, "mac": "02:00:00:00:00:01",
            "netns": null, "ifindex": 9, "up": false, "noarp": false, "carrier": true,
            "spoofchk": true, "router": true, "backend": "tap", "queues": 2,
            "datapath": "user", "addresses": ["192.0.2.12"],
            "conflicts": [{"address": "192.0.2.11", "owner": "ipvl0"}],
            "stats": {"rx_packets": 0, "rx_bytes": 0, "rx_multicast": 0, "tx_packets": 0,
                      "tx_bytes": 0, "tx_errors": 0, "rx_dropped": 0, "tx_dropped": 0,
                      "drops": [], "address_conflicts": 1}
        }
    ]))
    .unwrap();
    let ports = serde_json::from_value(json!([
        {"master": "m0", "drops": [{"direction": "port", "reason": "backlog_full", "count": 4}]}
    ]))
    .unwrap();
    (links, ports)
}

/// `ipvlan -j -p -d -s link show` of [`golden_set`] is `tests/golden/link_show.json`, byte for
/// byte: a change to the schema must be made there too, on purpose (and raise
/// `schema_version` if it removes, renames or retypes a key). `UPDATE_GOLDEN=1` rewrites the
/// file.
#[test]
fn json_link_show_matches_the_golden_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/link_show.json");
    let (links, ports) = golden_set();
    let opts = Options {
        details: true,
        stats: true,
        json: true,
        pretty: true,
        ..Options::default()
    };
    let got = format!("{}\n", json::link_show(&links, &ports, &opts));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &got).unwrap();
    }
    let want = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        got, want,
        "the JSON schema changed: if on purpose, rerun with UPDATE_GOLDEN=1 and document it"
    );
    // Compact (no -p) is the same document on one line.
    let compact = json::link_show(
        &links,
        &ports,
        &Options {
            pretty: false,
            ..opts
        },
    );
    assert!(!compact.contains('\n'));
    assert_eq!(
        serde_json::from_str::<Value>(&compact).unwrap(),
        serde_json::from_str::<Value>(&want).unwrap()
    );
}

#[test]
fn json_leaves_out_linkinfo_without_d_and_stats_without_s_as_iproute2_does() {
    let (links, ports) = golden_set();
    let plain: Value = serde_json::from_str(&json::link_show(
        &links,
        &ports,
        &Options {
            json: true,
            ..Options::default()
        },
    ))
    .unwrap();
    assert_eq!(plain["schema_version"], 1);
    assert!(plain.get("ports").is_none(), "{plain}");
    let l = &plain["links"][0];
    for key in ["linkinfo", "stats64"] {
        assert!(l.get(key).is_none(), "{key} without -d/-s: {l}");
    }
    for key in ["drops", "address_conflicts"] {
        assert!(l["ipvlan_rs"].get(key).is_none(), "{key} without -s: {l}");
    }
    assert_eq!(l["ifname"], "eth0");
    assert_eq!(l["link"], "m0");
    assert_eq!(l["ipvlan_rs"]["name"], "ipvl0");
    // Absent values are null, not missing keys.
    let tap = &plain["links"][1]["ipvlan_rs"];
    for key in ["netns", "host_end", "attachment"] {
        assert!(tap.get(key).is_some_and(Value::is_null), "{key}: {tap}");
    }
}

#[test]
fn brief_prints_one_line_per_slave_as_ip_br_link() {
    let (links, ports) = golden_set();
    assert_eq!(
        render_brief(&links[0]),
        "eth0@m0          UP             02:00:00:00:00:01 <BROADCAST,MULTICAST,UP,LOWER_UP> "
    );
    assert_eq!(
        render_brief(&links[1]),
        "ipvl1@m0         DOWN           02:00:00:00:00:01 <BROADCAST,MULTICAST> "
    );
    let brief: Value = serde_json::from_str(&json::link_show(
        &links,
        &ports,
        &Options {
            json: true,
            brief: true,
            ..Options::default()
        },
    ))
    .unwrap();
    assert_eq!(
        brief,
        json!({"schema_version": 1, "links": [
            {"link": "m0", "ifname": "eth0", "operstate": "UP",
             "address": "02:00:00:00:00:01", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]},
            {"link": "m0", "ifname": "ipvl1", "operstate": "DOWN",
             "address": "02:00:00:00:00:01", "flags": ["BROADCAST", "MULTICAST"]}
        ]})
    );
}

#[test]
fn errors_under_j_are_one_json_line_with_kind_and_exit_code() {
    let line = json::error_line("Error: Cannot find device \"s9\"", "not_found", 2);
    assert!(!line.contains('\n'));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        v,
        json!({"schema_version": 1, "error": {"kind": "not_found",
               "message": "Cannot find device \"s9\"", "exit_code": 2}})
    );
    // Every error the command line makes has a documented kind.
    let socket = absent_socket();
    for words in [
        &["-j", "frob"][..],
        &[
            "-j", "link", "add", "link", "m0", "s1", "type", "ipvlan", "mode", "l4",
        ],
        &["-j", "link", "add", "s1", "type", "ipvlan"],
        &["-j", "--socket", socket.to_str().unwrap(), "link", "show"],
    ] {
        let r = run(
            words.iter().map(|w| w.to_string()).collect(),
            &mut Options::default(),
        );
        let Err(e) = r else {
            panic!("`ipvlan {}` succeeded", words.join(" "))
        };
        assert!(json::ERROR_KINDS.contains(&e.kind), "{}", e.kind);
    }
    let note: Value = serde_json::from_str(&json::note_line("warning: it is late")).unwrap();
    assert_eq!(
        note,
        json!({"schema_version": 1, "note": {"level": "warning", "message": "it is late"}})
    );
}

// ---------------------------------------------------------------- ipvtap and `address`

/// The request `ipvlan address WORDS` makes, or its refusal (as [`link`]).
fn address(words: &str) -> Result<Value, (u8, String)> {
    let words: Vec<String> = words.split_whitespace().map(String::from).collect();
    match parse_address(&words) {
        Ok(req) => Ok(without_nulls(serde_json::to_value(&req).unwrap())),
        Err(CliError { msg, code, .. }) => Err((code, msg)),
    }
}

#[test]
fn type_ipvtap_makes_an_ipvtap_with_its_owner() {
    assert_eq!(
        link("add link m0 name vmtap0 type ipvtap").unwrap(),
        json!({"cmd": "link_add", "master": "m0", "name": "vmtap0", "backend": "ipvtap"})
    );
    assert_eq!(
        link("add link m0 vmtap0 type ipvtap mode l3 private user 1000 group 100").unwrap(),
        json!({"cmd": "link_add", "master": "m0", "name": "vmtap0", "mode": "l3",
               "flag": "private", "backend": "ipvtap",
               "tap_owner": {"user": 1000, "group": 100}})
    );
    // Before `type` too, and the port's mode changed through an ipvtap as through any slave.
    assert_eq!(
        link("add link m0 vmtap0 user 0 type ipvtap").unwrap()["tap_owner"],
        json!({"user": 0})
    );
    assert_eq!(
        link("set dev vmtap0 type ipvtap mode l2").unwrap(),
        json!({"cmd": "link_set", "name": "vmtap0", "mode": "l2", "flag": "bridge"})
    );
    // Its own help.
    let (code, msg) = link("add type ipvtap help").unwrap_err();
    assert_eq!(code, 0);
    assert!(
        msg.contains("type ipvtap [ mode MODE ]") && msg.contains("host_dev_name"),
        "{msg}"
    );
    // `user`/`group` belong to ipvtap: with type ipvlan they are names.
    assert!(link("add link m0 s1 user 1 type ipvlan").is_err());
}

#[test]
fn address_takes_iproute2s_grammar() {
    let want = |cmd: &str, a: &str, len: Option<u8>| {
        let mut r = json!({"cmd": cmd, "dev": "vmtap0", "address": a});
        if let Some(l) = len {
            r["prefix_len"] = json!(l);
        }
        r
    };
    for (words, cmd, a, len) in [
        (
            "add 192.0.2.50/24 dev vmtap0",
            "address_add",
            "192.0.2.50",
            Some(24),
        ),
        ("a 192.0.2.50 dev vmtap0", "address_add", "192.0.2.50", None),
        (
            "add dev vmtap0 local 2001:db8::5/64",
            "address_add",
            "2001:db8::5",
            Some(64),
        ),
        (
            "del 192.0.2.50/24 dev vmtap0",
            "address_del",
            "192.0.2.50",
            Some(24),
        ),
        (
            "delete 2001:db8::5 dev vmtap0",
            "address_del",
            "2001:db8::5",
            None,
        ),
        ("d 192.0.2.50 dev vmtap0", "address_del", "192.0.2.50", None),
    ] {
        assert_eq!(address(words).unwrap(), want(cmd, a, len), "{words}");
    }
    for (words, code, needle) in [
        ("add 192.0.2.50/24", 255, "\"dev\" argument is required"),
        ("add dev vmtap0", 255, "an address is required"),
        (
            "add 192.0.2.500 dev vmtap0",
            1,
            "any valid prefix is expected rather than \"192.0.2.500\"",
        ),
        ("add 192.0.2.5/33 dev vmtap0", 1, "any valid prefix"),
        ("add 2001:db8::5/129 dev vmtap0", 1, "any valid prefix"),
        ("add 192.0.2.5 192.0.2.6 dev vmtap0", 255, "is a garbage"),
        ("flush dev vmtap0", 255, "Command \"flush\" is unknown"),
        (
            "show dev vmtap0",
            255,
            "\"ipvlan link show\" lists every slave's addresses",
        ),
        ("", 255, "give \"add\" or \"del\""),
        (
            "help",
            0,
            "ipvlan address { add | del } ADDR[/LEN] dev NAME",
        ),
    ] {
        match address(words) {
            Ok(r) => panic!("`ipvlan address {words}` accepted: {r}"),
            Err((got, msg)) => {
                assert_eq!(got, code, "`ipvlan address {words}`: {msg}");
                assert!(msg.contains(needle), "`ipvlan address {words}`: {msg:?}");
            }
        }
    }
}
