//! `ipvlan demo`: the HOWTO's example (§6) on real devices. In namespaces it creates and always
//! removes, it builds an external host, a master and two l2 slaves moved into ns0 and ns1,
//! configures them exactly as the HOWTO does, shows that everything reaches everything over IPv4
//! and IPv6, and prints the per-slave counters.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

struct Demo {
    tag: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    daemon: Option<Child>,
    /// The demo's own bpffs mount, unmounted at the end.
    bpffs: Option<PathBuf>,
}

fn show(o: &Output) -> String {
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    s
}

impl Demo {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    /// Runs a command, echoing it HOWTO-style; `ns` is the namespace it runs in, if any.
    fn run(&self, ns: Option<&str>, cmd: &str, echo: bool) -> Output {
        if echo {
            match ns {
                Some(n) => println!("  [{n}] $ {cmd}"),
                None => println!("  $ {cmd}"),
            }
        }
        let mut c = match ns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.ns(n), "sh", "-c", cmd]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", cmd]);
                c
            }
        };
        let out = c.output().unwrap_or_else(|e| Output {
            status: std::process::ExitStatus::default(),
            stdout: Vec::new(),
            stderr: format!("cannot run: {e}").into_bytes(),
        });
        if echo && !out.status.success() {
            println!("    failed: {}", show(&out).trim());
        }
        out
    }

    fn must(&self, ns: Option<&str>, cmd: &str) -> Result<(), String> {
        let o = self.run(ns, cmd, true);
        if o.status.success() {
            Ok(())
        } else {
            Err(format!("`{cmd}` failed: {}", show(&o).trim()))
        }
    }

    fn ipvlan(&self, args: &str) -> Result<String, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let sock = self.dir.join("ipvlan.sock");
        println!("  [host] $ ipvlan {args}");
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns("host")])
            .arg(&exe)
            .arg("--socket")
            .arg(&sock)
            .args(args.split_whitespace())
            .output()
            .map_err(|e| e.to_string())?;
        let text = show(&o);
        for l in text.lines() {
            println!("    {l}");
        }
        if o.status.success() {
            Ok(text)
        } else {
            Err(format!("ipvlan {args} failed"))
        }
    }

    fn start_daemon(&mut self) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let sock = self.dir.join("ipvlan.sock");
        let log = std::fs::File::create(self.dir.join("daemon.log")).map_err(|e| e.to_string())?;
        // Its own bpffs, mounted here, outside the mount namespace `ip netns exec` gives the
        // daemon: the eBPF data path's pins live there (and go when the demo unmounts it).
        let bpffs = self.dir.join("bpffs");
        std::fs::create_dir_all(&bpffs).map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&bpffs)
            .status()
            .map_err(|e| e.to_string())?;
        if !mounted.success() {
            return Err(format!("cannot mount bpffs on {}", bpffs.display()));
        }
        self.bpffs = Some(bpffs.clone());
        println!(
            "  [host] $ mount -t bpf bpf {0} && ipvlan daemon --socket {1} --bpffs {0} &",
            bpffs.display(),
            sock.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("host")])
            .arg(&exe)
            .arg("daemon")
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--bpffs")
            .arg(&bpffs)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.daemon = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("the daemon did not start".into())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        println!("\n== cleaning up");
        if let Some(mut c) = self.daemon.take() {
            // The daemon we started, by its PID.
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
        if let Some(b) = self.bpffs.take() {
            let _ = Command::new("umount").arg("-l").arg(&b).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("  removed the demo's namespaces, devices and daemon");
    }
}

pub fn main() -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("ipvlan demo: must run as root (it creates network namespaces and devices)");
        return ExitCode::from(1);
    }
    let tag = format!("ipvdemo{}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("ipvlan demo: {e}");
        return ExitCode::from(1);
    }
    let mut demo = Demo {
        tag,
        dir,
        namespaces: Vec::new(),
        daemon: None,
        bpffs: None,
    };
    match run(&mut demo) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!(
                "ipvlan demo: {e}\n--- daemon log ---\n{}",
                std::fs::read_to_string(demo.dir.join("daemon.log")).unwrap_or_default()
            );
            ExitCode::from(1)
        }
    }
}

