//! Benchmark: how long a new node takes to receive N cache entries from a peer.
//!
//! Two nodes in this process, each with its own sled cache on disk, over real TCP + noise (keyed prologue) +
//! noise + yamux on 127.0.0.1. Node A holds N scene-score entries (per-frame scores of 120 frames each, a 4 s shard at
//! 30 fps, without the edge frames); node B starts empty, connects, and pulls them by digest
//! comparison. Reports the time from B's start to an identical digest, best of R runs.
//!
//! `cargo run --release -p rendermesh-mesh --example cache_sync -- [N] [R]`

use std::time::{Duration, Instant};

use actix::prelude::*;
use rendermesh_cache::Cache;
use rendermesh_mesh::net::{self, parse_tcp_addr, NetEvent};
use rendermesh_mesh::replica::{self, ReplicaConfig};
use rendermesh_mesh::{service, NetworkConfig, NetworkHandle, PeerChange, SwarmKey};
use rendermesh_protocol::{
    CacheKey, CacheKind, ContentId, HsvDelta, Request, Response, SceneScores,
};

struct Ignore;
impl Actor for Ignore {
    type Context = Context<Self>;
}
impl Handler<NetEvent> for Ignore {
    type Result = ();
    fn handle(&mut self, _: NetEvent, _: &mut Context<Self>) {}
}

fn scores(i: u32) -> SceneScores {
    let frames = 120;
    SceneScores {
        first_frame: u64::from(i) * frames,
        deltas: (0..frames)
            .map(|f| {
                Some(HsvDelta {
                    hue: (i as u64 + f) as f32 * 0.01,
                    sat: 0.5,
                    lum: 0.25,
                })
            })
            .collect(),
        first: None,
        last: None,
        looks: Vec::new(),
    }
}

async fn node(
    dir: &std::path::Path,
    key: &SwarmKey,
    peers: Vec<rendermesh_mesh::Multiaddr>,
) -> (
    NetworkHandle,
    Cache,
    tokio::sync::mpsc::UnboundedSender<PeerChange>,
) {
    let cache = Cache::open(dir).expect("cache");
    let (net, event_loop) = net::build(
        NetworkConfig {
            listen: parse_tcp_addr("/ip4/127.0.0.1/tcp/0").expect("addr"),
            static_peers: peers,
        },
        libp2p_identity(),
        key,
    )
    .expect("network");
    let (in_tx, in_rx) = tokio::sync::mpsc::channel(service::QUEUE);
    let tasks = rendermesh_mesh::Tasks::root("example");
    service::serve(
        in_rx,
        cache.clone(),
        None,
        None,
        net.accept_blob_streams(),
        &tasks,
    );
    let (ch_tx, ch_rx) = tokio::sync::mpsc::unbounded_channel();
    replica::start(
        cache.entries.clone(),
        net.clone(),
        ReplicaConfig { replicas: 0 },
        ch_rx,
        &tasks,
    );
    actix::spawn(event_loop.run(Ignore.start().recipient(), in_tx));
    let mut rx = net.watch_listen();
    let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|a| !a.is_empty())).await;
    (net, cache, ch_tx)
}

fn libp2p_identity() -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::generate_ed25519()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let key = SwarmKey::from_bytes([42; 32]);
    let sys = System::new();
    sys.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, a_cache, _a_changes) = node(&dir.path().join("a"), &key, vec![]).await;
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..n {
            let k = CacheKey::derive(
                CacheKind::SceneShard,
                1,
                &i.to_le_bytes(),
                &ContentId::of(b"bench"),
            );
            a_cache.entries.put(&k, &scores(i)).expect("put");
            bytes += a_cache
                .entries
                .record(&k)
                .ok()
                .flatten()
                .map_or(0, |r| r.len());
        }
        let (want, _) = a_cache.entries.digest().expect("digest");
        println!(
            "node A: {n} entries, {:.1} MB of records, written in {:.2} s",
            bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let mut best = f64::MAX;
        for run in 0..runs {
            let start = Instant::now();
            let (b, b_cache, b_changes) =
                node(&dir.path().join(format!("b{run}")), &key, a.listen_addrs()).await;
            // the peers actor reports a join on the peer's first announcement, over a live
            // connection; here: once A answers
            while !matches!(
                b.request(a.peer_id(), Request::Digest).await,
                Ok(Response::Digest { .. })
            ) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = b_changes.send(PeerChange::Joined(a.peer_id()));
            // cheap poll on the count, then check the records are the same
            loop {
                if b_cache.entries.keys().map(|k| k.len() as u64).unwrap_or(0) == want {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "sync did not finish"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(
                b_cache.entries.digest().ok() == a_cache.entries.digest().ok(),
                "the new node's records differ"
            );
            best = best.min(secs);
            println!(
                "run {}: new node holds all {n} entries after {secs:.2} s ({:.0} entries/s)",
                run + 1,
                f64::from(n) / secs
            );
            b.shutdown().await;
        }
        println!("best of {runs}: {best:.2} s for {n} entries");
        System::current().stop();
    });
}
