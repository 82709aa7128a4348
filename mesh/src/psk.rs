//! The mesh-key layer: the first thing on every TCP connection, below noise.
//!
//! It plays the role of libp2p's pnet (a connection is usable only between holders of the same
//! pre-shared key) with a cipher that runs on SIMD (the `chacha20` crate picks AVX2 or SSE2 at
//! run time):
//!
//! ```text
//!   dialer                                   listener
//!     ├── 24 random bytes (own nonce) ──────────▶│   both sides at once
//!     │◀────────── 24 random bytes (own nonce) ──┤
//!     │                                           │
//!     ├── XChaCha20(k, own nonce) ⊕ bytes ───────▶│   decrypted with (k, that peer's nonce)
//!     │◀──────── XChaCha20(k, own nonce) ⊕ bytes ─┤
//!
//!   k = blake3::derive_key(KEY_CONTEXT, mesh key)
//! ```
//!
//! - There is no check of the key here: a peer with another key reads noise's handshake as
//!   random bytes, so noise fails and the connection is refused. Noise then authenticates
//!   the peer and protects every byte (this layer adds no integrity of its own).
//! - The cipher key is derived from the mesh key with a context string, never the raw key
//!   bytes; the context carries this layer's version, so a peer of another version fails
//!   like a peer with another key.
//! - A peer that sends our own nonce back is refused: both directions would share one
//!   keystream.
//! - XChaCha20's block counter is 32 bits (256 GiB of keystream); every
//!   [`SEGMENT_BYTES`] a direction moves on to the next nonce (the last 8 bytes of its nonce
//!   XOR the segment number), on both sides at the same byte, so a long-lived connection
//!   never runs out of keystream.
//! - Writes are encrypted into a buffer of the layer's own and reported as written; the
//!   socket then takes them at its pace (a short write never re-encrypts or skips
//!   keystream). `flush` and `close` send what is buffered first.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::XChaCha20;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::key::SwarmKey;

/// blake3 `derive_key` context of the cipher key. A new version of this layer changes it.
pub const KEY_CONTEXT: &str = "rendermesh 2026-11-22 mesh key layer v1 XChaCha20 stream key";
/// Length of the nonce each side sends first.
pub const NONCE_LEN: usize = 24;
/// Bytes of keystream per nonce before a direction moves on to the next one (128 GiB, half
/// of what XChaCha20's 32-bit block counter allows).
pub const SEGMENT_BYTES: u64 = 1 << 37;
/// At most this many bytes are taken (and encrypted) by one `poll_write`.
const MAX_WRITE_CHUNK: usize = 256 * 1024;

/// Why the nonce exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("peer closed the connection during the mesh-key nonce exchange ({got} of {NONCE_LEN} nonce bytes received)")]
    Closed { got: usize },
    #[error("mesh-key nonce exchange: {0}")]
    Io(#[source] io::Error),
    #[error("peer sent our own nonce back (a reflected connection)")]
    Reflected,
    #[error("no random nonce from the operating system: {0}")]
    Random(String),
}

/// The cipher key of a mesh, derived from its [`SwarmKey`]. `Debug` hides the bytes.
#[derive(Clone)]
pub struct PskConfig {
    key: [u8; 32],
}

impl fmt::Debug for PskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PskConfig(..)")
    }
}

impl PskConfig {
    pub fn new(mesh_key: &SwarmKey) -> Self {
        Self {
            key: blake3::derive_key(KEY_CONTEXT, &mesh_key.bytes()),
        }
    }

