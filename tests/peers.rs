//! The mesh on loopback: real `rendermesh node` processes with static peers and a shared key
//! find each other and their capabilities, notice a killed node, take back a restarted one;
//! a node with another key stays out; junk on the mesh port harms nothing.

use crate::common;

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The tests measure timings: run them one at a time (2 cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// A key from `rendermesh keygen`, checked to be in the pre-shared key file format.
fn checked_keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = keygen(dir, name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    assert_eq!(text.lines().nth(2).map(str::len), Some(64));
    path
}

fn config(name: &str, key: &Path, listen: &str, peers: &[String]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "name = {name:?}\nlisten = {listen:?}\npeers = [{}]\nkey_file = {:?}\nslots = 1\nmdns = false\n",
        peers.join(", "),
        key.display().to_string()
    )
}

const ANY_PORT: &str = "/ip4/127.0.0.1/tcp/0";

/// Does `node` list every id in `want` with host facts?
fn lists(node: &Daemon, want: &[&str]) -> bool {
    let Some(rows) = node
        .api_get("/v1/peers")
        .and_then(|v| v.as_array().cloned())
    else {
        return false;
    };
    want.iter().all(|id| {
        rows.iter().any(|r| {
            r["peer_id"] == *id
                && r["caps"]["hostname"]
                    .as_str()
                    .is_some_and(|h| !h.is_empty())
                && r["caps"]["arch"].as_str().is_some_and(|a| !a.is_empty())
                && r["caps"]["cores"].as_u64().is_some_and(|c| c > 0)
        })
    })
}

