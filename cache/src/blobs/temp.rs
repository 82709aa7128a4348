//! The store's temp files: what writers that are gone left behind, and a process's own.

use std::fs;
use std::io;
use std::path::Path;

use super::{io_at, BlobError, BlobStore, TMP_DIR};

impl BlobStore {
    /// Delete temp files whose writer (the pid in their name) no longer runs. Returns the
    /// files and bytes removed. Does nothing where `/proc` is not available.
    pub fn clean_temp(&self) -> Result<(usize, u64), BlobError> {
        if !Path::new("/proc/self").exists() {
            return Ok((0, 0));
        }
        let me = std::process::id().to_string();
        self.remove_temp(|pid| pid != me && !Path::new("/proc").join(pid).exists())
    }

    /// Delete this process's own temp files: a command that ran a job in-process and is
    /// about to exit, with shards of the failed job perhaps still writing. Returns the files
    /// and bytes removed.
    pub fn clean_own_temp(&self) -> Result<(usize, u64), BlobError> {
        let me = std::process::id().to_string();
        self.remove_temp(|pid| pid == me)
    }

    /// Delete the temp files whose writer's pid `gone` picks.
    fn remove_temp(&self, gone: impl Fn(&str) -> bool) -> Result<(usize, u64), BlobError> {
        let dir = self.inner.root.join(TMP_DIR);
        let mut removed = (0, 0);
        for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let entry = entry.map_err(io_at(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().filter(|p| p.parse::<u32>().is_ok()) else {
                continue;
            };
            if !gone(pid) {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    removed.0 += 1;
                    removed.1 += len;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&entry.path())(e)),
            }
        }
        Ok(removed)
    }
}
