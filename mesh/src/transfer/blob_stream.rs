//! Blob streams: a stretch of a blob (up to all of it) as one stream.
//!
//! ```text
//!   fetcher (transfer::fetch)                    server (serve)
//!     open "/rendermesh/blob/1" ───────────────▶ at most MAX_STREAMS at once
//!     BlobRead { id, offset, len } ────────────▶ opens the blob file (blocking pool)
//!     ◀──────────────────────── BlobHead::Data { total } | NoBlob | Error
//!     ◀──────────────────────── bytes offset..min(offset + len, total), raw; then the
//!                                               stream closes (a blocking thread reads
//!                                               1 MiB at a time, a few reads ahead)
//! ```
//!
//! A stream carries megabytes with one request, and is read as the bytes arrive: no
//! request-response round per piece. This module only frames and serves; splitting a blob
//! into stretches, verifying, resuming and choosing peers is the fetcher's job
//! ([`crate::transfer`]). A node that does not serve blob streams is fetched
//! from by pieces instead.
//!
//! Frames are `length (u32 LE) ‖ codec message`, at most [`MAX_BLOB_STREAM_FRAME`] bytes: a
//! longer or garbled frame ends the stream with an error and costs nothing else.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::StreamProtocol;
use rendermesh_cache::BlobStore;
use rendermesh_protocol::wire::{BlobHead, BlobRead, BLOB_STREAM_PROTOCOL, MAX_BLOB_STREAM_FRAME};
use rendermesh_protocol::{codec, ContentId};
use serde::de::DeserializeOwned;

use crate::tasks::Tasks;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

/// Streams served at once; a fetcher beyond that is told the server is busy.
pub const MAX_STREAMS: usize = 64;
/// Bytes read from the blob file at a time (and the size of what the fetcher reads at once).
pub const BUF: usize = 1 << 20;
/// A fetcher must send its read within this time of opening the stream.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A fetcher that takes no bytes for this long loses its stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// File reads queued ahead of the network.
const READ_AHEAD: usize = 2;

/// The libp2p protocol of blob streams.
pub fn protocol() -> StreamProtocol {
    StreamProtocol::new(BLOB_STREAM_PROTOCOL)
}

/// Told after bytes of a blob went out: `(id, offset, len, total)`.
pub type ServedHook = Arc<dyn Fn(&ContentId, u64, u64, u64) + Send + Sync>;

/// How [`serve`] serves.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Told of every stretch of bytes sent (the shard host counts an award's output as
    /// fetched once all of it went out).
    pub served: Option<ServedHook>,
    /// Fault injection: flip the first byte of every stretch sent (a lying peer).
    pub corrupt: bool,
}

/// Write one frame.
pub async fn write_frame<T, M>(io: &mut T, msg: &M) -> io::Result<()>
where
    T: AsyncWrite + Unpin,
    M: Serialize,
{
    let body = codec::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if body.len() > MAX_BLOB_STREAM_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the limit of {MAX_BLOB_STREAM_FRAME}",
                body.len()
            ),
        ));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    io.write_all(&frame).await?;
    io.flush().await
}

/// Read one frame; a length over the limit is refused before the body is read.
pub async fn read_frame<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    crate::net::rpc::read_frame(io, MAX_BLOB_STREAM_FRAME).await
}

/// Serve the blob streams peers open, from `blobs`, until `incoming` ends or `tasks` stops;
/// call inside the actix system.
pub fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    blobs: BlobStore,
    opts: ServeOptions,
    tasks: &Tasks,
) {
    let slots = Arc::new(Semaphore::new(MAX_STREAMS));
    let spawner = tasks.clone();
    tasks.spawn("blob-streams", async move {
        while let Some((peer, stream)) = incoming.next().await {
            let permit = slots.clone().try_acquire_owned().ok();
            let blobs = blobs.clone();
            let opts = opts.clone();
            spawner.spawn("blob-stream", async move {
                if let Err(e) = serve_one(stream, &blobs, &opts, permit.is_some()).await {
                    tracing::debug!(%peer, error = %e, "blob stream ended early");
                }
                drop(permit);
            });
        }
    });
}