#[test]
fn three_nodes_see_each_other_drop_the_dead_and_take_back_the_restarted() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = checked_keygen(tmp.path(), "mesh.key");

    let a = Daemon::start_with(&tmp.path().join("a"), &config("a", &key, ANY_PORT, &[]));
    let addr_a = a.mesh_addr();
    let b = Daemon::start_with(
        &tmp.path().join("b"),
        &config("b", &key, ANY_PORT, std::slice::from_ref(&addr_a)),
    );
    let addr_b = b.mesh_addr();
    let spawned = Instant::now();
    let c = Daemon::start_with(
        &tmp.path().join("c"),
        &config("c", &key, ANY_PORT, &[addr_a.clone(), addr_b.clone()]),
    );
    let _ = c.mesh_addr();
    let started = Instant::now();
    let (ia, ib, ic) = (a.peer_id(), b.peer_id(), c.peer_id());
    // every node logged the same mesh id, never the key
    let key_hex = std::fs::read_to_string(&key).unwrap();
    let key_hex = key_hex.lines().nth(2).unwrap();
    let mesh_id = a.mesh_info()["mesh_id"].as_str().unwrap().to_string();
    for n in [&a, &b, &c] {
        assert_eq!(n.mesh_info()["mesh_id"], mesh_id.as_str());
        assert!(n.log().contains(&mesh_id));
        assert!(!n.log().contains(key_hex));
    }

    let took = wait_for(Duration::from_secs(15), || {
        lists(&a, &[&ib, &ic]) && lists(&b, &[&ia, &ic]) && lists(&c, &[&ia, &ib])
    });
    let took = took.unwrap_or_else(|| {
        panic!(
            "3 nodes did not list each other within 15 s (+{:?} since the last start): a {:?} b {:?} c {:?}\n{}",
            started.elapsed(),
            a.peer_ids(),
            b.peer_ids(),
            c.peer_ids(),
            a.log()
        )
    });
    eprintln!(
        "MEASURED: 3 nodes listed each other {:?} after the last node was spawned ({took:?} of waiting)",
        spawned.elapsed()
    );

    // the CLI shows the table
    let o = rendermesh(&a.data_dir, &["peers"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(
        table.contains("b") && table.contains("c") && table.contains("127.0.0.1"),
        "{table}"
    );
    let o = rendermesh(&a.data_dir, &["peers", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(2));

    // SIGKILL b: gone from a and c
    let mut b = b;
    let port_b = addr_b.rsplit('/').next().unwrap().to_string();
    let _ = b.child.kill();
    let _ = b.child.wait();
    let gone = wait_for(Duration::from_secs(20), || {
        !a.peer_ids().contains(&ib) && !c.peer_ids().contains(&ib)
    })
    .unwrap_or_else(|| {
        panic!(
            "killed node still listed after 20 s: a {:?} c {:?}",
            a.peer_ids(),
            c.peer_ids()
        )
    });
    eprintln!("MEASURED: killed node gone from both tables after {gone:?}");
    assert!(lists(&a, &[&ic]) && lists(&c, &[&ia]));

    // restart b on the same data dir (same identity) and port
    drop(b);
    let respawned = Instant::now();
    let b = Daemon::start_with(
        &tmp.path().join("b"),
        &config(
            "b",
            &key,
            &format!("/ip4/127.0.0.1/tcp/{port_b}"),
            &[addr_a.clone(), c.mesh_addr()],
        ),
    );
    let _ = b.mesh_addr();
    assert_eq!(b.peer_id(), ib, "identity is kept across restarts");
    let back = wait_for(Duration::from_secs(15), || {
        lists(&a, &[&ib, &ic]) && lists(&b, &[&ia, &ic]) && lists(&c, &[&ia, &ib])
    })
    .unwrap_or_else(|| {
        panic!(
            "restarted node not back within 15 s: a {:?} b {:?} c {:?}",
            a.peer_ids(),
            b.peer_ids(),
            c.peer_ids()
        )
    });
    eprintln!(
        "MEASURED: restarted node back in every table {:?} after it was spawned ({back:?} of waiting)",
        respawned.elapsed()
    );
    no_panic(&[&a, &b, &c]);
}

#[test]
fn a_node_with_another_key_stays_out() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = checked_keygen(tmp.path(), "mesh.key");
    let other = checked_keygen(tmp.path(), "other.key");
    let mut a = Daemon::start_with(&tmp.path().join("a"), &config("a", &key, ANY_PORT, &[]));
    let addr_a = a.mesh_addr();
    let mut d = Daemon::start_with(
        &tmp.path().join("d"),
        &config("d", &other, ANY_PORT, &[addr_a]),
    );
    let _ = d.mesh_addr();
    assert_ne!(a.mesh_info()["mesh_id"], d.mesh_info()["mesh_id"]);
    let id_d = d.peer_id();
    let id_a = a.peer_id();
    // the refusal shows in a's log; meanwhile neither ever lists the other
    let refused = wait_for(Duration::from_secs(10), || {
        assert!(!a.peer_ids().contains(&id_d), "a lists the wrong-key node");
        assert!(!d.peer_ids().contains(&id_a), "the wrong-key node lists a");
        a.log().contains("refusing incoming connection")
    });
    assert!(refused.is_some(), "no refusal in a's log:\n{}", a.log());
    // and stays so for a couple of heartbeats
    wait_for(Duration::from_secs(2), || {
        assert!(!a.peer_ids().contains(&id_d));
        assert!(d.peer_ids().is_empty());
        false
    });
    assert!(a.alive() && d.alive());
    assert!(d.log().contains("static peer unreachable"), "{}", d.log());
    no_panic(&[&a, &d]);
}

fn junk(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn send_junk(addr: &str, bytes: &[u8]) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    // the node may hang up mid-way: that is fine
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

/// Two thousand junk connections make a few counted lines in the log, not two thousand.
#[test]
fn a_flood_of_junk_connections_is_logged_a_few_times_with_a_count() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = checked_keygen(tmp.path(), "mesh.key");
    let mut a = Daemon::start_with(&tmp.path().join("a"), &config("a", &key, ANY_PORT, &[]));
    let addr_a = a.mesh_addr();
    let parts: Vec<&str> = addr_a.split('/').collect();
    let sock = format!("{}:{}", parts[2], parts[4]);
    let line = "refusing incoming connection: handshake failed";
    let sent = 2000;
    for i in 0..sent {
        send_junk(&sock, &junk(64, i));
    }
    // the count of the quiet ones comes once the 5 s window has passed
    let counted = |log: &str| {
        log.lines()
            .filter_map(|l| l.split("refused ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
            + log
                .lines()
                .filter_map(|l| l.split("; ").nth(1))
                .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
    };
    let seen = |log: &str| log.matches(line).count() as u64;
    wait_for(Duration::from_secs(20), || {
        let log = a.log();
        seen(&log) + counted(&log) >= sent * 9 / 10
    })
    .unwrap_or_else(|| {
        let log = a.log();
        panic!(
            "{} lines and {} counted for {sent} junk connections:\n{}",
            seen(&log),
            counted(&log),
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        )
    });
    let log = a.log();
    assert!(
        seen(&log) <= 6,
        "{} lines for {sent} junk connections",
        seen(&log)
    );
    assert!(a.alive());
    no_panic(&[&a]);
}

#[test]
fn junk_on_the_mesh_port_harms_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = checked_keygen(tmp.path(), "mesh.key");
    let mut a = Daemon::start_with(&tmp.path().join("a"), &config("a", &key, ANY_PORT, &[]));
    let addr_a = a.mesh_addr();
    let b = Daemon::start_with(
        &tmp.path().join("b"),
        &config("b", &key, ANY_PORT, std::slice::from_ref(&addr_a)),
    );
    let _ = b.mesh_addr();
    let ib = b.peer_id();
    assert!(
        wait_for(Duration::from_secs(15), || lists(&a, &[&ib])).is_some(),
        "a never listed b"
    );

    // "/ip4/127.0.0.1/tcp/PORT" -> "127.0.0.1:PORT"
    let parts: Vec<&str> = addr_a.split('/').collect();
    let sock = format!("{}:{}", parts[2], parts[4]);
    send_junk(&sock, &junk(64 * 1024, 7));
    send_junk(&sock, &junk(1024 * 1024, 99));

    assert!(a.alive(), "a died of junk:\n{}", a.log());
    assert!(
        wait_for(Duration::from_secs(15), || lists(&a, &[&ib])).is_some(),
        "a lost b after junk:\n{}",
        a.log()
    );
    assert!(a.alive());

    // a frozen b (connection open, no heartbeats) expires; thawed, it is back
    let signal = |sig: &str| {
        let st = std::process::Command::new("kill")
            .args([sig, &b.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    };
    signal("-STOP");
    let expired = wait_for(Duration::from_secs(20), || !a.peer_ids().contains(&ib));
    signal("-CONT");
    let expired = expired.unwrap_or_else(|| panic!("a frozen peer was not expired within 20 s"));
    eprintln!("MEASURED: frozen (SIGSTOP) node expired after {expired:?}");
    assert!(
        wait_for(Duration::from_secs(15), || lists(&a, &[&ib])).is_some(),
        "thawed b not back within 15 s"
    );

    // once b's encoder probe is done, a sees b's verified encoders (the caps update gossip)
    let full = wait_for(Duration::from_secs(90), || {
        a.api_get("/v1/peers")
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .any(|r| {
                r["peer_id"] == ib.as_str()
                    && r["caps"]["encoders"].as_array().is_some_and(|e| {
                        e.iter()
                            .any(|e| e["name"] == "libx264" && e["verified"] == true)
                    })
            })
    });
    assert!(
        full.is_some(),
        "a never saw b's probed encoders:\n{}",
        b.log()
    );
    no_panic(&[&a, &b]);
}

#[test]
fn peers_without_a_node_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = rendermesh(tmp.path(), &["peers"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("no node is running"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_lone_node_makes_its_own_key_and_a_configured_key_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    // default key file: created on first start, owner-only, kept across restarts
    let mut a = Daemon::start(&tmp.path().join("a"));
    let key_file = a.data_dir.join("swarm.key");
    let mesh_id = a.mesh_info()["mesh_id"].as_str().unwrap().to_string();
    let mode = std::fs::metadata(&key_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"));
    assert!(a.terminate(15).is_some_and(|s| s.success()));
    let a = Daemon::start(&tmp.path().join("a"));
    assert_eq!(a.mesh_info()["mesh_id"], mesh_id.as_str());
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), text);

    // a configured key file that does not exist is an error, not a new mesh
    let dir = tmp.path().join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("node.toml");
    let missing = dir.join("nope.key");
    std::fs::write(&cfg, config("b", &missing, ANY_PORT, &[])).unwrap();
    let o = std::process::Command::new(bin())
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&dir)
        .args(["node", "--control-listen", "127.0.0.1:0"])
        .env("RENDERMESH_LOG", "warn")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("mesh key"), "{}", stderr(&o));
    assert!(!missing.exists());
}
