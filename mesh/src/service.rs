//! Answers requests from peers: cache replication ([`crate::replica`]), blob pieces
//! ([`crate::transfer`]) and blob streams ([`crate::transfer::blob_stream`]), shard awards, their heartbeats and cancels ([`crate::remote`]).
//! Store and file reads run on the blocking pool; awards and heartbeats run as tasks; the
//! network task sends the answer back.

use std::sync::Arc;
use std::time::Duration;

use rendermesh_cache::Cache;
use rendermesh_protocol::{ContentId, Request, Response};
use tokio::sync::mpsc;

use crate::net::Inbound;
use crate::remote::ShardHost;
use crate::tasks::Tasks;
use crate::transfer::blob_stream;

/// Requests waiting for an answer before new ones are refused as busy.
pub const QUEUE: usize = 256;

/// Environment switch for fault-injection tests, a comma-separated list (read only by test
/// builds: debug builds, or a build with the `fault-injection` feature; a release binary
/// ignores it and says so):
/// - `corrupt-blobs`: this node flips a byte in every blob piece it serves, and in every
///   stretch of a blob stream (a lying peer);
/// - `slow-shards` or `slow-shards=MS`: every shard it runs for a peer takes MS more
///   milliseconds per frame (default 1000; a slow box).
pub const FAULT_ENV: &str = "RENDERMESH_FAULT";

/// The faults [`FAULT_ENV`] asks for, in a test build.
#[cfg(any(debug_assertions, feature = "fault-injection"))]
fn faults() -> Faults {
    std::env::var(FAULT_ENV)
        .map(|v| Faults::parse(&v))
        .unwrap_or_default()
}

/// A shipped build injects no faults.
#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
fn faults() -> Faults {
    if std::env::var_os(FAULT_ENV).is_some() {
        tracing::warn!("{FAULT_ENV} is set, but this build has no fault injection; ignored");
    }
    Faults::default()
}

/// The faults [`FAULT_ENV`] asks for.
#[derive(Debug, Default, PartialEq)]
struct Faults {
    corrupt_blobs: bool,
    slow_shards: Option<Duration>,
}

impl Faults {
    #[cfg_attr(
        not(any(debug_assertions, feature = "fault-injection")),
        allow(dead_code)
    )]
    fn parse(text: &str) -> Self {
        let mut f = Faults::default();
        for item in text.split(',').map(str::trim) {
            match item.split_once('=') {
                None if item == "corrupt-blobs" => f.corrupt_blobs = true,
                None if item == "slow-shards" => f.slow_shards = Some(Duration::from_secs(1)),
                Some(("slow-shards", ms)) => {
                    f.slow_shards = ms.parse().ok().map(Duration::from_millis);
                }
                _ => {}
            }
        }
        f
    }
}

/// Answers the requests about jobs and the node itself ([`Request::ListJobs`],
/// [`Request::GetJob`], [`Request::Control`]): the node implements it, since a rerun or a
/// drain is the node's business. Called on the request task: answer quickly.
pub trait ControlDesk: Send + Sync + 'static {
    fn answer(&self, peer: libp2p::PeerId, request: Request) -> Response;
}

