//! The manual pages (`docs/man/*.8`) and the README's code blocks name only commands and options
//! the `ipvlan` CLI has, and the pages are clean roff.
//!
//! Every line that starts with `ipvlan` in a code block (`.EX`/`.EE` or `.nf`/`.fi` in a page,
//! a ```` ``` ```` fence in the README), with its indented continuation lines, is checked against
//! this build's binary, without root and without a daemon:
//! - a synopsis (`[ … ]`, `{ … | … }`, `NAME` placeholders): `ipvlan OBJECT [COMMAND] help`
//!   (and `--help`, `-h`) answers with a usage, and every literal keyword of the line appears in
//!   that usage or in `ipvlan help`; its global options are accepted (`ipvlan -OPT help`);
//! - a concrete command: it parses. Run with `IPVLAN_SOCKET` (and any `--socket`) pointing at a
//!   socket that does not exist, it either succeeds (`ipvlan -V`, `ipvlan matrix`, a `help`)
//!   or fails only because the daemon cannot be reached; `ipvlan daemon …` gets `help` appended
//!   (its options are parsed, nothing is started), `ipvlan demo` is checked by its `help`.
//!
//! The `OPTIONS :=` line of ipvlan(8) lists the global options: each, long and short, is
//! accepted; `MODE :=` and `FLAG :=` list keywords `ipvlan help` names.
//!
//! Commands documented before they are built are listed in [`PLANNED`]: the test fails for a
//! failure not in that list, and for an entry of that list that works (so it cannot go stale).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ipvlan");

/// Documented, but not (yet) in this build: the failures expected, by id (as the test prints
/// them). Empty: everything documented is built. A command documented ahead of its build goes
/// here, and the test says when it works (so the list cannot go stale).
const PLANNED: &[&str] = &[];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The manual pages, by file name.
fn pages() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(root().join("docs/man"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "8"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A line of roff as it reads: font changes and the escapes the pages use removed.
fn unroff(line: &str) -> String {
    let mut s = line.to_owned();
    for (from, to) in [
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
        ("\\-", "-"),
        ("\\(dq", "\""),
        ("\\(em", "-"),
        ("\\&", ""),
        ("\\|", ""),
        ("\\e", "\\"),
    ] {
        s = s.replace(from, to);
    }
    s
}

/// The lines of a page's code blocks (`.EX`/`.EE`, `.nf`/`.fi`), unroffed.
fn roff_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line.split_whitespace().next() {
            Some(".EX") | Some(".nf") => inside = true,
            Some(".EE") | Some(".fi") => {
                inside = false;
                out.push(String::new());
            }
            _ if line.starts_with('.') || line.starts_with('\'') => {}
            _ if inside => out.push(unroff(line)),
            _ => {}
        }
    }
    out
}

/// The lines of the README's shell code blocks, comments removed.
fn readme_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside: Option<bool> = None; // Some(is shell)
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            inside = match inside {
                Some(_) => None,
                None => Some(matches!(
                    rest.trim(),
                    "" | "sh" | "bash" | "console" | "shell"
                )),
            };
            out.push(String::new());
            continue;
        }
        if inside == Some(true) {
            let code = match line.find(" #") {
                Some(i) => &line[..i],
                None if line.trim_start().starts_with('#') => "",
                None => line,
            };
            out.push(code.trim_end().to_owned());
        }
    }
    out
}

/// The `ipvlan …` entries of some code lines: a line that starts with `ipvlan`, with the
/// indented lines that follow it and lines continued by a backslash.
fn entries(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut continued = false;
    for line in lines {
        let trimmed = line.trim();
        let starts = trimmed == "ipvlan" || trimmed.starts_with("ipvlan ");
        if let Some(cur) = current.as_mut() {
            if !starts
                && !trimmed.is_empty()
                && (continued || line.starts_with(char::is_whitespace))
            {
                cur.push(' ');
                cur.push_str(trimmed.trim_end_matches('\\'));
                continued = trimmed.ends_with('\\');
                continue;
            }
            out.push(current.take().unwrap());
        }
        if starts {
            current = Some(trimmed.trim_end_matches('\\').to_owned());
            continued = trimmed.ends_with('\\');
        }
    }
    out.extend(current);
    out.into_iter()
        .map(|e| e.trim_end_matches('&').trim().to_owned())
        .collect()
}

