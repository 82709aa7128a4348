//! Blob transfer between real in-process nodes over 127.0.0.1 (TCP + noise (keyed prologue) + yamux).
//!
//! Each node has its own blob store in a temp dir and answers `GetBlob` with
//! `transfer::serve_piece`, unless its [`Mode`] makes it misbehave. Nodes made by [`node`]
//! serve no blob streams, so fetches from them go by pieces; nodes made by [`stream_node`]
//! also serve blob streams, as a [`StreamMode`] says. The fetcher dials the nodes it needs
//! and waits for the connections before it fetches. The last test fetches inputs ahead
//! through a runner's `ShardHost`.

use std::fmt::Write as _;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::{Actor, Context, Handler};
use libp2p::identity;
use rendermesh_cache::BlobStore;
use rendermesh_mesh::exec::ShardCtl;
use rendermesh_mesh::net::{self, Inbound, NetEvent, NetworkConfig, NetworkHandle};
use rendermesh_mesh::transfer::blob_stream::{self, ServeOptions};
use rendermesh_mesh::transfer::{self, FetchError, FetchOptions, Fetched};
use rendermesh_mesh::{PeerId, ShardError, ShardExecutor, ShardHost, SwarmKey, Worker};
use rendermesh_protocol::wire::{BlobHead, BlobRead};
use rendermesh_protocol::{ContentId, Request, Response, ShardOutput, ShardSpec, WorkStats};
use tokio::sync::mpsc;

const MB20: usize = 20 * 1000 * 1000 + 12_345;

/// How a node answers blob requests.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Honest,
    /// Shut the node's network down instead of answering the data piece after the n-th.
    StopAfter(u64),
    /// Answer data requests with another message.
    WrongVariant,
    /// One byte more than asked.
    TooLong,
    /// The size grows by one from the second data piece on.
    TotalChanges,
    /// Pieces without bytes.
    Empty,
    /// Every data request fails with an error text.
    ErrorText,
    /// Never answers (holds the reply for an hour).
    Silent,
}

#[derive(Default)]
struct Collector(Arc<Mutex<Vec<NetEvent>>>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<NetEvent> for Collector {
    type Result = ();
    fn handle(&mut self, ev: NetEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(ev);
    }
}

struct Node {
    net: NetworkHandle,
    blobs: BlobStore,
    /// Bytes asked for in `GetBlob` requests.
    requested: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<NetEvent>>>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn id(&self) -> PeerId {
        self.net.peer_id()
    }

    fn requested(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }
}

async fn node(mode: Mode) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
    let cfg = NetworkConfig {
        listen: net::parse_tcp_addr("/ip4/127.0.0.1/tcp/0").unwrap(),
        static_peers: vec![],
    };
    let key = SwarmKey::from_bytes([42; 32]);
    let (net, event_loop) = net::build(cfg, identity::Keypair::generate_ed25519(), &key).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector(events.clone()).start();
    let (tx, mut rx) = mpsc::channel::<Inbound>(64);
    let requested = Arc::new(AtomicU64::new(0));
    let pieces = Arc::new(AtomicU64::new(0));
    {
        let (blobs, net, requested) = (blobs.clone(), net.clone(), requested.clone());
        actix::spawn(async move {
            while let Some(Inbound { request, reply, .. }) = rx.recv().await {
                let Request::GetBlob { id, offset, len } = request else {
                    let _ = reply.send(Response::Error("unsupported".into()));
                    continue;
                };
                requested.fetch_add(u64::from(len), Ordering::SeqCst);
                if mode == Mode::Silent {
                    actix::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(reply);
                    });
                    continue;
                }
                let (blobs, net, pieces) = (blobs.clone(), net.clone(), pieces.clone());
                actix::spawn(async move {
                    let mut r = tokio::task::spawn_blocking(move || {
                        transfer::serve_piece(&blobs, &id, offset, len)
                    })
                    .await
                    .unwrap_or_else(|e| Response::Error(e.to_string()));
                    if len > 0 {
                        let n = pieces.fetch_add(1, Ordering::SeqCst) + 1;
                        if let Response::BlobPiece { total, data } = &mut r {
                            match mode {
                                Mode::Honest => {}
                                Mode::StopAfter(k) => {
                                    if n > k {
                                        net.shutdown().await;
                                        return;
                                    }
                                }
                                Mode::WrongVariant => r = Response::Keys(vec![]),
                                Mode::TooLong => data.push(0),
                                Mode::TotalChanges => {
                                    if n >= 2 {
                                        *total += 1
                                    }
                                }
                                Mode::Empty => data.clear(),
                                Mode::ErrorText => r = Response::Error("disk on fire".into()),
                                Mode::Silent => {}
                            }
                        }
                    }
                    let _ = reply.send(r);
                });
            }
        });
    }
    actix::spawn(event_loop.run(collector.recipient(), tx));
    let mut listen = net.watch_listen();
    tokio::time::timeout(Duration::from_secs(5), listen.wait_for(|a| !a.is_empty()))
        .await
        .expect("node did not start listening")
        .unwrap();
    Node {
        net,
        blobs,
        requested,
        events,
        _dir: dir,
    }
}

