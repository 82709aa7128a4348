//! Answers requests from peers: cache replication ([`crate::replica`]), blob pieces
//! ([`crate::transfer`]) and shard awards ([`crate::remote`]). Each request runs on the blocking pool (store and file reads); the
//! network task sends the answer back.

use rendermesh_cache::Cache;
use rendermesh_protocol::{Request, Response};
use tokio::sync::mpsc;

use crate::network::Inbound;
use crate::remote::ShardHost;

/// Requests waiting for an answer before new ones are refused as busy.
pub const QUEUE: usize = 256;

/// Environment switch for fault-injection tests: `RENDERMESH_FAULT=corrupt-blobs` makes this
/// node flip a byte in every blob piece it serves (a lying peer).
pub const FAULT_ENV: &str = "RENDERMESH_FAULT";

/// Serve requests arriving on `rx` until it closes; call inside the runtime. Without a
/// `host`, shard awards are declined.
pub fn serve(mut rx: mpsc::Receiver<Inbound>, cache: Cache, host: Option<ShardHost>) {
    let corrupt =
        std::env::var(FAULT_ENV).is_ok_and(|v| v.split(',').any(|f| f == "corrupt-blobs"));
    if corrupt {
        tracing::warn!("fault injection: every blob piece this node serves is corrupted");
    }
    tokio::spawn(async move {
        while let Some(Inbound {
            peer,
            request,
            reply,
        }) = rx.recv().await
        {
            let cache = cache.clone();
            let host2 = host.clone();
            if let Request::RunShard { shard } = request {
                let host = host.clone();
                tokio::spawn(async move {
                    let answer = match host {
                        Some(h) => h.run(peer, shard).await,
                        None => Response::ShardFailed {
                            retryable: true,
                            reason: "this node runs no shards for peers".into(),
                        },
                    };
                    let _ = reply.send(answer);
                });
                continue;
            }
            tokio::spawn(async move {
                let answer = tokio::task::spawn_blocking(move || match request {
                    Request::GetBlob { id, offset, len } => {
                        let mut piece =
                            crate::transfer::serve_piece(&cache.blobs, &id, offset, len);
                        if let (Some(h), Response::BlobPiece { total, data }) = (&host2, &piece) {
                            if offset + data.len() as u64 >= *total {
                                h.fetched(&id);
                            }
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
