//! Point-to-point messages between nodes: one [`Request`], one [`Response`].
//!
//! They travel over the mesh's request-response protocol ([`REQUEST_PROTOCOL`]), each framed
//! as `length (u32 LE) ‖ codec message`; a frame longer than [`MAX_REQUEST_BYTES`] or
//! [`MAX_RESPONSE_BYTES`] is refused before it is read.
//!
//! Cache records travel as the bytes stored on disk: each carries its own blake3 hash, and a
//! receiver stores nothing it has not verified. Blobs travel in pieces of at most
//! [`MAX_BLOB_PIECE`] bytes; a fetcher hashes the whole blob before it uses it.
//!
//! A blob can also travel over streams ([`BLOB_STREAM_PROTOCOL`]): the fetcher sends one
//! framed [`BlobRead`], the server answers with one framed [`BlobHead`] and, when it has the
//! blob, the asked bytes (up to the blob's end), raw, then closes the stream.

use serde::{Deserialize, Serialize};

use crate::{CacheKey, ContentId, JobId, ShardError, ShardResult, ShardSpec};

/// Protocol name negotiated on each request stream.
pub const REQUEST_PROTOCOL: &str = "/rendermesh/req/2";
/// Largest request frame (a batch of pushed records).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
/// Largest response frame (a blob piece or a batch of records).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Largest blob piece a node serves.
pub const MAX_BLOB_PIECE: u32 = 4 * 1024 * 1024;
/// Protocol name of a blob stream.
pub const BLOB_STREAM_PROTOCOL: &str = "/rendermesh/blob/1";
/// Largest [`BlobRead`] or [`BlobHead`] frame.
pub const MAX_BLOB_STREAM_FRAME: usize = 4096;
/// Number of buckets in a cache digest (by the first byte of the key).
pub const DIGEST_BUCKETS: usize = 256;

/// A cache record as stored: key and the self-verifying record bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub key: CacheKey,
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// A request to a peer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// The peer's cache digest: one hash per bucket of keys.
    Digest,
    /// Every key the peer holds in `bucket`.
    BucketKeys { bucket: u8 },
    /// Records the peer holds among `keys` (missing ones are left out).
    GetEntries { keys: Vec<CacheKey> },
    /// Store these records (replication push); each is verified first.
    PutEntries { records: Vec<EntryRecord> },
    /// Up to `len` bytes of blob `id` from `offset`.
    GetBlob {
        id: ContentId,
        offset: u64,
        len: u32,
    },
    /// Run this shard (an award): fetch its input blobs from the sender, run it, answer with
    /// the result; an output blob stays with the runner until the sender fetches it.
    RunShard { shard: ShardSpec },
    /// A call for bids: how soon could the peer finish each of these shards? Answered with
    /// [`Response::Bids`]. Only the specs travel, never the input.
    CallForBids { shards: Vec<ShardSpec> },
    /// Sent by the runner of an award to its coordinator while the shard runs: a progress
    /// heartbeat that renews the award's lease. Answered with [`Response::Lease`].
    ShardProgress {
        job: JobId,
        index: u32,
        frames_done: u64,
    },
    /// Sent by a coordinator to a runner: stop running this shard (another copy won, or the
    /// job ended). Answered with [`Response::Lease`] `{ keep: false }`.
    CancelShard { job: JobId, index: u32 },
    /// Sent by a coordinator to a busy runner: fetch blob `id` from the sender now; it is the
    /// input of the shard the runner is expected to be awarded next, so that shard can start
    /// as soon as a slot frees instead of after a transfer. Not an award: the runner may get
    /// another shard, and a fetched input nobody uses is dropped after a while. Answered with
    /// [`Response::Prefetch`].
    Prefetch { id: ContentId },
    /// The jobs the peer coordinates, newest first, without their shard tables and items
    /// (at most [`MAX_LISTED_JOBS`]). Answered with [`Response::Jobs`].
    ListJobs,
    /// One job the peer coordinates, whole. Answered with [`Response::Job`].
    GetJob { job: JobId },
    /// Act on a job the peer coordinates, or on the peer itself. Answered with
    /// [`Response::Done`].
    Control(ControlAction),
}

