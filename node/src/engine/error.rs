//! What can go wrong with a media file, said so a user can act on it.

use std::path::{Path, PathBuf};

/// A media failure; every variant names the file and the cause in one line.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{file}: no such file")]
    Missing { file: PathBuf },
    #[error("{file}: cannot read: {cause}")]
    Unreadable { file: PathBuf, cause: String },
    #[error("{file}: empty file (0 bytes)")]
    Empty { file: PathBuf },
    #[error("{file}: not a media file ({cause})")]
    NotMedia { file: PathBuf, cause: String },
    #[error("{file}: no video stream")]
    NoVideo { file: PathBuf },
    #[error("{file}: no audio stream")]
    NoAudio { file: PathBuf },
    #[error("{file}: unsupported video codec {codec}")]
    UnsupportedCodec { file: PathBuf, codec: String },
    #[error("{file}: truncated or damaged ({cause})")]
    Truncated { file: PathBuf, cause: String },
    #[error("{file}: decoding failed: {cause}")]
    Decode { file: PathBuf, cause: String },
    #[error("encoder {encoder}: {cause}")]
    Encoder { encoder: String, cause: String },
    #[error("{file}: cannot write: {cause}")]
    Write { file: PathBuf, cause: String },
    #[error("{file}: {cause}")]
    Other { file: PathBuf, cause: String },
    /// The shard was cancelled (its result is no longer wanted); not a fault of anything.
    #[error("shard cancelled")]
    Cancelled,
}

impl MediaError {
    pub fn decode(file: &Path, cause: impl ToString) -> Self {
        MediaError::Decode {
            file: file.to_path_buf(),
            cause: cause.to_string(),
        }
    }

    pub fn write(file: &Path, cause: impl ToString) -> Self {
        MediaError::Write {
            file: file.to_path_buf(),
            cause: cause.to_string(),
        }
    }

    pub fn other(file: &Path, cause: impl ToString) -> Self {
        MediaError::Other {
            file: file.to_path_buf(),
            cause: cause.to_string(),
        }
    }

    /// Is this a fault of the input itself (running it again elsewhere will not help)?
    pub fn is_input_fault(&self) -> bool {
        !matches!(self, MediaError::Write { .. } | MediaError::Encoder { .. })
    }
}

impl From<MediaError> for rendermesh_mesh::ShardError {
    /// Cancelled stays cancelled; a fault of the input is final; anything else (an encoder
    /// that would not open, a write that failed) may go better on another node.
    fn from(e: MediaError) -> Self {
        use rendermesh_mesh::ShardError;
        if matches!(e, MediaError::Cancelled) {
            return ShardError::cancelled();
        }
        if e.is_input_fault() {
            ShardError::input(e.to_string())
        } else {
            ShardError::engine(e.to_string())
        }
    }
}
