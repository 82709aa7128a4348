//! Throughput of blob transfer between two nodes over 127.0.0.1.
//!
//! Two in-process nodes, each on its own thread with its own actix system (as two processes
//! would be), connected by the real mesh transport: TCP + noise (keyed prologue) + yamux. The
//! serving node holds a blob of random bytes in its store; the fetching node fetches it with
//! `transfer::fetch` (blob streams, `--streams` at once, or with `--pieces` pipelined piece
//! requests; hashed as it arrives, adopted into its store) and the blob is removed again before the next run. Reports MB/s (10^6 bytes per second, from the
//! first request to the verified blob in the store) per run and the best of all runs.
//!
//! ```sh
//! cargo run --release -p rendermesh-mesh --example blob_transfer -- \
//!     [--size MIB] [--runs N] [--streams N] [--stretch KIB] [--pieces] [--piece KIB] [--depth N] [--dir DIR]
//! ```
//!
//! `--dir` is where the two blob stores live (default: the system temp dir); the blob is
//! written there once per invocation.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::{Actor, Context, Handler};
use libp2p::identity;
use rendermesh_cache::BlobStore;
use rendermesh_mesh::net::{self, Inbound, NetEvent, NetworkConfig, NetworkHandle};
use rendermesh_mesh::transfer::blob_stream;
use rendermesh_mesh::transfer::{self, FetchOptions};
use rendermesh_mesh::{Multiaddr, PeerId, SwarmKey};
use rendermesh_protocol::{ContentId, Request, Response};
use tokio::sync::{mpsc, oneshot};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    size_mib: u64,
    runs: u32,
    piece_kib: u32,
    depth: usize,
    pieces: bool,
    streams: usize,
    stretch_kib: u64,
    dir: Option<PathBuf>,
}

const USAGE: &str =
    "usage: blob_transfer [--size MIB (512)] [--runs N (3)] [--streams N (8)] [--stretch KIB (2048)] [--pieces] [--piece KIB (1024)] [--depth N (8)] [--dir DIR]\n\
     (--piece and --depth apply with --pieces: piece requests instead of blob streams)";

fn parse_args() -> Result<Args, String> {
    let defaults = FetchOptions::default();
    let mut a = Args {
        size_mib: 512,
        runs: 3,
        piece_kib: defaults.piece_size / 1024,
        depth: defaults.depth,
        pieces: false,
        streams: defaults.streams,
        stretch_kib: defaults.stretch / 1024,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--size" => a.size_mib = num(value()?)?,
            "--runs" => a.runs = num(value()?)?.clamp(1, 1000) as u32,
            "--piece" => a.piece_kib = num(value()?)?.clamp(1, 4096) as u32,
            "--depth" => a.depth = num(value()?)?.clamp(1, 256) as usize,
            "--dir" => a.dir = Some(PathBuf::from(value()?)),
            "--pieces" => a.pieces = true,
            "--streams" => a.streams = num(value()?)?.clamp(1, 64) as usize,
            "--stretch" => a.stretch_kib = num(value()?)?.clamp(64, 1 << 20),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.size_mib == 0 {
        return Err("--size must be at least 1".into());
    }
    Ok(a)
}

struct Collector(Arc<Mutex<Vec<NetEvent>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for Collector {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(ev);
        }
    }
}

/// Start a node on 127.0.0.1 that serves blob pieces from `blobs`; call inside an actix system.
async fn start_node(blobs: BlobStore) -> Result<(NetworkHandle, Arc<Mutex<Vec<NetEvent>>>), Error> {
    let cfg = NetworkConfig {
        listen: net::parse_tcp_addr("/ip4/127.0.0.1/tcp/0")?,
        static_peers: vec![],
    };
    let key = SwarmKey::from_bytes([9; 32]);
    let (net, event_loop) = net::build(cfg, identity::Keypair::generate_ed25519(), &key)?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(events.clone()).start();
    let (tx, mut rx) = mpsc::channel::<Inbound>(256);
    let served = blobs.clone();
    actix::spawn(async move {
        while let Some(Inbound { request, reply, .. }) = rx.recv().await {
            let Request::GetBlob { id, offset, len } = request else {
                let _ = reply.send(Response::Error("unsupported".into()));
                continue;
            };
            let blobs = served.clone();
            actix::spawn(async move {
                let r = tokio::task::spawn_blocking(move || {
                    transfer::serve_piece(&blobs, &id, offset, len)
                })
                .await
                .unwrap_or_else(|e| Response::Error(e.to_string()));
                let _ = reply.send(r);
            });
        }
    });
    let streams = net
        .accept_blob_streams()
        .ok_or("blob streams are already accepted")?;
    blob_stream::serve(
        streams,
        blobs,
        Default::default(),
        &rendermesh_mesh::Tasks::root("example"),
    );
    actix::spawn(event_loop.run(collector.recipient(), tx));
    let mut listen = net.watch_listen();
    tokio::time::timeout(Duration::from_secs(5), listen.wait_for(|a| !a.is_empty()))
        .await
        .map_err(|_| "node did not start listening")??;
    Ok((net, events))
}

