//! One cache for the lab: real `rendermesh node` processes on loopback replicate analysis
//! entries. A file analysed on one node is answered from cache on another (no decode
//! anywhere); a node that joins later receives every entry; with `cache_replicas = 2` each
//! entry lives on exactly its two rendezvous owners, survives the death of one, and is copied
//! to a new owner.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use rendermesh_mesh::PeerId;

/// These tests start several nodes each: one at a time on 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn start(dir: &Path, name: &str, key: &Path, peers: &[String], replicas: usize) -> Daemon {
    let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
    Daemon::start_with(
        &dir.join(name),
        &format!(
            "mdns = false\nname = {name:?}\nlisten = \"/ip4/127.0.0.1/tcp/0\"\npeers = [{}]\nkey_file = {:?}\nslots = 2\ncache_replicas = {replicas}\n",
            peers.join(", "),
            key.display().to_string()
        ),
    )
}

/// Keys of a running node's cache entries.
fn keys(node: &Daemon) -> BTreeSet<String> {
    node.api_get("/v1/cache/entries")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["key"].as_str().map(str::to_string))
        .collect()
}

/// Submit a scenes job on `node`; returns the job's status (from the node's API).
fn scenes(node: &Daemon, clip: &Path, out: &Path) -> serde_json::Value {
    let o = rendermesh(
        &node.data_dir,
        &[
            "submit",
            "scenes",
            clip.to_str().unwrap(),
            "--chunk-seconds",
            "4",
            "--json",
            out.to_str().unwrap(),
            "-q",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
    let jobs = node.api_get("/v1/jobs").unwrap();
    jobs.as_array()
        .unwrap()
        .iter()
        .max_by_key(|j| j["started_unix_ms"].as_u64())
        .unwrap()
        .clone()
}

fn job_count(node: &Daemon) -> usize {
    node.api_get("/v1/jobs")
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn a_file_analysed_once_is_answered_everywhere_and_a_late_node_gets_every_entry() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[], 0);
    let b = start(tmp.path(), "b", &key, &[a.mesh_addr()], 0);
    wait_for(Duration::from_secs(10), || b.peer_ids().len() == 1).expect("a and b meet");

    // A analyses the clip
    let clip = scenes_clip(tmp.path());
    let job_a = scenes(&a, &clip, &tmp.path().join("a.json"));
    assert_eq!(job_a["from_cache"], false);
    assert!(job_a["stats"]["decoded_frames"].as_u64().unwrap() > 0);
    assert_eq!(cuts_of_json(&tmp.path().join("a.json")), SCENE_CUTS);
    let on_a = keys(&a);
    // probe, one entry per shard, the scene list
    assert!(on_a.len() >= 3, "{on_a:?}");
    wait_for(Duration::from_secs(5), || keys(&b) == on_a)
        .unwrap_or_else(|| panic!("b did not receive a's entries: {:?} vs {on_a:?}", keys(&b)));

    // B submits its own copy of the file: answered from its replica, nothing decoded anywhere
    let copy_dir = tmp.path().join("b-media");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let copy = copy_dir.join("same-video.mp4");
    std::fs::copy(&clip, &copy).unwrap();
    let jobs_on_a = job_count(&a);
    let job_b = scenes(&b, &copy, &tmp.path().join("b.json"));
    assert_eq!(job_b["from_cache"], true, "{job_b}");
    assert_eq!(job_b["stats"]["decoded_frames"], 0, "{job_b}");
    assert!(job_b["shards"].as_array().unwrap().is_empty(), "{job_b}");
    assert_eq!(cuts_of_json(&tmp.path().join("b.json")), SCENE_CUTS);
    assert_eq!(job_count(&a), jobs_on_a, "a ran something for b");

    // C joins afterwards and receives every entry
    let t0 = Instant::now();
    let c = start(tmp.path(), "c", &key, &[b.mesh_addr()], 0);
    let took = wait_for(Duration::from_secs(10), || keys(&c) == on_a)
        .unwrap_or_else(|| panic!("c did not receive the entries: {:?}", keys(&c)));
    let since_start = t0.elapsed();
    eprintln!(
        "late node holds all {} entries {} ms after its start ({} ms after it answered)",
        on_a.len(),
        since_start.as_millis(),
        took.as_millis()
    );
    // how fast is a benchmark's figure (bench/cache-sync.sh); the 10 s wait only catches a hang
    assert!(
        c.log().contains("cache entries pulled from peer"),
        "{}",
        c.log()
    );
    no_panic(&[&a, &b, &c]);
}

/// Rendezvous owners of `key` (hex) among `peers` (peer id text), computed here from the
/// definition: the `k` highest blake3(key ‖ peer id bytes).
fn owners(key: &str, peers: &[String], k: usize) -> BTreeSet<String> {
    let key: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).unwrap())
        .collect();
    let mut scored: Vec<([u8; 32], String)> = peers
        .iter()
        .map(|p| {
            let id: PeerId = p.parse().unwrap();
            let mut h = blake3::Hasher::new();
            h.update(&key);
            h.update(&id.to_bytes());
            (*h.finalize().as_bytes(), p.clone())
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().take(k).map(|(_, p)| p).collect()
}

/// Which nodes hold each key.
fn holders(nodes: &[&Daemon], ids: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, id) in nodes.iter().zip(ids) {
        for k in keys(n) {
            m.entry(k).or_default().insert(id.clone());
        }
    }
    m
}