/// Connect `from` to each of `to`, waiting (at most 10 s) until every connection is up.
async fn connect(from: &Node, to: &[&Node]) {
    for n in to {
        from.net.dial(n.id(), n.net.listen_addrs());
    }
    for _ in 0..500 {
        let up = {
            let ev = from.events.lock().unwrap();
            to.iter().all(|n| {
                ev.iter()
                    .any(|e| matches!(e, NetEvent::Connected { peer, .. } if *peer == n.id()))
            })
        };
        if up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("peers did not connect");
}

/// Deterministic, incompressible test bytes.
fn random_bytes(seed: u8, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut v);
    v
}

async fn fetch(
    from: &Node,
    peers: &[&Node],
    id: ContentId,
    opts: FetchOptions,
) -> Result<Fetched, FetchError> {
    let peers: Vec<PeerId> = peers.iter().map(|n| n.id()).collect();
    tokio::time::timeout(
        Duration::from_secs(120),
        transfer::fetch(&from.net, &peers, id, &from.blobs, opts),
    )
    .await
    .expect("fetch hung")
}

fn small_pieces() -> FetchOptions {
    FetchOptions {
        piece_size: 256 * 1024,
        depth: 4,
        retries: 2,
        backoff: Duration::from_millis(50),
        ..FetchOptions::default()
    }
}

/// The blob `id` in `n`'s store holds exactly `bytes`.
fn assert_stored(n: &Node, id: &ContentId, bytes: &[u8]) {
    assert!(fs::read(n.blobs.path(id)).unwrap() == bytes, "bytes differ");
}

fn part_len(n: &Node, id: &ContentId) -> Option<u64> {
    fs::metadata(transfer::partial_path(&n.blobs, id))
        .ok()
        .map(|m| m.len())
}

#[actix_rt::test]
async fn fetches_a_20_mb_blob_verified_and_pinned() {
    let a = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(1, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&a]).await;

    let got = fetch(&f, &[&a], id, FetchOptions::default()).await.unwrap();
    assert_eq!(
        (got.id, got.size, got.received, got.resumed),
        (id, MB20 as u64, MB20 as u64, 0)
    );
    assert_eq!(got.pin.id(), &id);
    assert!(f.blobs.is_pinned(&id));
    assert_stored(&f, &id, &bytes);
    assert_eq!(f.blobs.stats().bytes, MB20 as u64);
    assert_eq!(part_len(&f, &id), None, "partial file left behind");
    assert_eq!(a.requested(), MB20 as u64, "bytes asked for more than once");

    // already here: pinned again, nothing asked
    drop(got);
    assert!(!f.blobs.is_pinned(&id));
    let again = fetch(&f, &[&a], id, FetchOptions::default()).await.unwrap();
    assert_eq!((again.size, again.received), (MB20 as u64, 0));
    assert!(f.blobs.is_pinned(&id));
    assert_eq!(a.requested(), MB20 as u64);
}