/// Most jobs one [`Request::ListJobs`] answer may list.
pub const MAX_LISTED_JOBS: usize = 200;

/// What a [`Request::Control`] asks of a peer (any node of the mesh may ask: the mesh key
/// is the permission).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlAction {
    /// Stop the job everywhere: its runs are cancelled, it ends `Cancelled`.
    Cancel { job: JobId },
    /// Submit the job again, as it was first submitted; the answer names the new job.
    Rerun { job: JobId },
    /// Finish what runs, take no new work, and exit.
    Drain,
}

/// The first and only frame a fetcher sends on a blob stream: send `len` bytes of blob `id`
/// from `offset` (fewer when the blob ends first; `u64::MAX` = to the end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRead {
    pub id: ContentId,
    pub offset: u64,
    pub len: u64,
}

/// The server's first frame on a blob stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobHead {
    /// The blob has `total` bytes; bytes `offset..min(offset + len, total)` follow, raw.
    Data { total: u64 },
    /// The server does not have that blob.
    NoBlob,
    /// The read was understood but cannot be served (a read error,
    /// too many streams); the text says why.
    Error(String),
}

/// One bidder's answer to one shard of a [`Request::CallForBids`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Bid {
    /// It would run the shard: `compute_s` seconds of work once started (from its calibrated
    /// cost model, corrected by speeds it observed), `fetch_bytes` of input it lacks.
    Offer {
        shard: u32,
        compute_s: f64,
        fetch_bytes: u64,
    },
    /// It cannot meet the shard's requirements (memory, encoder, codec); `reason` says which.
    Decline { shard: u32, reason: String },
}

/// A bidder's answer to a call for bids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BidSheet {
    /// Shard slots of the bidder and how many are free now.
    pub slots: u32,
    pub free_slots: u32,
    /// Seconds until its first busy slot is expected to free (0 when a slot is free).
    pub queue_s: f64,
    /// One bid per shard of the call, in the call's order.
    pub bids: Vec<Bid>,
}

/// Longest wait a bidder may claim before its first slot frees (a day).
pub const MAX_QUEUE_S: f64 = 86_400.0;
/// Longest compute time a bidder may claim for one shard (a week).
pub const MAX_COMPUTE_S: f64 = 7.0 * 86_400.0;