    /// Exchange nonces on `socket` and wrap it: what is written is encrypted, what is read
    /// decrypted. Bounded by the caller's connection timeout.
    pub async fn handshake<S>(self, mut socket: S) -> Result<PskStream<S>, PskError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut own = [0u8; NONCE_LEN];
        getrandom::fill(&mut own).map_err(|e| PskError::Random(e.to_string()))?;
        socket.write_all(&own).await.map_err(PskError::Io)?;
        socket.flush().await.map_err(PskError::Io)?;
        let mut peer = [0u8; NONCE_LEN];
        let mut got = 0;
        while got < NONCE_LEN {
            match futures::AsyncReadExt::read(&mut socket, &mut peer[got..]).await {
                Ok(0) => return Err(PskError::Closed { got }),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PskError::Io(e)),
            }
        }
        if peer == own {
            return Err(PskError::Reflected);
        }
        Ok(PskStream {
            inner: socket,
            read: Keystream::new(self.key, peer, SEGMENT_BYTES),
            write: Keystream::new(self.key, own, SEGMENT_BYTES),
            pending: Vec::new(),
            sent: 0,
        })
    }
}

/// One direction's keystream: XChaCha20 under one key, the nonce changing every
/// `segment` bytes.
struct Keystream {
    key: [u8; 32],
    nonce: [u8; NONCE_LEN],
    segment: u64,
    /// Index of the current segment.
    index: u64,
    /// Bytes of keystream used in the current segment.
    used: u64,
    cipher: XChaCha20,
}

impl Keystream {
    fn new(key: [u8; 32], nonce: [u8; NONCE_LEN], segment: u64) -> Self {
        let cipher = XChaCha20::new(&key.into(), &nonce.into());
        Self {
            key,
            nonce,
            segment,
            index: 0,
            used: 0,
            cipher,
        }
    }

    /// XOR the next `buf.len()` bytes of keystream into `buf`.
    fn apply(&mut self, mut buf: &mut [u8]) {
        while !buf.is_empty() {
            let room = self.segment - self.used;
            let take = usize::try_from(room).map_or(buf.len(), |r| r.min(buf.len()));
            let (now, rest) = buf.split_at_mut(take);
            // within the segment, so far below the counter's end: cannot fail
            self.cipher.apply_keystream(now);
            self.used += take as u64;
            if self.used == self.segment {
                self.next_segment();
            }
            buf = rest;
        }
    }

    fn next_segment(&mut self) {
        self.index += 1;
        self.used = 0;
        let mut nonce = self.nonce;
        for (n, s) in nonce[NONCE_LEN - 8..]
            .iter_mut()
            .zip(self.index.to_le_bytes())
        {
            *n ^= s;
        }
        self.cipher = XChaCha20::new(&self.key.into(), &nonce.into());
    }
}

/// A socket behind the mesh-key layer (see the module doc).
pub struct PskStream<S> {
    inner: S,
    read: Keystream,
    write: Keystream,
    /// Encrypted bytes the socket has not taken yet: `pending[sent..]`.
    pending: Vec<u8>,
    sent: usize,
}

impl<S> fmt::Debug for PskStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PskStream")
            .field("pending", &(self.pending.len() - self.sent))
            .finish_non_exhaustive()
    }
}

