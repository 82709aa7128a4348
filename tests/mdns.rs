//! mDNS discovery between real `rendermesh node` processes, each in its own network namespace
//! joined by veth pairs to a bridge in a "switch" namespace, so no multicast reaches the host's
//! interfaces. Three nodes share a key and find each other with no static peers; a fourth,
//! holding another key, is seen by all of them, dialled by none and lists nobody.
//!
//! Needs root and iproute2 (`ip netns`, installed by `tests/deps.sh`). As root, or with `CI`
//! set, a missing part fails the test; only a user's run without root skips it (`SKIPPED: …`).
//! Run with `cargo test --test integration mdns:: -- --nocapture` to see the MEASURED line.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Every namespace this test creates starts with this, then the test's pid.
const PREFIX: &str = "rm-";
/// Same-mesh nodes must list each other within this time of the last spawn: a bound that
/// catches a discovery that does not work on a loaded machine; how fast it is, is the
/// MEASURED line (docs/benchmarks.md).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(15);

/// Namespaces and node processes of one run; everything is killed and deleted on drop,
/// also when the test fails half-way.
struct Lab {
    namespaces: Vec<String>,
    nodes: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        // node namespaces first, the switch (bridge) last
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

impl Lab {
    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        // registered first: a half-made namespace is deleted too
        self.namespaces.push(name.to_string());
        ip(&["netns", "add", name])?;
        ip(&["-n", name, "link", "set", "lo", "up"])
    }
}

/// Namespaces left by an earlier run of this test that was killed (its pid is gone).
fn delete_stale_namespaces() {
    let Ok(o) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces need root)".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` (iproute2) is not available: {e}")),
    }
}

