//! The decoders of untrusted bytes, fed generated and mutated inputs (issue 22): the wire
//! codec (every request and answer a peer may send, blob pieces included), the stream frames
//! around them (length prefix and message, read as a stream reads them), the piece header,
//! cache records from peers, mDNS TXT records and the mesh key file. Each runs N inputs
//! (default 1 000 000) under `catch_unwind` ([`harness`]); the figures are the inputs, the
//! panics (with the first one's input), the slowest input (a hang shows here) and the
//! process's peak memory.
//!
//!   cargo run --release -p rendermesh-mesh --example fuzz -- [N]     (or `bash bench/fuzz.sh`)
//!
//! `mesh/tests/fuzz.rs` runs the same targets on fewer inputs; the node's own decoders (its
//! config file, the control API's job requests) are fuzzed in the node's tests with the same
//! harness.

#[path = "fuzzing/harness.rs"]
pub mod harness;

use std::sync::Arc;

pub use harness::{peak_mb, run_target, Outcome, Rng};

use mdns_sd::IntoTxtProperties;
use rendermesh_cache::{Entries, MemStore};
use rendermesh_mesh::discovery::parse_txt;
use rendermesh_mesh::net::rpc::{request_from_bytes, response_from_bytes};
use rendermesh_mesh::SwarmKey;
use rendermesh_protocol::codec::{blob_piece_start, decode, encode};
use rendermesh_protocol::{
    CacheKey, CacheKind, ContentId, EntryRecord, JobId, Rational, Request, Response, SceneList,
};

fn record() -> (CacheKey, Vec<u8>) {
    let entries = Entries::new(Arc::new(MemStore::default()));
    let key = CacheKey::derive(CacheKind::SceneList, 1, &[7], &ContentId::of(b"clip"));
    let list = SceneList {
        input: ContentId::of(b"clip"),
        fps: Rational { num: 30, den: 1 },
        frames: 480,
        cuts: vec![40, 60, 300],
        transitions: Vec::new(),
    };
    entries.put(&key, &list).expect("put");
    let rec = entries.record(&key).expect("record").expect("stored");
    (key, rec)
}

fn wire_seeds() -> Vec<Vec<u8>> {
    let (key, rec) = record();
    let id = ContentId::of(b"blob");
    let job = JobId(42);
    let requests = vec![
        Request::Digest,
        Request::BucketKeys { bucket: 9 },
        Request::GetEntries {
            keys: vec![key, key],
        },
        Request::PutEntries {
            records: vec![EntryRecord {
                key,
                record: rec.clone(),
            }],
        },
        Request::GetBlob {
            id,
            offset: 1 << 20,
            len: 65536,
        },
        Request::ShardProgress {
            job,
            index: 3,
            frames_done: 120,
        },
        Request::CancelShard { job, index: 3 },
        Request::Prefetch { id },
        Request::ListJobs,
        Request::GetJob { job },
    ];
    let responses = vec![
        Response::Digest {
            entries: 3,
            buckets: vec![[5; 32]; 4],
        },
        Response::Keys(vec![key]),
        Response::Entries(vec![EntryRecord { key, record: rec }]),
        Response::Stored {
            accepted: 1,
            rejected: 0,
        },
        Response::BlobPiece {
            total: 1 << 20,
            data: vec![7; 300],
        },
        Response::NoBlob,
        Response::Lease { keep: true },
        Response::Prefetch { started: false },
        Response::Jobs(Vec::new()),
        Response::Job(None),
        Response::Done("done".into()),
        Response::Error("no".into()),
    ];
    let mut seeds: Vec<Vec<u8>> = requests
        .iter()
        .map(|r| encode(r).expect("encode"))
        .collect();
    seeds.extend(responses.iter().map(|r| encode(r).expect("encode")));
    seeds
}

fn txt_seeds() -> Vec<Vec<u8>> {
    let key = SwarmKey::from_bytes([3; 32]);
    let peer = libp2p::PeerId::random().to_string();
    let fields = [
        ("peer", peer.as_str()),
        ("mesh", &key.mesh_id().to_string()),
        ("proto", "rendermesh/5"),
        ("port", "7879"),
    ]
    .map(|(k, v)| format!("{k}={v}"));
    vec![fields.join("\n").into_bytes()]
}

/// Every target, `n` inputs each.
pub fn run_all(n: u64, seed: u64) -> Vec<Outcome> {
    let mut rng = Rng::new(seed);
    // a panic is counted, not printed a million times
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let wire = wire_seeds();
    // the same messages as the streams carry them: a length prefix, then the message
    let frames: Vec<Vec<u8>> = wire
        .iter()
        .map(|m| {
            let mut f = (m.len() as u32).to_le_bytes().to_vec();
            f.extend_from_slice(m);
            f
        })
        .collect();
    let (_, rec) = record();
    let out = vec![
        run_target("wire request", &wire, n, &mut rng, |b| {
            decode::<Request>(b).is_err()
        }),
        run_target("wire answer", &wire, n, &mut rng, |b| {
            decode::<Response>(b).is_err()
        }),
        run_target("request frame", &frames, n, &mut rng, |b| {
            request_from_bytes(b).is_err()
        }),
        run_target("answer frame", &frames, n, &mut rng, |b| {
            response_from_bytes(b).is_err()
        }),
        run_target(
            "blob piece header",
            &[encode(&Response::BlobPiece {
                total: 99,
                data: vec![1; 64],
            })
            .expect("encode")],
            n,
            &mut rng,
            |b| blob_piece_start(b, b.len() + 64).is_none(),
        ),
        run_target("cache record", &[rec], n, &mut rng, |b| {
            Entries::check_record(b).is_err()
        }),
        run_target("mDNS TXT record", &txt_seeds(), n, &mut rng, |b| {
            // the record as its key=value pairs, the way mdns-sd hands them over
            let text = String::from_utf8_lossy(b);
            let pairs: Vec<(&str, &str)> = text
                .split('\n')
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .filter(|(k, _)| !k.is_empty())
                .collect();
            parse_txt(&pairs.as_slice().into_txt_properties()).is_err()
        }),
        run_target(
            "mesh key file",
            &[SwarmKey::from_bytes([9; 32]).to_text().into_bytes()],
            n,
            &mut rng,
            |b| SwarmKey::parse(&String::from_utf8_lossy(b)).is_err(),
        ),
    ];
    std::panic::set_hook(hook);
    out
}

#[allow(dead_code)]
fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000u64);
    println!("| decoder | inputs | refused | panics | slowest input | inputs/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut panics = 0;
    for o in run_all(n, 0x5eed_0022) {
        panics += o.panics;
        println!("{}", o.row());
        if let Some(p) = &o.first_panic {
            println!("first panic of {}: {p:02x?}", o.name);
        }
    }
    println!("peak resident memory: {} MB", peak_mb());
    std::process::exit(i32::from(panics > 0));
}