#[actix_rt::test]
async fn resumes_from_a_second_peer_after_the_first_stops() {
    let a = node(Mode::StopAfter(30)).await;
    let b = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(2, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    assert_eq!(b.blobs.put_bytes(&bytes).unwrap(), id);
    connect(&f, &[&a, &b]).await;

    let got = fetch(&f, &[&a, &b], id, small_pieces()).await.unwrap();
    assert_eq!((got.size, got.received), (MB20 as u64, MB20 as u64));
    assert_stored(&f, &id, &bytes);
    let (from_a, from_b) = (a.requested(), b.requested());
    eprintln!("asked a for {from_a} bytes, then b for {from_b} of {MB20}");
    // a served 30 pieces of 256 KiB before it stopped; b was asked only for the rest
    assert!(from_b < MB20 as u64, "b was asked for the whole blob again");
    assert!(
        from_b <= MB20 as u64 - 20 * 256 * 1024,
        "too little was kept from a: {from_b}"
    );
    assert!(from_a + from_b >= MB20 as u64);
}

#[actix_rt::test]
async fn a_later_fetch_resumes_the_partial_file() {
    let a = node(Mode::StopAfter(30)).await;
    let b = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(3, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    b.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&a, &b]).await;

    let err = fetch(&f, &[&a], id, small_pieces()).await.unwrap_err();
    match &err {
        FetchError::Unavailable { failures, .. } => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].peer, a.id());
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(&a.id().to_string()), "{err}");
    let kept = part_len(&f, &id).expect("no partial file kept");
    assert!(kept > 0 && kept < MB20 as u64, "{kept}");
    assert!(!f.blobs.contains(&id));

    let got = fetch(&f, &[&b], id, small_pieces()).await.unwrap();
    assert_eq!(
        (got.size, got.resumed, got.received),
        (MB20 as u64, kept, MB20 as u64 - kept)
    );
    assert_eq!(
        b.requested(),
        MB20 as u64 - kept,
        "b was asked for bytes we had"
    );
    assert_stored(&f, &id, &bytes);
    assert_eq!(part_len(&f, &id), None);
}

/// Keeps the text of warnings logged on this thread.
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[actix_rt::test]
async fn a_lying_peer_is_caught_and_nothing_is_kept() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _log = tracing::subscriber::set_default(Warnings(warnings.clone()));
    let liar = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let good = random_bytes(4, 3_000_000);
    let id = liar.blobs.put_bytes(&good).unwrap();
    // same size, other bytes, filed under the good id
    fs::write(liar.blobs.path(&id), random_bytes(5, good.len())).unwrap();
    connect(&f, &[&liar]).await;

    let err = fetch(&f, &[&liar], id, FetchOptions::default())
        .await
        .unwrap_err();
    match &err {
        FetchError::Corrupt {
            id: bad,
            peers,
            resumed,
        } => {
            assert_eq!(
                (bad, peers.as_slice(), *resumed),
                (&id, &[liar.id()][..], 0)
            );
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("failed verification") && text.contains(&liar.id().to_string()),
        "{text}"
    );
    assert_eq!(part_len(&f, &id), None, "partial file kept");
    assert!(!f.blobs.contains(&id));
    assert_eq!(f.blobs.stats().blobs, 0, "something was adopted");
    let logged = warnings.lock().unwrap();
    assert!(
        logged
            .iter()
            .any(|w| w.contains("failed verification") && w.contains(&liar.id().to_string())),
        "no warning naming the peer: {logged:?}"
    );
}

#[actix_rt::test]
async fn a_blob_nobody_has_is_a_clear_error() {
    let a = node(Mode::Honest).await;
    let b = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    connect(&f, &[&a, &b]).await;
    let id = ContentId::of(b"nobody has this");
    let err = fetch(&f, &[&a, &b], id, FetchOptions::default())
        .await
        .unwrap_err();
    match &err {
        FetchError::NotFound { asked, .. } => assert_eq!(asked, &vec![a.id(), b.id()]),
        other => panic!("{other}"),
    }
    assert!(err.to_string().starts_with("no peer has blob"), "{err}");
    assert_eq!(part_len(&f, &id), None);
    // and nobody to ask at all
    let err = fetch(&f, &[], id, FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoPeers { .. }), "{err}");
}

