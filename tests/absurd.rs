//! A peer that sends absurd numbers to a real node: shard specs of 65535×65535 frames, a
//! memory need of u64::MAX, 4 billion slots in its announcement and in its bids. The node
//! declines or refuses each, says so in one line, and keeps running; a job it coordinates
//! leaves the liar out and finishes.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::{Actor, Context, Handler};
use common::*;
use rendermesh_mesh::net::{self as network, Inbound, NetEvent, NetworkConfig, NetworkHandle};
use rendermesh_mesh::{PeerId, SwarmKey};
use rendermesh_protocol::{
    codec, Bid, BidSheet, Capabilities, ContentId, EncodeOptions, FailureKind, FrameRange, JobId,
    PeerAnnounce, Rational, Request, Response, ShardCost, ShardSpec, ShardTask, CAPS_VERSION,
};

#[derive(Default)]
struct Sink;

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for Sink {
    type Result = ();
    fn handle(&mut self, _: NetEvent, _: &mut Context<Self>) {}
}

fn caps() -> Capabilities {
    Capabilities {
        version: CAPS_VERSION,
        models: Vec::new(),
        hostname: "liar".into(),
        arch: "x86_64".into(),
        os: "linux".into(),
        cpu_model: "cpu".into(),
        cores: 1,
        threads: 1,
        ram_total_bytes: 1 << 30,
        ram_available_bytes: 1 << 30,
        gpus: vec![],
        encoders: vec![],
        scene_fps_720p: 0.0,
        scene_fps_1080p: 0.0,
        force_cpu: true,
        speeds: Default::default(),
        lacks: Default::default(),
        binary_version: "0".into(),
        fingerprint: "f".into(),
        calibrated_unix_ms: 1,
    }
}

fn announce(net: &NetworkHandle, slots: u32) {
    let a = PeerAnnounce {
        name: "liar".into(),
        listen: net.listen_addrs().iter().map(|a| a.to_string()).collect(),
        caps: caps(),
        slots,
        running: 0,
        shard_ram_bytes: 0,
        sent_unix_ms: 0,
    };
    net.publish(codec::encode(&a).unwrap());
}

fn absurd_specs() -> Vec<ShardSpec> {
    let huge = 65535u64 * 65535;
    let base = ShardSpec {
        job: JobId(1),
        index: 0,
        task: ShardTask::Checksum { rounds: 1 },
        class: "checksum".into(),
        required: false,
        inputs: vec![ContentId::of(b"x")],
        cost: ShardCost {
            units: huge,
            work: huge as f64,
            ram: u64::MAX,
            input_bytes: u64::MAX,
        },
    };
    let encode = ShardSpec {
        index: 1,
        task: ShardTask::Encode {
            range: FrameRange {
                start_pts: 0,
                end_pts: None,
                time_base: Rational::new(1, 30),
                first_frame: 0,
                frames: huge,
                fps: Rational::new(30, 1),
                ts_offset: 0,
            },
            options: EncodeOptions::default(),
        },
        class: "encode/libx264@1080p".into(),
        cost: ShardCost {
            units: 10,
            work: 10.0,
            ram: u64::MAX,
            input_bytes: 1,
        },
        ..base.clone()
    };
    let nan = ShardSpec {
        index: 2,
        cost: ShardCost {
            units: 1,
            work: f64::NAN,
            ram: 1,
            input_bytes: 1,
        },
        ..base.clone()
    };
    let class = ShardSpec {
        index: 3,
        class: "c".repeat(100_000),
        cost: ShardCost {
            units: 1,
            work: 1.0,
            ram: 1,
            input_bytes: 1,
        },
        ..base.clone()
    };
    vec![base, encode, nan, class]
}