/// One node: its namespace and data dir.
struct Node {
    name: String,
    ns: String,
    dir: PathBuf,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// `rendermesh peers --json` inside the node's namespace; the peer ids listed.
    fn peer_ids(&self) -> Option<Vec<String>> {
        let o: Output = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin())
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["peers", "--json"])
            .env("RENDERMESH_LOG", "warn")
            .output()
            .ok()?;
        if !o.status.success() {
            return None;
        }
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        Some(
            rows.as_array()?
                .iter()
                .filter_map(|r| r["peer_id"].as_str().map(str::to_string))
                .collect(),
        )
    }

    /// This node's peer id from mesh.json, waiting up to 20 s.
    fn own_peer_id(&self) -> String {
        let found = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(self.dir.join("mesh.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["peer_id"].as_str().is_some())
        });
        assert!(
            found.is_some(),
            "{} wrote no mesh.json: {}",
            self.name,
            self.log()
        );
        let text = std::fs::read_to_string(self.dir.join("mesh.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["peer_id"].as_str().unwrap().to_string()
    }
}

#[test]
fn nodes_of_one_mesh_find_each_other_by_mdns_and_ignore_another_mesh() {
    if let Some(why) = cannot_run() {
        // as root (and in CI) everything this test needs is there: a skip there is a failure
        assert!(
            !must_run(),
            "the mDNS namespace test cannot run as root or in CI: {why}"
        );
        eprintln!("SKIPPED: mDNS namespace test: {why}");
        return;
    }
    delete_stale_namespaces();
    let tmp = tempfile::tempdir().unwrap();
    let pid = std::process::id();
    let mut lab = Lab {
        namespaces: Vec::new(),
        nodes: Vec::new(),
    };

    // the switch: a bridge in its own namespace; each node namespace hangs on it by a veth
    // whose node end is `eth0` (created in place: nothing appears in the host's namespace)
    let switch = format!("{PREFIX}{pid}-sw");
    if let Err(e) = lab.add_namespace(&switch) {
        assert!(!must_run(), "cannot create a network namespace: {e}");
        eprintln!("SKIPPED: mDNS namespace test: cannot create a network namespace: {e}");
        return;
    }
    ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]).unwrap();
    ip(&["-n", &switch, "link", "set", "br0", "up"]).unwrap();
    let names = ["a0", "a1", "a2", "other"];
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let ns = format!("{PREFIX}{pid}-{name}");
        lab.add_namespace(&ns).unwrap();
        let port = format!("p{i}");
        ip(&[
            "-n", &switch, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])
        .unwrap();
        ip(&["-n", &switch, "link", "set", &port, "master", "br0"]).unwrap();
        ip(&["-n", &switch, "link", "set", &port, "up"]).unwrap();
        let addr = format!("10.77.0.{}/24", i + 1);
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]).unwrap();
        ip(&["-n", &ns, "link", "set", "eth0", "up"]).unwrap();
        nodes.push(Node {
            name: name.to_string(),
            ns,
            dir: tmp.path().join(name),
        });
    }

    let key_a = keygen(tmp.path(), "a.key");
    let key_b = keygen(tmp.path(), "b.key");
    // no static peers, default mDNS settings (in a namespace: its eth0 only)
    let mut t_last_spawn = Instant::now();
    for node in &nodes {
        std::fs::create_dir_all(&node.dir).unwrap();
        let key = if node.name == "other" { &key_b } else { &key_a };
        let cfg = node.dir.join("node.toml");
        std::fs::write(
            &cfg,
            format!(
                "name = {:?}\nlisten = \"/ip4/0.0.0.0/tcp/7879\"\nkey_file = {:?}\nslots = 1\n",
                node.name,
                key.display().to_string()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(node.dir.join("node.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &node.ns])
            .arg(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["node", "--control-listen", "127.0.0.1:0"])
            .env("RENDERMESH_LOG", "info")
            .env("RENDERMESH_CALIBRATION_FRAMES", "2")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        lab.nodes.push(child);
        t_last_spawn = Instant::now();
    }

    let ids: Vec<String> = nodes.iter().map(Node::own_peer_id).collect();
    let (mesh_a, other) = (&nodes[..3], &nodes[3]);
    let other_id = &ids[3];

    // the three same-mesh nodes list each other; the other mesh appears nowhere. A node's
    // time is the start of the first query that shows both others (a query takes ~0.1 s).
    let mut found: [Option<Duration>; 3] = [None; 3];
    let deadline = t_last_spawn + Duration::from_secs(15);
    while found.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, node) in mesh_a.iter().enumerate() {
            let asked = t_last_spawn.elapsed();
            let listed = node.peer_ids().unwrap_or_default();
            assert!(
                !listed.contains(other_id),
                "{} lists the node of another mesh: {}",
                node.name,
                node.log()
            );
            if found[i].is_none() && (0..3).filter(|j| *j != i).all(|j| listed.contains(&ids[j])) {
                found[i] = Some(asked);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(took) = found
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .map(|f| f.into_iter().max().unwrap_or_default())
    else {
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
            .collect();
        panic!(
            "the 3 nodes did not find each other by mDNS:\n{}",
            logs.join("\n")
        );
    };
    eprintln!(
        "MEASURED mDNS discovery: 3 nodes (separate network namespaces, no static peers) list \
         each other {} ms after the last node was spawned",
        took.as_millis()
    );
    assert!(
        took <= DISCOVERY_LIMIT,
        "mDNS discovery took {} ms (limit {} ms)",
        took.as_millis(),
        DISCOVERY_LIMIT.as_millis()
    );

    // each same-mesh node saw the other mesh's record and ignored it; the other node saw all
    // three and ignored them; nobody dialled across meshes (no refused handshakes)
    let ignored = |node: &Node, id: &str| {
        node.log()
            .lines()
            .any(|l| l.contains("ignoring mDNS record of another mesh") && l.contains(id))
    };
    let seen = wait_for(Duration::from_secs(10), || {
        mesh_a.iter().all(|n| ignored(n, other_id)) && ids[..3].iter().all(|id| ignored(other, id))
    });
    assert!(
        seen.is_some(),
        "a node did not log the other mesh's record:\n{}",
        nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for node in &nodes {
        let listed = node.peer_ids().expect("peers answers");
        if node.name == "other" {
            assert!(listed.is_empty(), "the other mesh's node lists {listed:?}");
        } else {
            assert!(
                !listed.contains(other_id),
                "{} lists the other mesh",
                node.name
            );
        }
        let log = node.log();
        assert!(!log.contains("panicked"), "{} panicked: {log}", node.name);
        assert!(
            !log.contains("refusing incoming connection"),
            "someone dialled {} across meshes: {log}",
            node.name
        );
        assert!(log.contains("mDNS discovery on"), "{}: {log}", node.name);
    }

    // a clean stop: SIGTERM, the node (and its mDNS daemon) exits promptly
    for (node, child) in nodes.iter().zip(lab.nodes.iter_mut()) {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let stopped = wait_for(Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        assert!(stopped.is_some(), "{} did not stop on SIGTERM", node.name);
        let log = node.log();
        assert!(!log.contains("panicked"), "{} panicked: {log}", node.name);
    }
}