/// Serve one stream: read the fetcher's [`BlobRead`], answer the head, send the bytes.
pub async fn serve_one<S>(
    mut stream: S,
    blobs: &BlobStore,
    opts: &ServeOptions,
    admitted: bool,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let read: BlobRead = tokio::time::timeout(READ_TIMEOUT, read_frame(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no blob read asked in time"))??;
    if !admitted {
        let busy = BlobHead::Error(format!("busy: {MAX_STREAMS} blob streams already"));
        write_frame(&mut stream, &busy).await?;
        return stream.close().await;
    }
    let BlobRead { id, offset, len } = read;
    let store = blobs.clone();
    let opened = tokio::task::spawn_blocking(move || open_blob(&store, &id, offset))
        .await
        .map_err(|e| io::Error::other(format!("opening task failed: {e}")))?;
    let (file, total) = match opened {
        Ok(Some(open)) => open,
        Ok(None) => {
            write_frame(&mut stream, &BlobHead::NoBlob).await?;
            return stream.close().await;
        }
        Err(e) => {
            tracing::warn!(blob = %id.short(), offset, error = %e, "cannot serve a blob stream");
            write_frame(
                &mut stream,
                &BlobHead::Error(format!("cannot read blob: {e}")),
            )
            .await?;
            return stream.close().await;
        }
    };
    write_frame(&mut stream, &BlobHead::Data { total }).await?;
    // beyond the end: the head alone, so a fetcher holding a longer partial file learns the
    // size and starts over
    let offset = offset.min(total);
    let end = offset.saturating_add(len).min(total);
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || read_loop(file, end - offset, tx));
    let mut at = offset;
    while let Some(read) = rx.recv().await {
        let mut data = read?;
        if opts.corrupt {
            if let Some(b) = data.first_mut() {
                *b ^= 0xff;
            }
        }
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&data))
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "the fetcher stopped reading")
            })??;
        super::tally::served(data.len() as u64);
        if let Some(hook) = &opts.served {
            hook(&id, at, data.len() as u64, total);
        }
        at += data.len() as u64;
    }
    if at != end {
        // the fetcher sees a short stream and asks again from where it got to
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file shorter than its size",
        ));
    }
    stream.close().await
}

