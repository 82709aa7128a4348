//! Files written for the user: atomically (a temp file beside the destination, then a
//! rename), so a reader never sees a partial file and a failure leaves nothing behind.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The temp files being written now, for [`remove_unfinished`].
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remove the temp files still being written (a command interrupted mid-delivery).
pub fn remove_unfinished() {
    for tmp in unfinished().drain(..) {
        let _ = std::fs::remove_file(tmp);
    }
}

/// A temp path beside `dest`, so the final rename stays on one filesystem.
pub fn temp_beside(dest: &Path) -> PathBuf {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dir.join(format!(".{name}.rendermesh-{}.tmp", std::process::id()))
}

/// Write `dest` from `src` through a temp file in the same directory and a rename, so a
/// reader never sees a partial file and a failure leaves nothing behind.
pub fn write_atomic(dest: &Path, mut src: impl Read) -> anyhow::Result<u64> {
    let tmp = temp_beside(dest);
    unfinished().push(tmp.clone());
    let result = (|| -> std::io::Result<u64> {
        let mut f = std::fs::File::create(&tmp)?;
        let n = std::io::copy(&mut src, &mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        Ok(n)
    })();
    unfinished().retain(|p| p != &tmp);
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("{}: cannot write: {e}", dest.display())
    })
}

/// Move a finished file to `dest` atomically: a rename when both are on one filesystem,
/// else a copy through [`write_atomic`]. The source is gone afterwards either way.
pub fn move_atomic(src: &Path, dest: &Path) -> anyhow::Result<u64> {
    let len = std::fs::metadata(src)?.len();
    let tmp = temp_beside(dest);
    if std::fs::rename(src, &tmp).is_ok() {
        let done = std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, dest));
        return match done {
            Ok(()) => Ok(len),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(anyhow::anyhow!("{}: cannot write: {e}", dest.display()))
            }
        };
    }
    let n = write_atomic(dest, std::fs::File::open(src)?)?;
    let _ = std::fs::remove_file(src);
    Ok(n)
}
