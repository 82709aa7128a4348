//! Answers requests from peers: cache replication ([`crate::replica`]) and blob pieces
//! ([`crate::transfer`]). Each request runs on the blocking pool (store and file reads); the
//! network task sends the answer back.

use rendermesh_cache::Cache;
use rendermesh_protocol::{Request, Response};
use tokio::sync::mpsc;

use crate::network::Inbound;

/// Requests waiting for an answer before new ones are refused as busy.
pub const QUEUE: usize = 256;

/// Serve requests arriving on `rx` until it closes; call inside the runtime.
pub fn serve(mut rx: mpsc::Receiver<Inbound>, cache: Cache) {
    tokio::spawn(async move {
        while let Some(Inbound {
            peer,
            request,
            reply,
        }) = rx.recv().await
        {
            let cache = cache.clone();
            tokio::spawn(async move {
                let answer = tokio::task::spawn_blocking(move || match request {
                    Request::GetBlob { id, offset, len } => {
                        crate::transfer::serve_piece(&cache.blobs, &id, offset, len)
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
