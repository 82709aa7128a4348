//! Bytes of blobs this process moved between peers, for the node's `/metrics`: received by
//! its fetches and sent by its servers (blob streams and pieces). One node runs per process,
//! so these are the node's totals. Lock-free; they only grow.

use std::sync::atomic::{AtomicU64, Ordering};

static FETCHED: AtomicU64 = AtomicU64::new(0);
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Bytes moved so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferTotals {
    /// Received from peers by fetches (a resumed partial file's prefix is not received again).
    pub fetched: u64,
    /// Sent to peers that fetched from this node.
    pub served: u64,
}

/// The totals so far.
pub fn totals() -> TransferTotals {
    TransferTotals {
        fetched: FETCHED.load(Ordering::Relaxed),
        served: SERVED.load(Ordering::Relaxed),
    }
}

pub(super) fn fetched(bytes: u64) {
    FETCHED.fetch_add(bytes, Ordering::Relaxed);
}

pub(super) fn served(bytes: u64) {
    SERVED.fetch_add(bytes, Ordering::Relaxed);
}
