//! The deployment files, checked without a cluster: every YAML document under
//! `deploy/kubernetes/` parses (read as kubectl reads it: YAML to JSON), the DaemonSet gives the
//! node agent what `entrypoint.sh` uses (host network, privileged, a volume behind each path,
//! the plugin landing in the host's `/opt/cni/bin`, the socket at the same path on the host
//! and in the pod), and the CNI configurations — the NetworkAttachmentDefinition's and
//! `deploy/cni/ipvlan-rs.conflist` — are accepted by the plugin itself: its `VERSION` answer
//! lists their `cniVersion` and its own parser takes them. Needs no root.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_ipvlan-rs");

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every document of every `*.yaml`/`*.yml` under `deploy/kubernetes/`, as JSON, with the file
/// it came from.
fn manifests() -> Vec<(String, Value)> {
    let dir = deploy().join("kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let v = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{name}, document {i}: not YAML a kubelet reads: {e}"));
            if v.is_null() {
                continue; // an empty document (a trailing `---`)
            }
            docs.push((name.clone(), v));
        }
    }
    docs
}

fn of_kind(docs: &[(String, Value)], kind: &str) -> Vec<Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d.clone())
        .collect()
}

/// The node agent's script, without comments: what it runs.
fn entrypoint() -> String {
    std::fs::read_to_string(deploy().join("kubernetes/entrypoint.sh"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The absolute paths the entrypoint names.
fn entrypoint_paths() -> Vec<String> {
    entrypoint()
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .filter(|w| w.starts_with('/'))
        .map(str::to_owned)
        .collect()
}

/// The word after `flag` in the entrypoint (e.g. the daemon's `--socket`).
fn entrypoint_arg(flag: &str) -> Option<String> {
    let text = entrypoint();
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .iter()
        .position(|w| *w == flag)
        .and_then(|i| words.get(i + 1))
        .map(|w| w.to_string())
}

/// The socket the daemon listens on: the entrypoint's `--socket`, else the daemon's default.
fn daemon_socket() -> String {
    entrypoint_arg("--socket").unwrap_or_else(|| ipvlan::proto::DEFAULT_SOCKET.to_owned())
}

/// `path` lies at or under directory `dir` (whole components).
fn under(path: &str, dir: &str) -> bool {
    Path::new(path).starts_with(dir)
}

/// The node agent's pod: the DaemonSet's pod spec and its (only) container.
fn agent(docs: &[(String, Value)]) -> (Value, Value) {
    let sets = of_kind(docs, "DaemonSet");
    assert_eq!(sets.len(), 1, "one DaemonSet: {sets:?}");
    let pod = sets[0]["spec"]["template"]["spec"].clone();
    let containers = pod["containers"].as_array().unwrap().clone();
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    (pod, containers[0].clone())
}

/// Where a path inside the container is on the host, through the container's hostPath mounts.
fn host_path(pod: &Value, container: &Value, path: &str) -> Option<String> {
    let m = container["volumeMounts"]
        .as_array()?
        .iter()
        .filter(|m| m["mountPath"].as_str().is_some_and(|mp| under(path, mp)))
        .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))?;
    let mount_path = m["mountPath"].as_str()?;
    let volume = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == m["name"])?;
    let host = volume["hostPath"]["path"].as_str()?;
    let rest = Path::new(path).strip_prefix(mount_path).ok()?;
    if rest.as_os_str().is_empty() {
        return Some(host.to_owned());
    }
    Some(Path::new(host).join(rest).display().to_string())
}

/// The plugin's `VERSION` answer to a configuration of `cni_version` (CNI spec, "VERSION").
fn supported_versions(cni_version: &str) -> Vec<String> {
    let out = ipvlan_testkit::run_with_input(
        Command::new(PLUGIN).env("CNI_COMMAND", "VERSION"),
        json!({ "cniVersion": cni_version }).to_string().as_bytes(),
    );
    assert!(out.status.success(), "VERSION: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// What a runtime checks before running the plugin with `conf` (one network configuration,
/// as the plugin gets it on stdin), and what the plugin itself accepts.
fn check_plugin_conf(what: &str, conf: &Value) {
    assert_eq!(conf["type"], "ipvlan-rs", "{what}: type");
    assert!(conf["name"].is_string(), "{what}: a network needs a name");
    let version = conf["cniVersion"].as_str().unwrap();
    let supported = supported_versions(version);
    assert!(
        supported.iter().any(|s| s == version),
        "{what}: cniVersion {version} is not among the plugin's {supported:?}"
    );
    let parsed = ipvlan_cni::conf::NetConf::parse(conf.to_string().as_bytes());
    assert!(
        parsed.is_ok(),
        "{what}: the plugin refuses its configuration: {:?}",
        parsed.err()
    );
    assert!(
        conf["ipam"]["type"].is_string(),
        "{what}: addresses come from an IPAM plugin"
    );
    // The plugin asks the daemon through this socket: the one the node agent listens on.
    let socket = conf["socket"]
        .as_str()
        .unwrap_or(ipvlan::proto::DEFAULT_SOCKET);
    assert_eq!(
        socket,
        daemon_socket(),
        "{what}: the plugin's socket is not the daemon's"
    );
}

#[test]
fn every_manifest_is_a_kubernetes_object() {
    let docs = manifests();
    for (file, d) in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(d[key].is_string(), "{file}: no {key}: {d}");
        }
        assert!(
            d["metadata"]["name"].is_string(),
            "{file}: no metadata.name: {d}"
        );
    }
    let kinds: Vec<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"DaemonSet"), "{kinds:?}");
    assert!(kinds.contains(&"NetworkAttachmentDefinition"), "{kinds:?}");
}

