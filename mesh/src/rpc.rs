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

async fn read_frame<T, M>(io: &mut T, limit: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: DeserializeOwned,
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
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
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
        read_frame(io, MAX_RESPONSE_BYTES).await
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
        write_frame(io, &res, MAX_RESPONSE_BYTES).await
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
}