impl BidSheet {
    /// Check a peer's sheet for the `shards` (indices, in order) it answers before any of
    /// its numbers are used: slots within [`crate::caps::MAX_SLOTS`], times finite and
    /// bounded, one bid per shard, each for the shard it answers.
    pub fn validate(&self, shards: &[u32]) -> Result<(), String> {
        if self.slots > crate::caps::MAX_SLOTS || self.free_slots > self.slots {
            return Err(format!("{} slots, {} free", self.slots, self.free_slots));
        }
        if !self.queue_s.is_finite() || self.queue_s < 0.0 || self.queue_s > MAX_QUEUE_S {
            return Err(format!("a queue of {} s", self.queue_s));
        }
        if self.bids.len() != shards.len() {
            return Err(format!(
                "{} bids for {} shards",
                self.bids.len(),
                shards.len()
            ));
        }
        for (b, &index) in self.bids.iter().zip(shards) {
            let ok = match b {
                Bid::Offer {
                    shard, compute_s, ..
                } => {
                    *shard == index
                        && compute_s.is_finite()
                        && *compute_s >= 0.0
                        && *compute_s <= MAX_COMPUTE_S
                }
                Bid::Decline { shard, reason } => *shard == index && reason.len() <= 1024,
            };
            if !ok {
                return Err(format!(
                    "a bid for shard {index} that does not match the call or is out of range"
                ));
            }
        }
        Ok(())
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Digest {
        entries: u64,
        /// [`DIGEST_BUCKETS`] hashes; an empty bucket hashes to all zeros.
        buckets: Vec<[u8; 32]>,
    },
    Keys(Vec<CacheKey>),
    Entries(Vec<EntryRecord>),
    /// Result of a [`Request::PutEntries`].
    Stored {
        accepted: u32,
        rejected: u32,
    },
    /// A piece of a blob and the blob's total size.
    BlobPiece {
        total: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The peer does not have that blob.
    NoBlob,
    /// A shard ran; its output blob (if any) can be fetched from the runner.
    ShardDone(ShardResult),
    /// A shard could not run; the kind says whether another node (or a later try) may succeed.
    ShardFailed(ShardError),
    /// Answer to a [`Request::CallForBids`].
    Bids(BidSheet),
    /// Answer to a [`Request::ShardProgress`] or [`Request::CancelShard`]: `keep` = the
    /// coordinator still wants this run of the shard; `false` = stop it (lease revoked).
    Lease {
        keep: bool,
    },
    /// Answer to a [`Request::Prefetch`]: `started` = the fetch runs (or the blob is here);
    /// `false` = refused (draining, or too many inputs fetched ahead already).
    Prefetch {
        started: bool,
    },
    /// Answer to a [`Request::ListJobs`].
    Jobs(Vec<crate::JobStatus>),
    /// Answer to a [`Request::GetJob`]: none when the peer does not know the job.
    Job(Option<crate::JobStatus>),
    /// Answer to a [`Request::Control`]: one line on what was done.
    Done(String),
    /// The request was understood but failed; the text says why.
    Error(String),
}

impl Response {
    /// The variant's name, for messages about an unexpected answer (without its contents,
    /// which come from a peer).
    pub fn name(&self) -> &'static str {
        match self {
            Response::Digest { .. } => "Digest",
            Response::Keys(_) => "Keys",
            Response::Entries(_) => "Entries",
            Response::Stored { .. } => "Stored",
            Response::BlobPiece { .. } => "BlobPiece",
            Response::NoBlob => "NoBlob",
            Response::ShardDone(_) => "ShardDone",
            Response::ShardFailed(_) => "ShardFailed",
            Response::Bids(_) => "Bids",
            Response::Lease { .. } => "Lease",
            Response::Prefetch { .. } => "Prefetch",
            Response::Jobs(_) => "Jobs",
            Response::Job(_) => "Job",
            Response::Done(_) => "Done",
            Response::Error(_) => "Error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(shard: u32, compute_s: f64) -> Bid {
        Bid::Offer {
            shard,
            compute_s,
            fetch_bytes: 0,
        }
    }

    #[test]
    fn a_bid_sheet_with_absurd_numbers_is_refused() {
        let ok = BidSheet {
            slots: 2,
            free_slots: 1,
            queue_s: 3.0,
            bids: vec![offer(4, 1.5), offer(5, 2.0)],
        };
        assert_eq!(ok.validate(&[4, 5]), Ok(()));
        let bad = [
            BidSheet {
                slots: 4_000_000_000,
                ..ok.clone()
            },
            BidSheet {
                free_slots: 3,
                ..ok.clone()
            },
            BidSheet {
                queue_s: f64::NAN,
                ..ok.clone()
            },
            BidSheet {
                queue_s: 1e300,
                ..ok.clone()
            },
            BidSheet {
                queue_s: -1.0,
                ..ok.clone()
            },
            BidSheet {
                bids: vec![offer(4, 1.5)],
                ..ok.clone()
            },
            BidSheet {
                bids: vec![offer(4, 1.5), offer(6, 1.0)],
                ..ok.clone()
            },
            BidSheet {
                bids: vec![offer(4, f64::INFINITY), offer(5, 1.0)],
                ..ok.clone()
            },
            BidSheet {
                bids: vec![offer(4, -2.0), offer(5, 1.0)],
                ..ok.clone()
            },
        ];
        for sheet in bad {
            assert!(sheet.validate(&[4, 5]).is_err(), "{sheet:?}");
        }
    }
}