#[actix_rt::test]
async fn garbled_answers_are_errors_not_panics() {
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(6, 2_000_000);
    let cases = [
        (Mode::WrongVariant, "answered a blob request with Keys"),
        (Mode::TooLong, "when asked for"),
        (Mode::TotalChanges, "changed the blob size"),
        (Mode::Empty, "empty piece"),
        (Mode::ErrorText, "disk on fire"),
    ];
    for (mode, expect) in cases {
        let g = node(mode).await;
        let id = g.blobs.put_bytes(&bytes).unwrap();
        connect(&f, &[&g]).await;
        let err = fetch(&f, &[&g], id, small_pieces()).await.unwrap_err();
        let text = err.to_string();
        match &err {
            FetchError::Unavailable { failures, .. } => {
                assert_eq!(failures.len(), 1, "{mode:?}: {text}");
                assert_eq!(failures[0].peer, g.id());
                assert!(failures[0].reason.contains(expect), "{mode:?}: {text}");
            }
            other => panic!("{mode:?}: {other}"),
        }
        assert!(text.contains(&g.id().to_string()), "{mode:?}: {text}");
        assert!(!f.blobs.contains(&id));
    }

    // a garbling peer is skipped; an honest one behind it completes the blob
    let g = node(Mode::TooLong).await;
    let h = node(Mode::Honest).await;
    let id = g.blobs.put_bytes(&bytes).unwrap();
    h.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&g, &h]).await;
    let got = fetch(&f, &[&g, &h], id, small_pieces()).await.unwrap();
    assert_eq!(got.size, bytes.len() as u64);
    assert_stored(&f, &id, &bytes);

    // a blob larger than the caller allows is refused before a byte is asked for
    let big = random_bytes(8, 1_000_000);
    let id = h.blobs.put_bytes(&big).unwrap();
    let before = h.requested();
    let opts = FetchOptions {
        max_size: 999_999,
        ..small_pieces()
    };
    let err = fetch(&f, &[&h], id, opts).await.unwrap_err();
    assert!(
        err.to_string().contains("more than the 999999 allowed"),
        "{err}"
    );
    assert_eq!(h.requested(), before);
    assert_eq!(part_len(&f, &id), None);
}

#[actix_rt::test]
async fn concurrent_fetches_of_one_blob_transfer_it_once() {
    let a = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(7, 5_000_000);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&a]).await;
    let peers = [&a];
    let (x, y) = futures::join!(
        fetch(&f, &peers, id, small_pieces()),
        fetch(&f, &peers, id, small_pieces())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.received + y.received, bytes.len() as u64);
    assert_eq!(a.requested(), bytes.len() as u64);
    assert_stored(&f, &id, &bytes);
}

#[actix_rt::test]
async fn a_silent_peer_times_out_and_the_next_one_serves() {
    let s = node(Mode::Silent).await;
    let h = node(Mode::Honest).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(9, 1_500_000);
    let id = s.blobs.put_bytes(&bytes).unwrap();
    h.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&s, &h]).await;
    let opts = FetchOptions {
        piece_timeout: Duration::from_millis(300),
        retries: 1,
        ..small_pieces()
    };
    let t0 = std::time::Instant::now();
    let got = fetch(&f, &[&s, &h], id, opts).await.unwrap();
    assert_eq!(got.size, bytes.len() as u64);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let err = fetch(&f, &[&s], ContentId::of(b"other"), opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no answer within 300ms"), "{err}");
}

