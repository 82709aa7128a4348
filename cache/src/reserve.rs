//! The reserve: a file of [`RESERVE_BYTES`] the cache keeps beside its database, so that on a
//! full disk the store can still open. When opening fails for want of space, the reserve is
//! deleted and the open tried again: the node starts, and `cache stat`, `verify` and `gc` run,
//! so space can be freed without deleting files by hand. Once there is room again, the next
//! open writes the reserve back.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Size of the reserve (what the database needs to open, and then some).
pub const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

const NAME: &str = "reserve";

/// Is this the error of a full disk (or of a quota that is used up)?
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || e.raw_os_error() == Some(28)
}

fn path(dir: &Path) -> PathBuf {
    dir.join(NAME)
}

/// Delete the reserve of the cache in `dir`; the bytes it freed (0: there was none).
pub fn release(dir: &Path) -> u64 {
    let p = path(dir);
    let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    match fs::remove_file(&p) {
        Ok(()) => len,
        Err(_) => 0,
    }
}

/// Write the reserve of the cache in `dir` when it is missing or short. On a disk without
/// room for it the partial file is removed and `false` returned: the store runs without one.
pub fn keep(dir: &Path) -> bool {
    let p = path(dir);
    if fs::metadata(&p).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return true;
    }
    let write = || -> io::Result<()> {
        let mut f = File::create(&p)?;
        // written, not sparse: the blocks must really be taken
        let block = vec![0u8; 1024 * 1024];
        for _ in 0..RESERVE_BYTES / block.len() as u64 {
            f.write_all(&block)?;
        }
        f.sync_all()
    };
    match write() {
        Ok(()) => true,
        Err(e) => {
            let _ = fs::remove_file(&p);
            tracing::warn!(error = %e, "no room for the store's reserve; a full disk may stop the store from opening");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_released_and_written_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(keep(dir.path()));
        assert_eq!(fs::metadata(path(dir.path())).unwrap().len(), RESERVE_BYTES);
        assert!(keep(dir.path()), "an existing reserve is kept as it is");
        assert_eq!(release(dir.path()), RESERVE_BYTES);
        assert_eq!(release(dir.path()), 0);
        assert!(keep(dir.path()));
        assert!(is_no_space(&io::Error::from_raw_os_error(28)));
        assert!(!is_no_space(&io::Error::from_raw_os_error(2)));
    }
}
