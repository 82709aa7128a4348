//! The request-response codec: frames of `length (u32 LE) ‖ codec message`.
//!
//! The length is checked against the protocol's limit before a byte of the body is read, so
//! an oversized or garbled frame costs the sender its stream and the receiver nothing.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use rendermesh_protocol::wire::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, REQUEST_PROTOCOL};
use rendermesh_protocol::{codec, Request, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The libp2p protocol of [`Request`]s and [`Response`]s.
pub fn protocol() -> StreamProtocol {
    StreamProtocol::new(REQUEST_PROTOCOL)
}

/// Codec of the mesh's request-response behaviour.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeshCodec;

async fn read_len<T>(io: &mut T, limit: usize) -> io::Result<usize>
where
    T: AsyncRead + Unpin + Send,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {limit}"),
        ));
    }
    Ok(len)
}

/// Read one frame of at most `limit` bytes; a longer one is refused before its body is read.
pub(crate) async fn read_frame<T, M>(io: &mut T, limit: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
{
    let len = read_len(io, limit).await?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    codec::decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A request frame read from `bytes` the way a stream reads it (the way in for the fuzzing
/// benchmark, `mesh/examples/fuzz.rs`).
pub fn request_from_bytes(bytes: &[u8]) -> io::Result<Request> {
    let mut io = futures::io::Cursor::new(bytes);
    futures::executor::block_on(read_frame(&mut io, MAX_REQUEST_BYTES))
}

/// A response frame read from `bytes` the way a stream reads it (blob pieces included).
pub fn response_from_bytes(bytes: &[u8]) -> io::Result<Response> {
    let mut io = futures::io::Cursor::new(bytes);
    futures::executor::block_on(read_response_frame(&mut io, MAX_RESPONSE_BYTES))
}

/// A response frame. A blob piece — most of the bytes the mesh moves — is read straight into
/// its own buffer once its header is known, instead of into a frame buffer and then copied
/// out by the decoder.
async fn read_response_frame<T>(io: &mut T, limit: usize) -> io::Result<Response>
where
    T: AsyncRead + Unpin + Send,
{
    let len = read_len(io, limit).await?;
    let mut head = [0u8; codec::MAX_BLOB_PIECE_HEADER];
    let n = len.min(head.len());
    io.read_exact(&mut head[..n]).await?;
    if let Some((total, start)) = codec::blob_piece_start(&head[..n], len) {
        let mut data = vec![0u8; len - start];
        let early = n - start; // data bytes already read with the header
        data[..early].copy_from_slice(&head[start..n]);
        io.read_exact(&mut data[early..]).await?;
        return Ok(Response::BlobPiece { total, data });
    }
    let mut body = vec![0u8; len];
    body[..n].copy_from_slice(&head[..n]);
    io.read_exact(&mut body[n..]).await?;
    codec::decode(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T, M>(io: &mut T, msg: &M, limit: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Serialize,
{
    let body = codec::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if body.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds the limit of {limit}", body.len()),
        ));
    }
    io.write_all(&(body.len() as u32).to_le_bytes()).await?;
    io.write_all(&body).await?;
    io.flush().await?;
    io.close().await
}

/// A blob piece goes out as its header, then the piece from its own buffer: the same bytes
/// as [`write_frame`] without copying the piece into a frame first.
async fn write_blob_piece<T>(io: &mut T, total: u64, data: &[u8], limit: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let head = codec::blob_piece_header(total, data.len())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let len = head.len() + data.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes exceeds the limit of {limit}"),
        ));
    }
    let mut first = Vec::with_capacity(4 + head.len());
    first.extend_from_slice(&(len as u32).to_le_bytes());
    first.extend_from_slice(&head);
    io.write_all(&first).await?;
    io.write_all(data).await?;
    io.flush().await?;
    io.close().await
}