impl<S: AsyncWrite + Unpin> PskStream<S> {
    /// Hand the buffered ciphertext to the socket; ready once all of it is taken.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket took no bytes",
                    )))
                }
                Poll::Ready(Ok(n)) => self.sent += n,
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PskStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        let n = n.min(buf.len());
        this.read.apply(&mut buf[..n]);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PskStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // earlier ciphertext first: the keystream position is that of the buffer's end
        match this.poll_send_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map_ok(|()| 0),
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_WRITE_CHUNK);
        let start = this.pending.len();
        this.pending.extend_from_slice(&buf[..n]);
        this.write.apply(&mut this.pending[start..]);
        // The n bytes are ours now. Offer them to the socket at once; whatever it does not
        // take (or an error, which a socket reports again) is dealt with by the next write,
        // flush or close.
        let _ = this.poll_send_pending(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_send_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_close(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::task::Waker;

    use futures::executor::block_on;
    use futures::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One direction of an in-memory pipe.
    #[derive(Default)]
    struct Pipe {
        buf: VecDeque<u8>,
        closed: bool,
        reader: Option<Waker>,
        writer: Option<Waker>,
        /// Every byte ever written, as it went over the "wire".
        wire: Vec<u8>,
    }

    /// One end of a duplex in-memory pipe. Writes take at most `max_write` bytes and every
    /// third write call is `Pending` (waking at once); the pipe holds at most `CAP` bytes.
    struct End {
        rx: Arc<Mutex<Pipe>>,
        tx: Arc<Mutex<Pipe>>,
        max_write: usize,
        calls: u32,
    }

    const CAP: usize = 4096;

    fn pair(max_write: usize) -> (End, End) {
        let ab = Arc::new(Mutex::new(Pipe::default()));
        let ba = Arc::new(Mutex::new(Pipe::default()));
        let a = End {
            rx: ba.clone(),
            tx: ab.clone(),
            max_write,
            calls: 0,
        };
        let b = End {
            rx: ab,
            tx: ba,
            max_write,
            calls: 0,
        };
        (a, b)
    }

    impl AsyncRead for End {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut p = self.rx.lock().unwrap();
            if p.buf.is_empty() {
                if p.closed {
                    return Poll::Ready(Ok(0));
                }
                p.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = out.len().min(p.buf.len());
            for (o, b) in out.iter_mut().zip(p.buf.drain(..n)) {
                *o = b;
            }
            if let Some(w) = p.writer.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for End {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.calls == 3 {
                this.calls = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut p = this.tx.lock().unwrap();
            let room = CAP - p.buf.len();
            if room == 0 {
                p.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = data.len().min(this.max_write).min(room);
            p.buf.extend(&data[..n]);
            p.wire.extend_from_slice(&data[..n]);
            if let Some(w) = p.reader.take() {
                w.wake();
            }
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut p = self.tx.lock().unwrap();
            p.closed = true;
            if let Some(w) = p.reader.take() {
                w.wake();
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Odd-sized writes, then close.
    async fn send<W: AsyncWrite + Unpin>(s: &mut W, data: &[u8]) {
        let sizes = [1usize, 7, 13, 64, 65, 4099, 3, 65_537, 127];
        let mut at = 0;
        for n in sizes.iter().cycle() {
            if at == data.len() {
                break;
            }
            let n = (*n).min(data.len() - at);
            s.write_all(&data[at..at + n]).await.unwrap();
            at += n;
        }
        s.close().await.unwrap();
    }

    /// Reads of odd sizes until end of stream.
    async fn receive<R: AsyncRead + Unpin>(s: &mut R) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 5000];
        for want in [5usize, 1, 333, 4999, 17].iter().cycle() {
            let n = s.read(&mut buf[..*want]).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn connected(
        key_a: &SwarmKey,
        key_b: &SwarmKey,
        max_write: usize,
    ) -> (PskStream<End>, PskStream<End>) {
        let (a, b) = pair(max_write);
        let (a, b) = block_on(futures::future::join(
            PskConfig::new(key_a).handshake(a),
            PskConfig::new(key_b).handshake(b),
        ));
        (a.unwrap(), b.unwrap())
    }

    #[test]
    fn round_trip_each_way_through_short_writes() {
        let key = SwarmKey::from_bytes([3; 32]);
        for max_write in [3, 1000, usize::MAX] {
            let (mut a, mut b) = connected(&key, &key, max_write);
            let to_b = pattern(300_000, 1);
            let to_a = pattern(123_457, 2);
            let (_, got_b) = block_on(futures::future::join(send(&mut a, &to_b), receive(&mut b)));
            assert!(got_b == to_b, "a→b differs (max_write {max_write})");
            let (_, got_a) = block_on(futures::future::join(send(&mut b, &to_a), receive(&mut a)));
            assert!(got_a == to_a, "b→a differs (max_write {max_write})");
            // the plaintext is not what went over the wire
            let wire = a.inner.tx.lock().unwrap().wire.clone();
            assert_eq!(wire.len(), NONCE_LEN + to_b.len());
            assert!(wire[NONCE_LEN..] != to_b[..]);
        }
    }

    #[test]
    fn round_trip_both_ways_at_once() {
        let key = SwarmKey::from_bytes([4; 32]);
        let (a, b) = connected(&key, &key, 5);
        let to_b = pattern(50_001, 5);
        let to_a = pattern(70_003, 6);
        let (mut a_r, mut a_w) = a.split();
        let (mut b_r, mut b_w) = b.split();
        let ((), got_b, (), got_a) = block_on(async {
            futures::join!(
                send(&mut a_w, &to_b),
                receive(&mut b_r),
                send(&mut b_w, &to_a),
                receive(&mut a_r)
            )
        });
        assert!(got_b == to_b, "a→b differs");
        assert!(got_a == to_a, "b→a differs");
    }

    #[test]
    fn another_key_reads_other_bytes() {
        let (mut a, mut b) = connected(
            &SwarmKey::from_bytes([1; 32]),
            &SwarmKey::from_bytes([2; 32]),
            usize::MAX,
        );
        let data = pattern(10_000, 9);
        let (_, got) = block_on(futures::future::join(send(&mut a, &data), receive(&mut b)));
        assert_eq!(got.len(), data.len());
        let same = got.iter().zip(&data).filter(|(x, y)| x == y).count();
        assert!(
            same < data.len() / 50,
            "{same} of {} bytes equal",
            data.len()
        );
    }

    #[test]
    fn peer_closing_during_the_nonce_exchange_is_an_error() {
        for sent in [0usize, 10] {
            let (a, mut b) = pair(usize::MAX);
            let peer = async {
                b.write_all(&[7u8; 10][..sent]).await.unwrap();
                b.close().await.unwrap();
            };
            let (r, ()) = block_on(futures::future::join(
                PskConfig::new(&SwarmKey::from_bytes([1; 32])).handshake(a),
                peer,
            ));
            match r {
                Err(PskError::Closed { got }) => assert_eq!(got, sent),
                other => panic!("expected Closed, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_reflected_nonce_is_refused() {
        let (a, mut b) = pair(usize::MAX);
        let mirror = async {
            let mut nonce = [0u8; NONCE_LEN];
            b.read_exact(&mut nonce).await.unwrap();
            b.write_all(&nonce).await.unwrap();
        };
        let (r, ()) = block_on(futures::future::join(
            PskConfig::new(&SwarmKey::from_bytes([1; 32])).handshake(a),
            mirror,
        ));
        assert!(matches!(r, Err(PskError::Reflected)), "{r:?}");
    }

    #[test]
    fn keystream_segments_agree_however_the_bytes_are_cut() {
        let key = [5u8; 32];
        let nonce = [6u8; NONCE_LEN];
        let data = pattern(1000, 3);
        let mut whole = data.clone();
        Keystream::new(key, nonce, 100).apply(&mut whole);
        let mut pieces = data.clone();
        let mut ks = Keystream::new(key, nonce, 100);
        for chunk in pieces.chunks_mut(37) {
            ks.apply(chunk);
        }
        assert_eq!(whole, pieces);
        // the first segment is plain XChaCha20; the next one uses another nonce
        let mut plain = data.clone();
        XChaCha20::new(&key.into(), &nonce.into()).apply_keystream(&mut plain);
        assert_eq!(whole[..100], plain[..100]);
        assert_ne!(whole[100..200], plain[100..200]);
        let mut back = whole.clone();
        Keystream::new(key, nonce, 100).apply(&mut back);
        assert_eq!(back, data);
    }

    #[test]
    fn the_cipher_key_is_derived_not_the_mesh_key() {
        let mesh = SwarmKey::from_bytes([8; 32]);
        let cfg = PskConfig::new(&mesh);
        assert_ne!(cfg.key, mesh.bytes());
        assert_ne!(cfg.key, PskConfig::new(&SwarmKey::from_bytes([9; 32])).key);
        assert!(!format!("{cfg:?}").contains('8'));
    }
}