fn placed_on_owners(nodes: &[&Daemon], ids: &[String], want_keys: usize) -> bool {
    let h = holders(nodes, ids);
    h.len() == want_keys && h.iter().all(|(k, held)| *held == owners(k, ids, 2))
}

#[test]
fn with_two_replicas_each_entry_lives_on_its_two_owners_and_survives_one() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key = keygen(tmp.path(), "swarm.key");
    let a = start(tmp.path(), "a", &key, &[], 2);
    let addr = a.mesh_addr();
    let mut nodes = vec![a];
    for name in ["b", "c", "d"] {
        nodes.push(start(
            tmp.path(),
            name,
            &key,
            std::slice::from_ref(&addr),
            2,
        ));
    }
    let ids: Vec<String> = nodes.iter().map(Daemon::peer_id).collect();
    wait_for(Duration::from_secs(10), || {
        nodes.iter().all(|n| n.peer_ids().len() == 3)
    })
    .expect("4 nodes meet");

    let clip = scenes_clip(tmp.path());
    let job = scenes(&nodes[0], &clip, &tmp.path().join("a.json"));
    assert_eq!(job["from_cache"], false);
    assert_eq!(cuts_of_json(&tmp.path().join("a.json")), SCENE_CUTS);
    let refs: Vec<&Daemon> = nodes.iter().collect();
    let n_keys = holders(&refs, &ids).len();
    assert!(n_keys >= 3);
    wait_for(Duration::from_secs(10), || {
        placed_on_owners(&refs, &ids, n_keys)
    })
    .unwrap_or_else(|| {
        panic!(
            "entries not on exactly their 2 owners: {:?}",
            holders(&refs, &ids)
        )
    });
    drop(refs);

    // kill an owner of the scene list; a node that does not hold it looks it up
    let list_key = nodes
        .iter()
        .flat_map(|n| {
            n.api_get("/v1/cache/entries")
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
        })
        .find(|e| e["kind"] == "scene-list")
        .and_then(|e| e["key"].as_str().map(str::to_string))
        .expect("a scene list entry");
    let list_owners = owners(&list_key, &ids, 2);
    let victim = ids.iter().position(|i| list_owners.contains(i)).unwrap();
    let asker = ids.iter().position(|i| !list_owners.contains(i)).unwrap();
    let _ = nodes[victim].child.kill();
    let _ = nodes[victim].child.wait();
    let dead = ids[victim].clone();

    let copy = tmp.path().join("copy.mp4");
    std::fs::copy(&clip, &copy).unwrap();
    let job = scenes(&nodes[asker], &copy, &tmp.path().join("b.json"));
    assert_eq!(job["from_cache"], true, "{job}\n{}", nodes[asker].log());
    assert_eq!(job["stats"]["decoded_frames"], 0, "{job}");
    assert_eq!(cuts_of_json(&tmp.path().join("b.json")), SCENE_CUTS);

    // the survivors place every entry on its owners among the three live nodes
    let live: Vec<&Daemon> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    let live_ids: Vec<String> = ids.iter().filter(|i| **i != dead).cloned().collect();
    wait_for(Duration::from_secs(10), || {
        placed_on_owners(&live, &live_ids, n_keys)
    })
    .unwrap_or_else(|| {
        panic!(
            "not re-replicated after an owner died: {:?}",
            holders(&live, &live_ids)
        )
    });
    no_panic(&live);
}