/// Write `size` random bytes into `blobs`; returns the id.
fn make_blob(blobs: &BlobStore, size: u64) -> Result<ContentId, Error> {
    let tmp = blobs.temp_path("bench");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    let mut xof = blake3::Hasher::new()
        .update(b"blob_transfer")
        .finalize_xof();
    let mut buf = vec![0u8; 4 << 20];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(left as usize);
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    drop(out);
    Ok(blobs.adopt(&tmp)?.0)
}

/// Process CPU time (user + system), from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ = 100 on Linux
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blob_transfer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Error> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new()
        .prefix("blob-transfer-")
        .tempdir_in(&base)?;
    let server_blobs = BlobStore::open(&dir.path().join("server"))?;
    let client_blobs = BlobStore::open(&dir.path().join("client"))?;
    let size = args.size_mib * 1024 * 1024;
    eprintln!("writing a {} MiB blob…", args.size_mib);
    let id = make_blob(&server_blobs, size)?;

    // the serving node, on its own thread and actix system
    let (ready_tx, ready_rx) =
        std::sync::mpsc::channel::<Result<(PeerId, Vec<Multiaddr>), String>>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            match start_node(server_blobs).await {
                Ok((net, _events)) => {
                    let _ = ready_tx.send(Ok((net.peer_id(), net.listen_addrs())));
                    let _ = stop_rx.await;
                    net.shutdown().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        })
    });
    let (server_id, server_addrs) = ready_rx.recv()??;

    let opts = FetchOptions {
        piece_size: args.piece_kib * 1024,
        depth: args.depth,
        stream: !args.pieces,
        streams: args.streams,
        stretch: args.stretch_kib * 1024,
        ..FetchOptions::default()
    };
    let results = actix::System::new().block_on(async move {
        let (net, events) = start_node(client_blobs.clone()).await?;
        net.dial(server_id, server_addrs);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !events
            .lock()
            .map_err(|_| "poisoned")?
            .iter()
            .any(|e| matches!(e, NetEvent::Connected { peer, .. } if *peer == server_id))
        {
            if Instant::now() > deadline {
                return Err::<_, Error>("the nodes did not connect".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut rates = Vec::new();
        for run in 1..=args.runs {
            client_blobs.remove(&id)?;
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let got = transfer::fetch(&net, &[server_id], id, &client_blobs, opts).await?;
            let secs = t0.elapsed().as_secs_f64();
            let cpu = cpu_time().zip(cpu0).map(|(b, a)| (b - a).as_secs_f64());
            if got.size != size || got.received != size {
                return Err(format!("run {run}: got {} of {size} bytes", got.received).into());
            }
            drop(got);
            let mbs = size as f64 / 1e6 / secs;
            println!(
                "run {run}: {:.1} MB in {secs:.3} s = {mbs:.1} MB/s ({:.1} MiB/s){}",
                size as f64 / 1e6,
                size as f64 / (1024.0 * 1024.0) / secs,
                cpu.map(|c| format!(", CPU {c:.2} s ({:.0} % of one core)", c / secs * 100.0))
                    .unwrap_or_default()
            );
            rates.push(mbs);
        }
        client_blobs.remove(&id)?;
        net.shutdown().await;
        Ok(rates)
    });
    let _ = stop_tx.send(());
    let _ = server.join();
    let rates = results?;
    let best = rates.iter().cloned().fold(0.0, f64::max);
    let how = if args.pieces {
        format!("pieces of {} KiB, depth {}", args.piece_kib, args.depth)
    } else {
        format!(
            "blob streams, {} at once, {} KiB each",
            args.streams, args.stretch_kib
        )
    };
    println!(
        "best of {}: {best:.1} MB/s — {} MiB blob, {how}, verified (blake3) and stored",
        rates.len(),
        args.size_mib,
    );
    Ok(())
}