/// Serve requests arriving on `rx` until it closes, and the blob streams of `streams` (from
/// [`crate::net::NetworkHandle::accept_blob_streams`]); call inside the runtime. Without
/// a `host`, shard awards are declined and heartbeats answered "stop"; without a `desk`,
/// questions about jobs get an error.
pub fn serve(
    mut rx: mpsc::Receiver<Inbound>,
    cache: Cache,
    host: Option<ShardHost>,
    desk: Option<Arc<dyn ControlDesk>>,
    streams: Option<libp2p_stream::IncomingStreams>,
    tasks: &Tasks,
) {
    let faults = faults();
    let corrupt = faults.corrupt_blobs;
    if corrupt {
        tracing::warn!("fault injection: every blob piece this node serves is corrupted");
    }
    let host = match (host, faults.slow_shards) {
        (Some(h), Some(delay)) => {
            tracing::warn!(
                ms = delay.as_millis() as u64,
                "fault injection: every shard run for a peer is slowed down per frame"
            );
            Some(h.with_frame_delay(delay))
        }
        (h, _) => h,
    };
    if let Some(incoming) = streams {
        let served = host.clone().map(|h| -> blob_stream::ServedHook {
            Arc::new(move |id: &ContentId, offset, len, total| h.served(id, offset, len, total))
        });
        let opts = blob_stream::ServeOptions { served, corrupt };
        blob_stream::serve(incoming, cache.blobs.clone(), opts, tasks);
    }
    let spawner = tasks.clone();
    tasks.spawn("requests", async move {
        let tasks = spawner;
        while let Some(Inbound {
            peer,
            request,
            reply,
        }) = rx.recv().await
        {
            let request = match request {
                Request::RunShard { shard } => {
                    let host = host.clone();
                    tasks.spawn("award", async move {
                        let answer = match host {
                            Some(h) => h.run(peer, shard).await,
                            None => {
                                Response::ShardFailed(rendermesh_protocol::ShardError::refused(
                                    "this node runs no shards for peers",
                                ))
                            }
                        };
                        let _ = reply.send(answer);
                    });
                    continue;
                }
                Request::ShardProgress {
                    job,
                    index,
                    frames_done,
                } => {
                    let host = host.clone();
                    tasks.spawn("heartbeat", async move {
                        let answer = match host {
                            Some(h) => h.heartbeat(peer, job, index, frames_done).await,
                            None => Response::Lease { keep: false },
                        };
                        let _ = reply.send(answer);
                    });
                    continue;
                }
                Request::CallForBids { shards } => {
                    let answer = match &host {
                        Some(h) => h.bids(&shards),
                        None => Response::Error("this node runs no shards for peers".into()),
                    };
                    let _ = reply.send(answer);
                    continue;
                }
                Request::Prefetch { id } => {
                    let answer = match &host {
                        Some(h) => h.prefetch(peer, id),
                        None => Response::Prefetch { started: false },
                    };
                    let _ = reply.send(answer);
                    continue;
                }
                Request::CancelShard { job, index } => {
                    let answer = match &host {
                        Some(h) => h.cancel(peer, job, index),
                        None => Response::Lease { keep: false },
                    };
                    let _ = reply.send(answer);
                    continue;
                }
                r @ (Request::ListJobs | Request::GetJob { .. } | Request::Control(_)) => {
                    let answer = match &desk {
                        Some(d) => d.answer(peer, r),
                        None => Response::Error("this node answers no questions on jobs".into()),
                    };
                    let _ = reply.send(answer);
                    continue;
                }
                other => other,
            };
            let cache = cache.clone();
            let host2 = host.clone();
            tasks.spawn("request", async move {
                let answer = tokio::task::spawn_blocking(move || match request {
                    Request::GetBlob { id, offset, len } => {
                        let mut piece =
                            crate::transfer::serve_piece(&cache.blobs, &id, offset, len);
                        if let (Some(h), Response::BlobPiece { total, data }) = (&host2, &piece) {
                            h.served(&id, offset, data.len() as u64, *total);
                        }
                        if let (true, Response::BlobPiece { data, .. }) = (corrupt, &mut piece) {
                            if let Some(b) = data.first_mut() {
                                *b ^= 0xff;
                            }
                        }
                        piece
                    }
                    other => crate::replica::answer(&cache.entries, &peer, other),
                })
                .await
                .unwrap_or_else(|e| Response::Error(format!("request handler crashed: {e}")));
                let _ = reply.send(answer);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_switches_parse() {
        assert_eq!(Faults::parse(""), Faults::default());
        assert!(Faults::parse("corrupt-blobs").corrupt_blobs);
        let f = Faults::parse("corrupt-blobs, slow-shards=250");
        assert!(f.corrupt_blobs);
        assert_eq!(f.slow_shards, Some(Duration::from_millis(250)));
        assert_eq!(
            Faults::parse("slow-shards").slow_shards,
            Some(Duration::from_secs(1))
        );
        assert_eq!(Faults::parse("slow-shards=x").slow_shards, None);
    }
}