#[actix_rt::test]
async fn absurd_numbers_from_a_peer_are_declined_or_refused_and_the_node_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = keygen(tmp.path(), "swarm.key");
    let node = Daemon::start_with(
        &tmp.path().join("a"),
        &format!(
            "mdns = false\nname = \"a\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nkey_file = {:?}\nslots = 1\n",
            key_file.display().to_string()
        ),
    );
    let node_peer: PeerId = node.peer_id().parse().unwrap();
    let node_addr = network::parse_tcp_addr(&node.mesh_addr()).unwrap();

    // the liar: a real mesh endpoint with the right key
    let key = SwarmKey::load(&key_file).unwrap();
    let identity =
        rendermesh_mesh::net::key::load_or_create_identity(&tmp.path().join("liar.key")).unwrap();
    let cfg = NetworkConfig {
        listen: network::parse_tcp_addr("/ip4/127.0.0.1/tcp/0").unwrap(),
        static_peers: vec![],
    };
    let (net, event_loop) = network::build(cfg, identity, &key).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Inbound>(64);
    actix::spawn(event_loop.run(Sink.start().recipient(), tx));
    // it answers every call for bids with 4 billion slots, all busy for a second (a node that
    // believed it would queue 4 billion finish times)
    let calls = Arc::new(Mutex::new(0u32));
    {
        let calls = calls.clone();
        actix::spawn(async move {
            while let Some(Inbound { request, reply, .. }) = rx.recv().await {
                let answer = match request {
                    Request::CallForBids { shards } => {
                        *calls.lock().unwrap() += 1;
                        Response::Bids(BidSheet {
                            slots: 4_000_000_000,
                            free_slots: 0,
                            queue_s: 1.0,
                            bids: shards
                                .iter()
                                .map(|s| Bid::Offer {
                                    shard: s.index,
                                    compute_s: 0.001,
                                    fetch_bytes: 0,
                                })
                                .collect(),
                        })
                    }
                    _ => Response::Error("no".into()),
                };
                let _ = reply.send(answer);
            }
        });
    }
    net.dial(node_peer, vec![node_addr]);
    let mut connected = false;
    for _ in 0..100 {
        if net.request(node_peer, Request::Digest).await.is_ok() {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connected, "the liar never reached the node: {}", node.log());

    // 1. a call for bids on absurd shards: every one declined, in one answer
    let specs = absurd_specs();
    let answer = net
        .request(
            node_peer,
            Request::CallForBids {
                shards: specs.clone(),
            },
        )
        .await
        .unwrap();
    let Response::Bids(sheet) = answer else {
        panic!("not a bid sheet: {answer:?}");
    };
    assert_eq!(sheet.bids.len(), specs.len());
    for (bid, spec) in sheet.bids.iter().zip(&specs) {
        match bid {
            Bid::Decline { shard, reason } => {
                assert_eq!(*shard, spec.index);
                assert!(reason.len() < 300, "{reason}");
            }
            other => panic!("shard {} not declined: {other:?}", spec.index),
        }
    }

    // 2. an award of each: refused, never run
    for spec in specs {
        let index = spec.index;
        let answer = net
            .request(node_peer, Request::RunShard { shard: spec })
            .await
            .unwrap();
        match answer {
            Response::ShardFailed(e) => assert_eq!(e.kind, FailureKind::Refused, "{e:?}"),
            other => panic!("shard {index}: {other:?}"),
        }
    }

    // 3. an announcement of 4 billion slots is dropped; the node says why
    let log_has = |text: &str| node.log().contains(text);
    let mut dropped = false;
    for _ in 0..50 {
        announce(&net, 4_000_000_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if log_has("absurd announcement dropped") {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "{}", node.log());
    let peers = node.api_get("/v1/peers").unwrap();
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["slots"].as_u64() < Some(1025)),
        "{peers}"
    );

    // 4. announced sanely, it bids with 4 billion slots: the coordinator leaves it out and
    // the job finishes on the node itself
    let beat = {
        let net = net.clone();
        actix::spawn(async move {
            loop {
                announce(&net, 1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let listed = {
        let mut ok = false;
        for _ in 0..50 {
            let peers = node.api_get("/v1/peers").unwrap();
            if peers
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "liar")
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ok
    };
    assert!(listed, "the node never listed the liar: {}", node.log());
    let file = tmp.path().join("f.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    let data = node.data_dir.clone();
    let o = tokio::task::spawn_blocking(move || {
        rendermesh(
            &data,
            &[
                "submit",
                "checksum",
                file.to_str().unwrap(),
                "--rounds",
                "1000",
                "-q",
            ],
        )
    })
    .await
    .unwrap();
    beat.abort();
    assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
    assert!(
        *calls.lock().unwrap() >= 1,
        "the liar was never asked to bid"
    );
    let jobs = node.api_get("/v1/jobs").unwrap();
    let job = jobs.as_array().unwrap().last().unwrap().clone();
    let notes = job["notes"].to_string();
    assert!(notes.contains("liar did not bid"), "{job}");
    assert!(notes.contains("4000000000 slots, 0 free"), "{job}");
    assert!(
        job["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["peer"] == "a"),
        "{job}"
    );
    let mut node = node;
    assert!(node.alive(), "{}", node.log());
    no_panic(&[node]);
}
