//! Several real nodes on loopback (static peers, mDNS off, one slot each), and reading their
//! jobs from the control API: the scaffolding of the multi-node tests.

use std::path::Path;
use std::time::Duration;

use super::{keygen, wait_for, Daemon};

/// A one-slot node named `name` dialling `peers`.
pub fn start(dir: &Path, name: &str, key: &Path, peers: &[String]) -> Daemon {
    start_env(dir, name, key, peers, &[])
}

/// [`start`] with environment `env` (e.g. a fault to inject).
pub fn start_env(
    dir: &Path,
    name: &str,
    key: &Path,
    peers: &[String],
    env: &[(&str, &str)],
) -> Daemon {
    start_cfg(dir, name, key, peers, "", env)
}

/// A one-slot node named `name` with `extra` config lines and environment `env`.
pub fn start_cfg(
    dir: &Path,
    name: &str,
    key: &Path,
    peers: &[String],
    extra: &str,
    env: &[(&str, &str)],
) -> Daemon {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    Daemon::start_with_env(
        &dir.join(name),
        &format!(
            "mdns = false\nname = {name:?}\nlisten = \"/ip4/127.0.0.1/tcp/0\"\npeers = [{}]\nkey_file = {:?}\nslots = 1\n{extra}",
            peers.join(", "),
            key.display().to_string()
        ),
        env,
    )
}

/// Wait until all of `nodes` list each other.
pub fn meet(nodes: &[Daemon]) {
    let others = nodes.len() - 1;
    wait_for(Duration::from_secs(10), || {
        nodes.iter().all(|n| n.peer_ids().len() == others)
    })
    .expect("the nodes meet");
}

/// Rows of the newest job on `node` (empty when there is none).
pub fn rows(node: &Daemon) -> Vec<serde_json::Value> {
    last_job_opt(node)
        .and_then(|j| j["shards"].as_array().cloned())
        .unwrap_or_default()
}

/// Send `signal` (e.g. "-STOP") to a node's process.
pub fn signal(node: &Daemon, signal: &str) {
    let st = std::process::Command::new("kill")
        .args([signal, &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {signal} failed");
}

/// A, then B and C dialling A; returns once each lists the other two. The three are the same
/// box, so B and C start from A's calibration (as a copied `caps.json`): three nodes
/// calibrating at once on a shared machine would measure noise, and bids follow calibration.
pub fn three(dir: &Path) -> Vec<Daemon> {
    three_with(dir, "")
}

/// [`three`], with `a_extra` config lines for A (the coordinator of the tests).
pub fn three_with(dir: &Path, a_extra: &str) -> Vec<Daemon> {
    three_env(dir, a_extra, &[])
}

/// [`three_with`], with environment `bc_env` for B and C (e.g. a fault to inject).
pub fn three_env(dir: &Path, a_extra: &str, bc_env: &[(&str, &str)]) -> Vec<Daemon> {
    let key = keygen(dir, "swarm.key");
    let a = start_cfg(dir, "a", &key, &[], a_extra, &[]);
    let addr = a.mesh_addr();
    let caps = a.data_dir.join("caps.json");
    wait_for(Duration::from_secs(120), || caps.exists())
        .unwrap_or_else(|| panic!("a never calibrated: {}", a.log()));
    for other in ["b", "c"] {
        std::fs::create_dir_all(dir.join(other)).unwrap();
        std::fs::copy(&caps, dir.join(other).join("caps.json")).unwrap();
    }
    let b = start_env(dir, "b", &key, std::slice::from_ref(&addr), bc_env);
    let c = start_env(dir, "c", &key, &[addr], bc_env);
    let nodes = vec![a, b, c];
    meet(&nodes);
    nodes
}

/// The newest job on `node` (from its API).
pub fn last_job(node: &Daemon) -> serde_json::Value {
    last_job_opt(node).expect("a job")
}

/// The nodes a job's shards ran on.
pub fn peers_of(job: &serde_json::Value) -> std::collections::BTreeSet<String> {
    job["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["peer"].as_str().map(str::to_string))
        .collect()
}

/// The newest job on `node`, if any.
pub fn last_job_opt(node: &Daemon) -> Option<serde_json::Value> {
    node.api_get("/v1/jobs")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .max_by_key(|j| j["started_unix_ms"].as_u64())
}