/// How a node serves blob streams.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StreamMode {
    /// `blob_stream::serve`, optionally corrupting what it sends.
    Serve { corrupt: bool },
    /// Sends the head and the blob's bytes only up to this offset, then closes the stream.
    CutAt(u64),
    /// Answers with a frame length over the limit.
    HugeHead,
    /// Answers with a frame of junk.
    JunkHead,
}

/// Bytes a stream node sent: (first offset, total bytes).
type Served = Arc<Mutex<Vec<(u64, u64)>>>;

/// A node (answering pieces honestly) that also serves blob streams as `mode` says.
async fn stream_node(mode: StreamMode) -> (Node, Served) {
    let n = node(Mode::Honest).await;
    let served: Served = Default::default();
    let incoming = n.net.accept_blob_streams().expect("streams accepted twice");
    assert!(n.net.accept_blob_streams().is_none(), "accepted twice");
    match mode {
        StreamMode::Serve { corrupt } => {
            let log = served.clone();
            let hook: blob_stream::ServedHook = Arc::new(move |_: &ContentId, at, len, _| {
                log.lock().unwrap().push((at, len));
            });
            let opts = ServeOptions {
                served: Some(hook),
                corrupt,
            };
            blob_stream::serve(
                incoming,
                n.blobs.clone(),
                opts,
                &rendermesh_mesh::Tasks::root("test"),
            );
        }
        other => {
            let (blobs, log) = (n.blobs.clone(), served.clone());
            actix::spawn(async move {
                use futures::{AsyncWriteExt, StreamExt};
                let mut incoming = incoming;
                while let Some((_, mut s)) = incoming.next().await {
                    let read: BlobRead = match blob_stream::read_frame(&mut s).await {
                        Ok(r) => r,
                        Err(_) => continue,
                    };
                    let _ = match other {
                        StreamMode::CutAt(cut) => {
                            let data = fs::read(blobs.path(&read.id)).unwrap();
                            let head = BlobHead::Data {
                                total: data.len() as u64,
                            };
                            blob_stream::write_frame(&mut s, &head).await.unwrap();
                            let asked_end = read.offset.saturating_add(read.len).min(cut);
                            let end = (asked_end as usize).min(data.len());
                            let from = (read.offset as usize).min(end);
                            log.lock().unwrap().push((read.offset, (end - from) as u64));
                            s.write_all(&data[from..end]).await
                        }
                        StreamMode::HugeHead => s.write_all(&u32::MAX.to_le_bytes()).await,
                        StreamMode::JunkHead => {
                            let mut junk = 9u32.to_le_bytes().to_vec();
                            junk.extend([0xee; 9]);
                            s.write_all(&junk).await
                        }
                        StreamMode::Serve { .. } => unreachable!(),
                    };
                    let _ = s.close().await;
                }
            });
        }
    }
    (n, served)
}

fn served_bytes(served: &Served) -> u64 {
    served.lock().unwrap().iter().map(|s| s.1).sum()
}

#[actix_rt::test]
async fn a_blob_stream_carries_the_whole_blob_and_no_piece_is_asked_for() {
    let (a, served) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(11, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&a]).await;

    let got = fetch(&f, &[&a], id, FetchOptions::default()).await.unwrap();
    assert_eq!(
        (got.id, got.size, got.received, got.resumed),
        (id, MB20 as u64, MB20 as u64, 0)
    );
    assert!(f.blobs.is_pinned(&id));
    assert_stored(&f, &id, &bytes);
    assert_eq!(part_len(&f, &id), None, "partial file left behind");
    assert_eq!(a.requested(), 0, "pieces were asked for");
    assert_eq!(served_bytes(&served), MB20 as u64);
    let stretches = served.lock().unwrap().len();
    assert!(stretches >= MB20 / (1 << 20), "{stretches} stretches sent");

    // with streams off, the same peer is asked for pieces
    drop(got);
    f.blobs.remove(&id).unwrap();
    let opts = FetchOptions {
        stream: false,
        ..FetchOptions::default()
    };
    let got = fetch(&f, &[&a], id, opts).await.unwrap();
    assert_eq!(got.received, MB20 as u64);
    assert_eq!(a.requested(), MB20 as u64);
    assert_eq!(served_bytes(&served), MB20 as u64, "a stream was opened");
}

