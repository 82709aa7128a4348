//! Serving blob pieces: [`serve_piece`] answers a [`Request::GetBlob`] from the local blob
//! store. Blocking I/O: the request handler calls it on the blocking pool.
//!
//! [`Request::GetBlob`]: rendermesh_protocol::Request::GetBlob

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use rendermesh_cache::BlobStore;
use rendermesh_protocol::wire::MAX_BLOB_PIECE;
use rendermesh_protocol::{ContentId, Response};

/// Answer a [`Request::GetBlob`]: up to `len` (at most [`MAX_BLOB_PIECE`]) bytes of blob `id`
/// from `offset`, with the blob's total size. An offset equal to the size gives an empty piece
/// (that is how a fetcher asks for the size); beyond it is an error. Blocking I/O: call it on a
/// blocking thread.
///
/// [`Request::GetBlob`]: rendermesh_protocol::Request::GetBlob
pub fn serve_piece(blobs: &BlobStore, id: &ContentId, offset: u64, len: u32) -> Response {
    if !blobs.contains(id) {
        return Response::NoBlob;
    }
    let path = blobs.path(id);
    match read_piece(&path, offset, len.min(MAX_BLOB_PIECE)) {
        Ok(Some(r)) => {
            if let Response::BlobPiece { data, .. } = &r {
                super::tally::served(data.len() as u64);
            }
            r
        }
        Ok(None) => Response::NoBlob,
        Err(e) => {
            tracing::warn!(blob = %id.short(), offset, error = %e, "cannot serve blob piece");
            Response::Error(format!("cannot read blob: {e}"))
        }
    }
}

/// `Ok(None)`: the file vanished (evicted between the check and the open).
fn read_piece(path: &Path, offset: u64, len: u32) -> io::Result<Option<Response>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let total = file.metadata()?.len();
    if offset > total {
        return Ok(Some(Response::Error(format!(
            "offset {offset} is beyond the end of the blob ({total} bytes)"
        ))));
    }
    // at most MAX_BLOB_PIECE; read into spare capacity (no zeroing first)
    let n = (total - offset).min(u64::from(len));
    let mut data = Vec::with_capacity(n as usize);
    file.seek(SeekFrom::Start(offset))?;
    file.take(n).read_to_end(&mut data)?;
    if data.len() as u64 != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob file shorter than its size",
        ));
    }
    Ok(Some(Response::BlobPiece { total, data }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::test_store as store;

    #[test]
    fn serve_piece_reads_caps_and_refuses() {
        let (_d, s) = store();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let id = s.put_bytes(&bytes).unwrap();
        assert_eq!(
            serve_piece(&s, &id, 100, 50),
            Response::BlobPiece {
                total: 10_000,
                data: bytes[100..150].to_vec()
            }
        );
        // the tail is short, the end is empty, beyond it is an error
        assert_eq!(
            serve_piece(&s, &id, 9_990, 50),
            Response::BlobPiece {
                total: 10_000,
                data: bytes[9_990..].to_vec()
            }
        );
        assert_eq!(
            serve_piece(&s, &id, 10_000, 50),
            Response::BlobPiece {
                total: 10_000,
                data: vec![]
            }
        );
        assert!(matches!(
            serve_piece(&s, &id, 10_001, 1),
            Response::Error(_)
        ));
        assert!(matches!(
            serve_piece(&s, &id, u64::MAX, u32::MAX),
            Response::Error(_)
        ));
        assert_eq!(
            serve_piece(&s, &ContentId::of(b"absent"), 0, 10),
            Response::NoBlob
        );
    }

    #[test]
    fn serve_piece_caps_the_length() {
        let (_d, s) = store();
        let bytes = vec![7u8; MAX_BLOB_PIECE as usize + 10];
        let id = s.put_bytes(&bytes).unwrap();
        match serve_piece(&s, &id, 0, u32::MAX) {
            Response::BlobPiece { total, data } => {
                assert_eq!(total, bytes.len() as u64);
                assert_eq!(data.len(), MAX_BLOB_PIECE as usize);
            }
            other => panic!("{other:?}"),
        }
    }
}