impl libp2p::request_response::Codec for MeshCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_REQUEST_BYTES).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_response_frame(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, MAX_REQUEST_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match &res {
            Response::BlobPiece { total, data } => {
                write_blob_piece(io, *total, data, MAX_RESPONSE_BYTES).await
            }
            _ => write_frame(io, &res, MAX_RESPONSE_BYTES).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use rendermesh_protocol::ContentId;

    #[test]
    fn frames_round_trip_and_oversized_or_garbled_ones_fail() {
        futures::executor::block_on(async {
            let p = protocol();
            let req = Request::GetBlob {
                id: ContentId::of(b"x"),
                offset: 7,
                len: 9,
            };
            let mut buf = Cursor::new(Vec::new());
            MeshCodec
                .write_request(&p, &mut buf, req.clone())
                .await
                .unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(MeshCodec.read_request(&p, &mut rd).await.unwrap(), req);

            // a length over the limit is refused before reading the body
            let mut big = ((MAX_REQUEST_BYTES + 1) as u32).to_le_bytes().to_vec();
            big.extend_from_slice(&[0; 16]);
            let err = MeshCodec
                .read_request(&p, &mut Cursor::new(big))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // garbage of a plausible length
            let mut junk = 12u32.to_le_bytes().to_vec();
            junk.extend_from_slice(b"RM\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff");
            assert!(MeshCodec
                .read_request(&p, &mut Cursor::new(junk))
                .await
                .is_err());
            // truncated body
            let mut short = 100u32.to_le_bytes().to_vec();
            short.extend_from_slice(b"RM");
            assert!(MeshCodec
                .read_request(&p, &mut Cursor::new(short))
                .await
                .is_err());
        });
    }

    #[test]
    fn responses_round_trip_byte_for_byte_and_blob_pieces_of_every_size_read_back() {
        futures::executor::block_on(async {
            let p = protocol();
            let mut answers = vec![
                Response::NoBlob,
                Response::Error("x".repeat(40)),
                Response::Stored {
                    accepted: 3,
                    rejected: 1,
                },
            ];
            for (total, len) in [
                (0u64, 0usize),
                (1, 1),
                (5, 3),
                (300, 17),
                (1 << 40, 127),
                (u64::MAX, 128),
                (9, 1 << 16),
                (7 << 30, 1 << 20),
            ] {
                let data = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                answers.push(Response::BlobPiece { total, data });
            }
            for answer in answers {
                let mut buf = Cursor::new(Vec::new());
                MeshCodec
                    .write_response(&p, &mut buf, answer.clone())
                    .await
                    .unwrap();
                let bytes = buf.into_inner();
                // the same bytes as the generic frame of the whole message
                let body = codec::encode(&answer).unwrap();
                assert_eq!(bytes[..4], (body.len() as u32).to_le_bytes());
                assert!(bytes[4..] == body[..], "frame of {answer:?} differs");
                let back = MeshCodec
                    .read_response(&p, &mut Cursor::new(bytes.clone()))
                    .await
                    .unwrap();
                assert_eq!(back, answer);
                // cut anywhere: an error, never a shorter piece
                for cut in [4, 5, 8, bytes.len() / 2, bytes.len() - 1] {
                    if cut < bytes.len() && cut >= 4 {
                        let r = MeshCodec
                            .read_response(&p, &mut Cursor::new(bytes[..cut].to_vec()))
                            .await;
                        assert!(r.is_err(), "{cut} of {} bytes read as {r:?}", bytes.len());
                    }
                }
            }
            // a piece whose stated data length disagrees with the frame is decoded the
            // careful way and refused
            let answer = Response::BlobPiece {
                total: 10,
                data: vec![1, 2, 3],
            };
            let mut body = codec::encode(&answer).unwrap();
            body.push(0); // one trailing byte
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&body);
            let err = MeshCodec
                .read_response(&p, &mut Cursor::new(frame))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // a piece over the response limit is refused before it is sent
            let huge = Response::BlobPiece {
                total: 1,
                data: vec![0; MAX_RESPONSE_BYTES],
            };
            let mut sink = Cursor::new(Vec::new());
            let err = MeshCodec
                .write_response(&p, &mut sink, huge)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(sink.into_inner().is_empty());
        });
    }
}