#[actix_rt::test]
async fn a_stream_cut_short_is_resumed_from_the_next_peer_at_the_cut() {
    let cut = 5 * 1000 * 1000 + 17;
    let (a, from_a) = stream_node(StreamMode::CutAt(cut)).await;
    let (b, from_b) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(12, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    assert_eq!(b.blobs.put_bytes(&bytes).unwrap(), id);
    connect(&f, &[&a, &b]).await;

    let got = fetch(&f, &[&a, &b], id, small_pieces()).await.unwrap();
    assert_eq!((got.size, got.received), (MB20 as u64, MB20 as u64));
    assert_stored(&f, &id, &bytes);
    // a sent up to the cut, was asked again from there (and retried), then b sent the rest
    assert_eq!(served_bytes(&from_a), cut);
    let asked_again = from_a.lock().unwrap().iter().filter(|s| s.0 == cut).count();
    assert_eq!(
        asked_again, 2,
        "a: asked again from the cut until its retries ran out"
    );
    let b_from = from_b.lock().unwrap().iter().map(|s| s.0).min();
    assert_eq!(b_from, Some(cut), "b did not start at the cut");
    assert_eq!(served_bytes(&from_b), MB20 as u64 - cut);
    assert_eq!(a.requested() + b.requested(), 0, "pieces were asked for");
}

#[actix_rt::test]
async fn a_later_fetch_resumes_a_partial_stream() {
    let cut = 3 * 1000 * 1000;
    let (a, _) = stream_node(StreamMode::CutAt(cut)).await;
    let (b, from_b) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(13, MB20);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    b.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&a, &b]).await;

    let err = fetch(&f, &[&a], id, small_pieces()).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("stream ended after byte"), "{err}");
    assert_eq!(part_len(&f, &id), Some(cut));

    let got = fetch(&f, &[&b], id, small_pieces()).await.unwrap();
    assert_eq!(
        (got.size, got.resumed, got.received),
        (MB20 as u64, cut, MB20 as u64 - cut)
    );
    let b_from = from_b.lock().unwrap().iter().map(|s| s.0).min();
    assert_eq!(b_from, Some(cut));
    assert_eq!(served_bytes(&from_b), MB20 as u64 - cut);
    assert_stored(&f, &id, &bytes);
}

#[actix_rt::test]
async fn a_lying_stream_is_caught_the_sender_named_and_nothing_kept() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _log = tracing::subscriber::set_default(Warnings(warnings.clone()));
    let (liar, _) = stream_node(StreamMode::Serve { corrupt: true }).await;
    let f = node(Mode::Honest).await;
    let id = liar.blobs.put_bytes(&random_bytes(14, 3_000_000)).unwrap();
    connect(&f, &[&liar]).await;

    let err = fetch(&f, &[&liar], id, FetchOptions::default())
        .await
        .unwrap_err();
    match &err {
        FetchError::Corrupt { peers, .. } => assert_eq!(peers, &vec![liar.id()]),
        other => panic!("{other}"),
    }
    assert_eq!(part_len(&f, &id), None, "partial file kept");
    assert_eq!(f.blobs.stats().blobs, 0, "something was adopted");
    let logged = warnings.lock().unwrap();
    assert!(
        logged
            .iter()
            .any(|w| w.contains("failed verification") && w.contains(&liar.id().to_string())),
        "no warning naming the peer: {logged:?}"
    );
}