/// The words of an entry, brackets, braces and bars as words of their own, up to the first
/// shell operator outside them (`ipvlan metrics > FILE && mv …` is `ipvlan metrics`).
fn tokens(entry: &str) -> Vec<String> {
    let mut s = String::new();
    for c in entry.chars() {
        if "[]{}|".contains(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    let mut out = Vec::new();
    let mut depth = 0usize;
    for t in s.split_whitespace() {
        match t {
            "[" | "{" => depth += 1,
            "]" | "}" => depth = depth.saturating_sub(1),
            _ if depth == 0
                && (t == "|"
                    || t == "&&"
                    || t == ";"
                    || t.starts_with('>')
                    || t.starts_with('<')
                    || t.starts_with("2>")) =>
            {
                break
            }
            _ => {}
        }
        out.push(t.to_owned());
    }
    out
}

/// A placeholder the user replaces: `NAME`, `DEVICE`, `ADDR:`, `…`.
fn placeholder(t: &str) -> bool {
    let core = t.trim_end_matches(':');
    (core.len() >= 2
        && core.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && core
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        || t.contains("...")
        || t.contains('…')
}

fn is_synopsis(toks: &[String]) -> bool {
    toks.iter()
        .any(|t| matches!(t.as_str(), "[" | "]" | "{" | "}" | "|") || placeholder(t))
}

/// A keyword (`link`, `spoofchk`, `l3s`) or an option (`--state-dir`, `-d`).
fn literal(t: &str) -> bool {
    let body = t.trim_start_matches('-');
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The object and command a synopsis is about (`link add`, `monitor drops`, `daemon`), after
/// the global options.
fn command_path(toks: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut i = 1;
    let mut depth = 0usize;
    while i < toks.len() {
        let t = toks[i].as_str();
        match t {
            "[" => depth += 1,
            "]" => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            _ if t.starts_with('-') && path.is_empty() => {
                if t == "--socket" {
                    i += 1;
                }
            }
            _ if literal(t) && !t.starts_with('-') && path.len() < 2 => path.push(t.to_owned()),
            _ => break,
        }
        if depth == 0 && path.len() == 2 {
            break;
        }
        if depth == 0 && !path.is_empty() && !toks.get(i + 1).is_some_and(|n| literal(n)) {
            break;
        }
        i += 1;
    }
    path
}

/// The global options a synopsis shows before its object (`[ -d ] [ -j [ -p ] ]`).
fn global_options(toks: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for t in &toks[1..] {
        match t.as_str() {
            "[" | "]" | "|" => {}
            o if o.starts_with('-') => out.push(o.to_owned()),
            _ => break,
        }
    }
    out
}

/// Runs the binary, killed after 30 s (a check must never hang, nor start anything).
struct Runner {
    dir: PathBuf,
}

impl Runner {
    fn new() -> Runner {
        let dir = std::env::temp_dir().join(format!("ipvlan-docs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Not a directory: whatever wants a temporary directory of its own fails at once
        // (`ipvlan demo` from before it answered `help`).
        std::fs::write(dir.join("not-a-dir"), "").unwrap();
        Runner { dir }
    }

    fn unreachable(&self) -> PathBuf {
        self.dir.join("no-daemon.sock")
    }

    fn run(&self, args: &[String]) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(&self.dir)
            .env("IPVLAN_SOCKET", self.unreachable())
            .env("TMPDIR", self.dir.join("not-a-dir"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("`ipvlan {}` did not end within 30 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A usage printed on request: exit 0 (or 255, iproute2's code for its usages) and no error.
fn is_help(o: &Output) -> bool {
    let t = text(o);
    matches!(code(o), 0 | 255)
        && t.contains("Usage")
        && !t.to_lowercase().contains("unknown")
        && !t.contains("Error")
        && !t.contains("cannot reach")
}

fn words(t: &str) -> BTreeSet<String> {
    t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What failed, by id, with the evidence.
type Failures = BTreeMap<String, String>;

struct Checker {
    runner: Runner,
    top_help: BTreeSet<String>,
    failures: Failures,
    /// Help answers already asked for, by command path.
    helps: BTreeMap<Vec<String>, Option<String>>,
}

impl Checker {
    fn new() -> Checker {
        let runner = Runner::new();
        let top = runner.run(&strs(&["help"]));
        assert!(is_help(&top), "`ipvlan help`: {}", text(&top));
        Checker {
            top_help: words(&text(&top)),
            runner,
            failures: Failures::new(),
            helps: BTreeMap::new(),
        }
    }

    fn fail(&mut self, id: String, why: String) {
        self.failures.entry(id).or_insert(why);
    }

    /// `ipvlan PATH help`, `--help` and `-h`: the usage text, or `None` (a failure recorded).
    fn help(&mut self, path: &[String]) -> Option<String> {
        if let Some(h) = self.helps.get(path) {
            return h.clone();
        }
        let mut answer = Some(String::new());
        for word in ["help", "--help", "-h"] {
            let mut args = path.to_vec();
            args.push(word.into());
            let o = self.runner.run(&args);
            if is_help(&o) {
                answer.as_mut().unwrap().push_str(&text(&o));
            } else {
                self.fail(
                    format!("help: {}", path.join(" ")),
                    format!(
                        "`ipvlan {}` exited {} without a usage: {}",
                        args.join(" "),
                        code(&o),
                        text(&o).trim()
                    ),
                );
                answer = None;
            }
        }
        self.helps.insert(path.to_vec(), answer.clone());
        answer
    }

    /// A global option (`-d`, `-details`, `--socket PATH`) is accepted.
    fn option(&mut self, opt: &str) {
        let mut args = vec![opt.to_owned()];
        if opt == "--socket" {
            args.push(self.runner.unreachable().display().to_string());
        }
        args.push("help".into());
        let o = self.runner.run(&args);
        if code(&o) != 0 || text(&o).trim().is_empty() {
            self.fail(
                format!("option: {opt}"),
                format!(
                    "`ipvlan {}` exited {}: {}",
                    args.join(" "),
                    code(&o),
                    text(&o).trim()
                ),
            );
        }
    }

    fn synopsis(&mut self, entry: &str, toks: &[String]) {
        for o in global_options(toks) {
            self.option(&o);
        }
        let path = command_path(toks);
        assert!(!path.is_empty(), "no command in the synopsis `{entry}`");
        // Without its own usage (a failure already), against `ipvlan help` alone.
        let help = self.help(&path).unwrap_or_default();
        let known: BTreeSet<String> = words(&help).union(&self.top_help).cloned().collect();
        for t in &toks[1..] {
            if !literal(t) || global_options(toks).contains(t) {
                continue;
            }
            if !known.contains(t.as_str()) {
                self.fail(
                    format!("keyword: {}: {t}", path.join(" ")),
                    format!(
                        "`{entry}` names `{t}`, which neither `ipvlan {} help` nor `ipvlan help` mentions",
                        path.join(" ")
                    ),
                );
            }
        }
    }

    fn concrete(&mut self, entry: &str, toks: &[String]) {
        let mut args: Vec<String> = toks[1..].to_vec();
        // Never the real daemon's socket.
        for i in 1..args.len() {
            if args[i - 1] == "--socket" {
                args[i] = self.runner.unreachable().display().to_string();
            }
        }
        let mut object = None;
        let mut i = 0;
        while i < args.len() {
            if args[i] == "--socket" {
                i += 2;
            } else if args[i].starts_with('-') {
                i += 1;
            } else {
                object = Some(args[i].clone());
                break;
            }
        }
        let asks_help = args[i.min(args.len())..]
            .iter()
            .any(|a| matches!(a.as_str(), "help" | "--help" | "-h"));
        let id = format!("run: {entry}");
        match object.as_deref() {
            Some("demo") => {
                self.help(&strs(&["demo"]));
            }
            Some("daemon") => {
                args.push("help".into());
                let o = self.runner.run(&args);
                if !is_help(&o) {
                    self.fail(
                        id,
                        format!(
                            "`ipvlan {}` exited {} without a usage: {}",
                            args.join(" "),
                            code(&o),
                            text(&o).trim()
                        ),
                    );
                }
            }
            _ if asks_help => {
                let o = self.runner.run(&args);
                if !is_help(&o) {
                    self.fail(
                        id,
                        format!("exited {} without a usage: {}", code(&o), text(&o).trim()),
                    );
                }
            }
            _ => {
                let o = self.runner.run(&args);
                let t = text(&o);
                let unreachable = format!(
                    "cannot reach the ipvlan daemon at {}",
                    self.runner.unreachable().display()
                );
                let parsed = code(&o) == 0 || (code(&o) == 1 && t.contains(&unreachable));
                if !parsed {
                    self.fail(
                        id,
                        format!(
                            "exited {} (a parsed command exits 0, or 1 for the unreachable daemon): {}",
                            code(&o),
                            t.trim()
                        ),
                    );
                }
            }
        }
    }

    fn entry(&mut self, entry: &str) {
        let toks = tokens(entry);
        if is_synopsis(&toks) {
            self.synopsis(entry, &toks);
        } else {
            self.concrete(entry, &toks);
        }
    }

    /// `OPTIONS := { -d[etails] | … }`, `MODE := { … }`: options accepted, keywords known.
    fn definition(&mut self, line: &str) {
        let Some((name, body)) = line.split_once(":=") else {
            return;
        };
        let name = name.trim();
        let toks = tokens(body);
        for t in &toks {
            // Placeholders (`--socket PATH`'s value) are not keywords.
            if matches!(t.as_str(), "[" | "]" | "{" | "}" | "|") || placeholder(t) {
                continue;
            }
            if name == "OPTIONS" {
                // `-d[etails]` is `-d` then `[ etails ]`: both forms.
                if t.starts_with('-') {
                    self.option(t);
                }
            } else if !self.top_help.contains(t.as_str()) {
                self.fail(
                    format!("keyword: {name}: {t}"),
                    format!("`{line}` names `{t}`, which `ipvlan help` does not mention"),
                );
            }
        }
        // The long forms: `-d` + `etails`.
        if name == "OPTIONS" {
            for w in toks.windows(4) {
                if w[0].starts_with('-') && w[1] == "[" && w[3] == "]" {
                    self.option(&format!("{}{}", w[0], w[2]));
                }
            }
        }
    }
}

/// Every `ipvlan …` entry of every page and of the README, with where it is from.
fn all_entries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, text) in pages() {
        for e in entries(&roff_blocks(&text)) {
            out.push((name.clone(), e));
        }
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for e in entries(&readme_blocks(&readme)) {
        out.push(("README.md".into(), e));
    }
    out
}

#[test]
fn every_ipvlan_command_in_the_manual_pages_and_the_readme_exists() {
    let mut c = Checker::new();
    for (_, e) in all_entries() {
        c.entry(&e);
    }
    let ipvlan8 = std::fs::read_to_string(root().join("docs/man/ipvlan.8")).unwrap();
    for line in roff_blocks(&ipvlan8) {
        if line.contains(":=") {
            c.definition(line.trim());
        }
    }
    let planned: BTreeSet<&str> = PLANNED.iter().copied().collect();
    let unexpected: Vec<String> = c
        .failures
        .iter()
        .filter(|(id, _)| !planned.contains(id.as_str()))
        .map(|(id, why)| format!("  {id:?}\n      {why}"))
        .collect();
    let works: Vec<&str> = planned
        .iter()
        .filter(|id| !c.failures.contains_key(**id))
        .copied()
        .collect();
    assert!(
        unexpected.is_empty() && works.is_empty(),
        "{}{}",
        if unexpected.is_empty() {
            String::new()
        } else {
            format!(
                "documented, but the CLI does not have it (fix the page or the CLI; a command still being built goes into PLANNED):\n{}\n",
                unexpected.join("\n")
            )
        },
        if works.is_empty() {
            String::new()
        } else {
            format!("in PLANNED, but works now: remove from PLANNED: {works:?}\n")
        }
    );
}

/// The extraction finds what the pages show, so the check above cannot pass on nothing.
#[test]
fn the_check_sees_the_synopses_and_examples() {
    let all = all_entries();
    let find = |from: &str, e: &str| all.iter().any(|(f, x)| f == from && x == e);
    for (from, e) in [
        ("ipvlan.8", "ipvlan [ OPTIONS ] link { COMMAND | help }"),
        ("ipvlan.8", "ipvlan daemon [ --socket PATH ] [ --state-dir DIR ] [ --datapath { auto | bpf | bpf-tc | user } ] [ --bpffs DIR ] [ --metrics-listen [ADDR:]PORT ]"),
        ("ipvlan.8", "ipvlan link add link DEVICE [ name ] NAME [ mtu MTU ] [ spoofchk { on | off } ] [ backend { veth | tap } ] type ipvlan [ mode MODE ] [ FLAG ] [ hostreach { on | off } ]"),
        ("ipvlan.8", "ipvlan link set dev ipvl0 type ipvlan mode l2 private"),
        ("ipvlan.8", "ipvlan daemon"),
        ("ipvlan-rs.8", "ipvlan -d link show"),
        ("README.md", "ipvlan link add link eth0 ipvl0 type ipvlan mode l2"),
        ("README.md", "ipvlan daemon [--socket PATH] [--state-dir DIR]"),
    ] {
        assert!(find(from, e), "`{e}` not found in {from}: {all:#?}");
    }
    let t = tokens("ipvlan [ -d ] [ -j [ -p ] ] link show [ [ dev ] NAME ]");
    assert_eq!(command_path(&t), ["link", "show"]);
    assert_eq!(global_options(&t), ["-d", "-j", "-p"]);
    let t = tokens("ipvlan [ OPTIONS ] monitor drops [ dev NAME ]");
    assert_eq!(command_path(&t), ["monitor", "drops"]);
    assert_eq!(
        tokens("ipvlan metrics > /tmp/x.prom.$$ && mv /tmp/x.prom.$$ /tmp/x.prom"),
        ["ipvlan", "metrics"]
    );
    assert_eq!(
        tokens("ipvlan -j link show | jq ."),
        ["ipvlan", "-j", "link", "show"]
    );
    let t = tokens("ipvlan daemon [ --socket PATH ]");
    assert_eq!(command_path(&t), ["daemon"]);
    assert!(is_synopsis(&t));
    assert!(!is_synopsis(&tokens("ipvlan -d -s link show dev ipvl0")));
}

/// `groff -man -ww -z`: no warning in any page. groff is Debian's `groff-base` (`.ci/run`
/// installs it); without it this test fails, saying so.
#[test]
fn manual_pages_have_no_groff_warnings() {
    let version = Command::new("groff").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "groff is not installed: the manual pages cannot be checked (Debian: apt-get install groff-base)"
    );
    let pages = pages();
    assert!(pages.len() >= 3, "{pages:?}");
    for (name, _) in &pages {
        let o = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(root().join("docs/man").join(name))
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "groff -man -ww -z docs/man/{name}: {}",
            text(&o)
        );
    }
}

/// Every page a page refers to with `.BR ipvlan… (8)` exists, and each page's `.TH` names it
/// and this version.
#[test]
fn manual_pages_refer_to_pages_that_exist() {
    let pages = pages();
    let names: BTreeSet<String> = pages
        .iter()
        .map(|(n, _)| n.trim_end_matches(".8").to_owned())
        .collect();
    for (file, text) in &pages {
        let name = file.trim_end_matches(".8");
        let th = text.lines().find(|l| l.starts_with(".TH ")).unwrap();
        assert!(
            th.starts_with(&format!(
                ".TH {} 8 ",
                name.to_uppercase().replace('-', "\\-")
            )) || th.starts_with(&format!(".TH {} 8 ", name.to_uppercase())),
            "{file}: {th}"
        );
        let version = format!("\"ipvlan-rs {}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            th.contains(&version),
            "{file}: .TH names another version than {version}: {th}"
        );
        for line in text.lines().filter(|l| l.starts_with(".BR ipvlan")) {
            let target = unroff(
                line.trim_start_matches(".BR ")
                    .split_whitespace()
                    .next()
                    .unwrap(),
            );
            if line.contains("(8)") {
                assert!(
                    names.contains(&target),
                    "{file} refers to {target}(8), which is not in docs/man: {line}"
                );
            }
        }
    }
}