/// The blob's file, positioned at `offset` (at its end when `offset` is beyond it), and its
/// size. `Ok(None)`: not here (or evicted between the check and the open).
fn open_blob(blobs: &BlobStore, id: &ContentId, offset: u64) -> io::Result<Option<(File, u64)>> {
    if !blobs.contains(id) {
        return Ok(None);
    }
    let mut file = match File::open(blobs.path(id)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    file.seek(SeekFrom::Start(offset.min(total)))?;
    Ok(Some((file, total)))
}

/// Read `left` bytes of `file` in [`BUF`] stretches into `tx`; stops early when the stream
/// is gone. A short file ends with an error.
fn read_loop(mut file: File, mut left: u64, tx: mpsc::Sender<io::Result<Vec<u8>>>) {
    while left > 0 {
        let n = left.min(BUF as u64);
        // read into spare capacity: no zeroing first
        let mut data = Vec::with_capacity(n as usize);
        let read = (&mut file).take(n).read_to_end(&mut data);
        let item = match read {
            Ok(got) if got as u64 == n => Ok(data),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob file shorter than its size",
            )),
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
        left -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        (dir, blobs)
    }

    /// Serve one stream whose fetcher side is `input`; returns what the server wrote.
    async fn serve_bytes(
        blobs: &BlobStore,
        input: Vec<u8>,
        opts: &ServeOptions,
    ) -> (io::Result<()>, Vec<u8>) {
        let mut io = Duplex {
            input: futures::io::Cursor::new(input),
            output: Vec::new(),
        };
        let r = serve_one(&mut io, blobs, opts, true).await;
        (r, io.output)
    }

    struct Duplex {
        input: futures::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn framed<M: Serialize>(msg: &M) -> Vec<u8> {
        let body = codec::encode(msg).unwrap();
        let mut v = (body.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&body);
        v
    }

    /// Split the server's output into its head and the raw bytes after it.
    async fn head_and_rest(out: &[u8]) -> (BlobHead, Vec<u8>) {
        let mut cur = futures::io::Cursor::new(out.to_vec());
        let head: BlobHead = read_frame(&mut cur).await.unwrap();
        let at = cur.position() as usize;
        (head, out[at..].to_vec())
    }

    fn blob_of(blobs: &BlobStore, data: &[u8]) -> ContentId {
        let tmp = blobs.temp_path("t");
        std::fs::write(&tmp, data).unwrap();
        blobs.adopt(&tmp).unwrap().0
    }

    #[tokio::test]
    async fn a_blob_is_sent_from_the_offset_to_its_end() {
        let (_d, blobs) = store();
        let data: Vec<u8> = (0..3 * BUF + 123).map(|i| (i % 251) as u8).collect();
        let id = blob_of(&blobs, &data);
        let served = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = served.clone();
        let opts = ServeOptions {
            served: Some(Arc::new(move |_: &ContentId, at, len, total| {
                log.lock().unwrap().push((at, len, total));
            })),
            corrupt: false,
        };
        let offset = BUF as u64 + 7;
        let (r, out) = serve_bytes(
            &blobs,
            framed(&BlobRead {
                id,
                offset,
                len: u64::MAX,
            }),
            &opts,
        )
        .await;
        r.unwrap();
        let (head, rest) = head_and_rest(&out).await;
        let total = data.len() as u64;
        assert_eq!(head, BlobHead::Data { total });
        assert_eq!(rest, data[offset as usize..]);
        let served = served.lock().unwrap().clone();
        assert_eq!(served.first().map(|s| s.0), Some(offset));
        assert_eq!(served.iter().map(|s| s.1).sum::<u64>(), total - offset);
        assert!(served.iter().all(|s| s.2 == total));

        // a stretch: exactly the bytes asked for, or up to the end
        let asked = BlobRead {
            id,
            offset,
            len: 1000,
        };
        let (r, out) = serve_bytes(&blobs, framed(&asked), &opts).await;
        r.unwrap();
        let (head, rest) = head_and_rest(&out).await;
        assert_eq!(head, BlobHead::Data { total });
        assert_eq!(rest, data[offset as usize..offset as usize + 1000]);
        let asked = BlobRead {
            id,
            offset: total - 5,
            len: 1000,
        };
        let (r, out) = serve_bytes(&blobs, framed(&asked), &opts).await;
        r.unwrap();
        assert_eq!(head_and_rest(&out).await.1, data[data.len() - 5..]);

        // at the end: a head and nothing else
        let (r, out) = serve_bytes(
            &blobs,
            framed(&BlobRead {
                id,
                offset: total,
                len: u64::MAX,
            }),
            &opts,
        )
        .await;
        r.unwrap();
        assert_eq!(
            head_and_rest(&out).await,
            (BlobHead::Data { total }, vec![])
        );
    }

    #[tokio::test]
    async fn missing_blobs_offsets_past_the_end_and_garbled_reads_get_answers_not_panics() {
        let (_d, blobs) = store();
        let id = blob_of(&blobs, b"hello");
        let opts = ServeOptions::default();
        let other = ContentId::of(b"not here");
        let (r, out) = serve_bytes(
            &blobs,
            framed(&BlobRead {
                id: other,
                offset: 0,
                len: 1,
            }),
            &opts,
        )
        .await;
        r.unwrap();
        assert_eq!(head_and_rest(&out).await.0, BlobHead::NoBlob);

        let (r, out) = serve_bytes(
            &blobs,
            framed(&BlobRead {
                id,
                offset: 6,
                len: 1,
            }),
            &opts,
        )
        .await;
        r.unwrap();
        // beyond the end: the size, no bytes
        assert_eq!(
            head_and_rest(&out).await,
            (BlobHead::Data { total: 5 }, vec![])
        );

        // a frame longer than the limit, a garbled one, one cut short: errors, no answer
        let mut huge = ((MAX_BLOB_STREAM_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend(vec![0u8; 16]);
        let mut garbled = 8u32.to_le_bytes().to_vec();
        garbled.extend([0xffu8; 8]);
        let cut = framed(&BlobRead {
            id,
            offset: 0,
            len: 5,
        })[..10]
            .to_vec();
        for input in [huge, garbled, cut] {
            let (r, out) = serve_bytes(&blobs, input, &opts).await;
            assert!(r.is_err());
            assert!(out.is_empty());
        }
    }

    #[tokio::test]
    async fn a_corrupting_server_flips_the_first_byte_of_each_stretch() {
        let (_d, blobs) = store();
        let data = vec![7u8; BUF + 10];
        let id = blob_of(&blobs, &data);
        let opts = ServeOptions {
            served: None,
            corrupt: true,
        };
        let (r, out) = serve_bytes(
            &blobs,
            framed(&BlobRead {
                id,
                offset: 0,
                len: u64::MAX,
            }),
            &opts,
        )
        .await;
        r.unwrap();
        let (_, rest) = head_and_rest(&out).await;
        assert_eq!(rest.len(), data.len());
        assert_eq!(rest[0], 7 ^ 0xff);
        assert_eq!(rest[BUF], 7 ^ 0xff);
        assert_eq!(rest.iter().filter(|&&b| b != 7).count(), 2);
    }
}