#[test]
fn the_daemonset_gives_the_entrypoint_what_it_uses() {
    let docs = manifests();
    let sets = of_kind(&docs, "DaemonSet");
    let (pod, c) = agent(&docs);
    assert_eq!(sets[0]["apiVersion"], "apps/v1");
    // The selector selects the pods it makes (the API server refuses it otherwise).
    let labels = &sets[0]["spec"]["template"]["metadata"]["labels"];
    for (k, v) in sets[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&labels[k], v, "selector label {k}");
    }
    // Masters are the node's NICs; the daemon makes TAPs, nftables rules, eBPF programs.
    assert_eq!(pod["hostNetwork"], true, "hostNetwork");
    assert_eq!(c["securityContext"]["privileged"], true, "privileged");
    // Every mount has its volume.
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mounts = c["volumeMounts"].as_array().unwrap();
    for m in mounts {
        let name = m["name"].as_str().unwrap();
        assert!(volumes.contains(&name), "mount {name} has no volume");
    }
    // Every path the entrypoint uses is the image's own or lies on one of those mounts.
    let containerfile = std::fs::read_to_string(deploy().join("Containerfile")).unwrap();
    let paths = entrypoint_paths();
    assert!(!paths.is_empty());
    for p in &paths {
        if p.starts_with("/usr/") {
            // From the image: the Containerfile puts it there.
            assert!(
                containerfile
                    .lines()
                    .any(|l| l.starts_with("COPY") && l.split_whitespace().last() == Some(p)),
                "the entrypoint runs {p}, which the Containerfile does not install"
            );
            continue;
        }
        assert!(
            host_path(&pod, &c, p).is_some(),
            "the entrypoint uses {p}, on no hostPath mount of the DaemonSet"
        );
    }
    // The image runs the entrypoint, which is a valid shell script.
    assert!(containerfile.contains("COPY deploy/kubernetes/entrypoint.sh"));
    let syntax = Command::new("sh")
        .arg("-n")
        .arg(deploy().join("kubernetes/entrypoint.sh"))
        .output()
        .unwrap();
    assert!(syntax.status.success(), "sh -n entrypoint.sh: {syntax:?}");
    // The plugin lands where kubelet and Multus look for plugins.
    let installed = paths
        .iter()
        .find(|p| p.ends_with("/ipvlan-rs") && !p.starts_with("/usr/"))
        .unwrap();
    assert_eq!(
        host_path(&pod, &c, installed).as_deref(),
        Some("/opt/cni/bin/ipvlan-rs")
    );
    // The plugin, run on the host, finds the daemon's socket at the same path as the daemon.
    let socket = daemon_socket();
    assert_eq!(
        host_path(&pod, &c, &socket).as_deref(),
        Some(socket.as_str()),
        "the socket's directory must be the same host path"
    );
    // The state outlives the pod; the eBPF pins are on the host's bpffs (the daemon's default
    // --bpffs) so that forwarding goes on across a restart.
    let state = entrypoint_arg("--state-dir").unwrap();
    assert_eq!(host_path(&pod, &c, &state).as_deref(), Some(state.as_str()));
    // (`ipvlan daemon --help`: --bpffs defaults to /sys/fs/bpf.)
    let bpffs = entrypoint_arg("--bpffs").unwrap_or_else(|| "/sys/fs/bpf".into());
    assert_eq!(host_path(&pod, &c, &bpffs).as_deref(), Some(bpffs.as_str()));
}

#[test]
fn the_network_attachment_is_a_configuration_the_plugin_takes() {
    let docs = manifests();
    let nads = of_kind(&docs, "NetworkAttachmentDefinition");
    assert!(!nads.is_empty());
    for nad in nads {
        let name = nad["metadata"]["name"].as_str().unwrap().to_owned();
        assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1", "{name}");
        // Multus takes `config` as a JSON string: one plugin's configuration or a conflist.
        let text = nad["spec"]["config"].as_str().unwrap();
        let conf: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("NetworkAttachmentDefinition {name}: config: {e}"));
        match conf["plugins"].as_array() {
            Some(plugins) => {
                for p in plugins {
                    check_plugin_conf(&name, &from_list(&conf, p));
                }
            }
            None => check_plugin_conf(&name, &conf),
        }
    }
}

/// One plugin's configuration out of a conflist as libcni hands it over: its own object plus
/// the list's `name` and `cniVersion` (CNI spec, section 3 "Execution of network
/// configurations").
fn from_list(list: &Value, plugin: &Value) -> Value {
    let mut c = plugin.clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    c
}

#[test]
fn the_example_conflist_is_a_configuration_the_plugin_takes() {
    let path = deploy().join("cni/ipvlan-rs.conflist");
    let list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let plugins = list["plugins"].as_array().unwrap();
    assert!(!plugins.is_empty());
    for p in plugins {
        check_plugin_conf("deploy/cni/ipvlan-rs.conflist", &from_list(&list, p));
    }
}

#[test]
fn the_checks_catch_a_configuration_the_plugin_refuses() {
    // The parser the checks rely on does refuse (else the two tests above prove nothing).
    for bad in [
        json!({ "cniVersion": "9.9.9", "name": "n", "type": "ipvlan-rs" }),
        json!({ "cniVersion": "1.0.0", "name": "n", "type": "ipvlan-rs", "mode": "l4" }),
    ] {
        assert!(
            ipvlan_cni::conf::NetConf::parse(bad.to_string().as_bytes()).is_err(),
            "{bad}"
        );
    }
    assert!(!supported_versions("1.0.0").contains(&"9.9.9".to_owned()));
}