/// Swallows network events (the rogue peer below only sends requests).
struct Ignore;

impl actix::Actor for Ignore {
    type Context = actix::Context<Self>;
}

impl actix::Handler<rendermesh_mesh::NetEvent> for Ignore {
    type Result = ();
    fn handle(&mut self, _: rendermesh_mesh::NetEvent, _: &mut actix::Context<Self>) {}
}

#[test]
fn a_peer_pushing_a_corrupt_entry_is_refused_and_logged() {
    use actix::Actor;
    use rendermesh_cache::{Entries, MemStore};
    use rendermesh_mesh::net::{self, parse_tcp_addr};
    use rendermesh_mesh::{NetworkConfig, SwarmKey};
    use rendermesh_protocol::{
        CacheKey, CacheKind, ContentId, EntryRecord, Rational, Request, Response, SceneList,
    };

    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let key_file = keygen(tmp.path(), "swarm.key");
    let node = start(tmp.path(), "a", &key_file, &[], 0);
    let target: PeerId = node.peer_id().parse().unwrap();

    // two records made the way a node makes them; one gets a flipped payload byte
    let scratch = Entries::new(std::sync::Arc::new(MemStore::default()));
    let list = SceneList {
        input: ContentId::of(b"rogue"),
        fps: Rational { num: 30, den: 1 },
        frames: 10,
        cuts: vec![5],
        transitions: Vec::new(),
    };
    let good_key = CacheKey::derive(CacheKind::SceneList, 1, b"good", &ContentId::of(b"x"));
    let bad_key = CacheKey::derive(CacheKind::SceneList, 1, b"bad", &ContentId::of(b"x"));
    scratch.put(&good_key, &list).unwrap();
    let good = scratch.record(&good_key).unwrap().unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;

    let rogue_key = tmp.path().join("rogue.key");
    let sys = actix::System::new();
    let answer = sys.block_on(async move {
        let swarm_key = SwarmKey::load(&key_file).unwrap();
        let identity = rendermesh_mesh::net::key::load_or_create_identity(&rogue_key).unwrap();
        let (net, event_loop) = net::build(
            NetworkConfig {
                listen: parse_tcp_addr("/ip4/127.0.0.1/tcp/0").unwrap(),
                static_peers: vec![parse_tcp_addr(&node.mesh_addr()).unwrap()],
            },
            identity,
            &swarm_key,
        )
        .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        actix::spawn(event_loop.run(Ignore.start().recipient(), tx));
        // wait until connected (a digest request answers)
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(
            net.request(target, Request::Digest).await,
            Ok(Response::Digest { .. })
        ) {
            assert!(Instant::now() < deadline, "rogue peer never connected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = net
            .request(
                target,
                Request::PutEntries {
                    records: vec![
                        EntryRecord {
                            key: bad_key,
                            record: bad,
                        },
                        EntryRecord {
                            key: good_key,
                            record: good,
                        },
                    ],
                },
            )
            .await
            .unwrap();
        (answer, net.peer_id(), node)
    });
    let (answer, rogue, node) = answer;
    assert_eq!(
        answer,
        Response::Stored {
            accepted: 1,
            rejected: 1
        }
    );
    let held = keys(&node);
    assert!(held.contains(&good_key.to_string()), "{held:?}");
    assert!(
        !held.contains(&bad_key.to_string()),
        "a corrupt record was stored"
    );
    let log = node.log();
    assert!(
        log.lines()
            .any(|l| l.contains("cache record from peer refused")
                && l.contains(&rogue.to_string())
                && l.contains(&bad_key.to_string())),
        "{log}"
    );
    no_panic(&[&node]);
}