fn run(d: &mut Demo) -> Result<bool, String> {
    println!(
        "ipvlan-rs demo — the HOWTO's example (Documentation/networking/ipvlan, §6), without the kernel's ipvlan driver."
    );
    println!(
        "Namespaces: {0}-host (master m0, daemon), {0}-ext (external host/router),",
        d.tag
    );
    println!(
        "            {0}-ns0 and {0}-ns1 (the HOWTO's ns0 and ns1).\n",
        d.tag
    );

    println!("== the host, its NIC (the master m0) and an external router on the wire");
    for n in ["host", "ext", "ns0", "ns1"] {
        let name = d.ns(n);
        d.must(None, &format!("ip netns add {name}"))?;
        d.namespaces.push(name);
    }
    let (host, ext) = (d.ns("host"), d.ns("ext"));
    d.must(
        None,
        &format!(
            "ip -n {host} link add m0 address 02:00:00:00:00:01 type veth peer name e0 netns {ext}"
        ),
    )?;
    d.must(Some("host"), "ip link set lo up && ip link set m0 up")?;
    d.must(Some("ext"), "ip link set lo up && ip link set e0 up && ip addr add 192.0.2.254/24 dev e0 && ip addr add 2001:db8:1::fe/64 dev e0 nodad")?;
    d.start_daemon()?;

    println!("\n== (b) create two ipvlan slaves on m0 in l2 mode");
    d.ipvlan("link add link m0 ipvl0 type ipvlan mode l2")?;
    d.ipvlan("link add link m0 ipvl1 type ipvlan mode l2")?;

    println!("\n== (c) assign the slaves to ns0 and ns1");
    for i in 0..2 {
        d.must(
            Some("host"),
            &format!("ip link set dev ipvl{i} netns {}", d.ns(&format!("ns{i}"))),
        )?;
    }

    println!("\n== (d) configure them inside their namespaces");
    for i in 0..2u8 {
        let ns = format!("ns{i}");
        let n = 11 + i;
        d.must(Some(&ns), &format!("ip link set dev ipvl{i} up"))?;
        d.must(Some(&ns), "ip link set dev lo up")?;
        d.must(
            Some(&ns),
            &format!("ip -4 addr add 192.0.2.{n}/24 dev ipvl{i}"),
        )?;
        d.must(
            Some(&ns),
            &format!("ip -6 addr add 2001:db8:1::{n}/64 dev ipvl{i} nodad"),
        )?;
        d.must(
            Some(&ns),
            &format!("ip -4 route add default via 192.0.2.254 dev ipvl{i}"),
        )?;
    }
    // The daemon learns addresses from rtnetlink; give it a moment before the first ping.
    std::thread::sleep(Duration::from_millis(300));

    println!("\n== reachability (each: 3 pings)");
    let checks = [
        (
            "ns0",
            "192.0.2.12",
            "ns0 → ns1, IPv4 (switched between slaves)",
        ),
        ("ns0", "2001:db8:1::12", "ns0 → ns1, IPv6"),
        ("ns1", "192.0.2.11", "ns1 → ns0, IPv4"),
        ("ns0", "192.0.2.254", "ns0 → external host, IPv4"),
        ("ns1", "2001:db8:1::fe", "ns1 → external host, IPv6"),
        ("ext", "192.0.2.11", "external host → ns0, IPv4"),
        ("ext", "2001:db8:1::12", "external host → ns1, IPv6"),
    ];
    let mut all = true;
    for (from, to, what) in checks {
        let fam = if to.contains(':') { "-6" } else { "-4" };
        let o = d.run(
            Some(from),
            &format!("ping {fam} -c 3 -i 0.2 -W 1 {to}"),
            false,
        );
        let text = show(&o);
        let rtt = text
            .lines()
            .find(|l| l.contains("min/avg/max"))
            .and_then(|l| l.split('=').nth(1))
            .map(|v| format!("rtt min/avg/max/mdev {}", v.trim()))
            .unwrap_or_default();
        let ok = o.status.success();
        all &= ok;
        println!(
            "  {} {what:<45} [{from}] ping {to}  {rtt}",
            if ok { "ok  " } else { "FAIL" }
        );
    }

    println!("\n== what the external host sees: every slave behind the master's one MAC");
    let n = d.run(Some("ext"), "ip neigh show dev e0", true);
    for l in show(&n).lines() {
        println!("    {l}");
    }

    println!("\n== the slaves as the daemon sees them, with per-slave counters");
    let shown = d.ipvlan("-d -s link show")?;
    if let Some(dp) = shown
        .split_whitespace()
        .skip_while(|w| *w != "datapath")
        .nth(1)
    {
        println!(
            "\n  data path: {dp} ({})",
            if dp.starts_with("bpf") {
                "eBPF programs in the kernel switch the frames; the daemon only fills their maps"
            } else {
                "the daemon's userspace workers switch the frames"
            }
        );
    }

    println!(
        "\n{}",
        if all {
            "All checks passed: ns0 and ns1 reach each other and the external host over IPv4 and IPv6."
        } else {
            "Some checks FAILED (see above)."
        }
    );
    Ok(all)
}
