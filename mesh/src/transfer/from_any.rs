//! [`fetch_from_any`]: a blob by its id from whichever live peer of the mesh holds it (a
//! finished file made on another box, asked for again here).

use libp2p::PeerId;
use rendermesh_protocol::ContentId;

use super::{fetch, FetchError, FetchOptions, Fetched};
use crate::remote::MeshLink;

/// Fetch blob `id` into this node's store from the live peers of `link`, in the peer table's
/// order (a peer without it is skipped), verified and pinned; present already: pinned at once.
/// `max_size` bounds what a peer may claim the blob's size is.
pub async fn fetch_from_any(
    link: &MeshLink,
    id: ContentId,
    max_size: u64,
) -> Result<Fetched, FetchError> {
    let peers: Vec<PeerId> = link
        .peers
        .rows()
        .into_iter()
        .filter_map(|p| p.peer_id.parse::<PeerId>().ok())
        .collect();
    let opts = FetchOptions {
        max_size,
        ..FetchOptions::default()
    };
    fetch(&link.net, &peers, id, &link.blobs, opts).await
}