#[actix_rt::test]
async fn garbled_stream_heads_are_errors_and_the_next_peer_serves() {
    let (huge, _) = stream_node(StreamMode::HugeHead).await;
    let (junk, _) = stream_node(StreamMode::JunkHead).await;
    let (good, from_good) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(15, 2_000_000);
    let id = good.blobs.put_bytes(&bytes).unwrap();
    connect(&f, &[&huge, &junk, &good]).await;

    let err = fetch(&f, &[&huge, &junk], id, small_pieces())
        .await
        .unwrap_err();
    match &err {
        FetchError::Unavailable { failures, .. } => {
            assert_eq!(failures.len(), 2, "{err}");
            assert!(
                failures.iter().all(|x| x.reason.contains("garbled")),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    let got = fetch(&f, &[&huge, &junk, &good], id, small_pieces())
        .await
        .unwrap();
    assert_eq!(got.received, bytes.len() as u64);
    assert_eq!(served_bytes(&from_good), bytes.len() as u64);
}

#[actix_rt::test]
async fn a_partial_file_longer_than_the_blob_is_started_over() {
    let (a, served) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let f = node(Mode::Honest).await;
    let bytes = random_bytes(16, 2_000_000);
    let id = a.blobs.put_bytes(&bytes).unwrap();
    let part = transfer::partial_path(&f.blobs, &id);
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    fs::write(&part, random_bytes(17, 3_000_000)).unwrap();
    connect(&f, &[&a]).await;

    let got = fetch(&f, &[&a], id, small_pieces()).await.unwrap();
    assert_eq!(
        (got.size, got.resumed, got.received),
        (bytes.len() as u64, 0, bytes.len() as u64)
    );
    assert_stored(&f, &id, &bytes);
    assert_eq!(served_bytes(&served), bytes.len() as u64);
}

/// Runs nothing: the prefetch test awards no shard.
struct NoShards;

impl ShardExecutor for NoShards {
    fn run(&self, _: &ShardSpec, _: &ShardCtl<'_>) -> Result<(ShardOutput, WorkStats), ShardError> {
        Err(ShardError::refused("no shards here"))
    }
}

#[actix_rt::test]
async fn a_runner_fetches_inputs_ahead_holds_four_and_none_while_draining() {
    let (coordinator, _) = stream_node(StreamMode::Serve { corrupt: false }).await;
    let runner = node(Mode::Honest).await;
    connect(&runner, &[&coordinator]).await;
    let inputs: Vec<(ContentId, Vec<u8>)> = (0..5u8)
        .map(|i| {
            let bytes = random_bytes(40 + i, 3_000_000 + usize::from(i));
            (coordinator.blobs.put_bytes(&bytes).unwrap(), bytes)
        })
        .collect();
    let worker = Worker::new("w", Arc::new(NoShards), 1).start();
    let host = ShardHost::new(runner.net.clone(), runner.blobs.clone(), worker);
    let from = coordinator.id();
    let started = Response::Prefetch { started: true };
    let refused = Response::Prefetch { started: false };
    let arrived = |ids: Vec<ContentId>| {
        let blobs = runner.blobs.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while !ids.iter().all(|id| blobs.contains(id)) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok()
        }
    };
    for (id, _) in &inputs[..4] {
        assert_eq!(host.prefetch(from, *id), started);
    }
    assert_eq!(
        host.prefetch(from, inputs[4].0),
        refused,
        "a fifth while four are being fetched"
    );
    assert!(arrived(inputs[..4].iter().map(|i| i.0).collect()).await);
    for (id, bytes) in &inputs[..4] {
        assert_stored(&runner, id, bytes);
        assert!(runner.blobs.is_pinned(id), "kept for its award");
    }
    assert!(!runner.blobs.contains(&inputs[4].0));
    // asked again for one that is here: nothing to do
    assert_eq!(host.prefetch(from, inputs[1].0), started);
    // a fifth now: the oldest one held makes room
    assert_eq!(host.prefetch(from, inputs[4].0), started);
    assert!(arrived(vec![inputs[4].0]).await);
    assert_stored(&runner, &inputs[4].0, &inputs[4].1);
    assert!(
        !runner.blobs.contains(&inputs[0].0),
        "the oldest was dropped"
    );
    assert!(runner.blobs.contains(&inputs[1].0));
    // draining: nothing is fetched ahead
    host.start_draining();
    assert_eq!(host.prefetch(from, inputs[0].0), refused);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!runner.blobs.contains(&inputs[0].0));
}
