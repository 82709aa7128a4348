//! Inputs handed to the node as open files instead of paths.
//!
//! A user's command opens its inputs itself and passes the descriptors over the node's local
//! socket ([`crate::api::local`]); the node then reads only what that user could read. Each
//! descriptor is registered here under a *descriptor path*, `rendermesh-fd:N:/the/user's/path`,
//! which stands in for the file in a job's parameters: its last component is the file's name
//! (so stems and extensions still work), it names no file on disk (so code that opens it by
//! path fails closed, never reaching a file the user did not pass), and every opener of inputs
//! ([`open`], [`metadata`], [`super::probe::open_input`]) resolves it here.
//!
//! A registration lives as long as the job that uses it; a descriptor path whose registration
//! has ended (a job run again from the dashboard, say) is an error that says to submit again.
//! Readers of one descriptor never share a file offset: each reads at its own position.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How every descriptor path starts.
pub const MARK: &str = "rendermesh-fd:";

fn table() -> &'static Mutex<HashMap<u64, Arc<File>>> {
    static TABLE: OnceLock<Mutex<HashMap<u64, Arc<File>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<u64, Arc<File>>> {
    table().lock().unwrap_or_else(|p| p.into_inner())
}

/// A registered descriptor: its path while this value lives, released on drop.
#[derive(Debug)]
pub struct Registration {
    serial: u64,
    path: PathBuf,
}

impl Registration {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock().remove(&self.serial);
    }
}

/// Register an open file that the user knows as `shown` (an absolute path, only ever shown).
pub fn register(file: File, shown: &Path) -> Registration {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    lock().insert(serial, Arc::new(file));
    let shown = shown.to_string_lossy();
    let sep = if shown.starts_with('/') { "" } else { "/" };
    Registration {
        serial,
        path: PathBuf::from(format!("{MARK}{serial}:{sep}{shown}")),
    }
}

/// The serial of a descriptor path, `None` for an ordinary path.
fn serial(path: &Path) -> Option<u64> {
    let s = path.to_str()?;
    let rest = s.strip_prefix(MARK)?;
    let (n, _) = rest.split_once(':')?;
    n.parse().ok()
}

/// Is `path` a descriptor path registered now?
pub fn is_live(path: &Path) -> bool {
    serial(path).is_some_and(|n| lock().contains_key(&n))
}

/// The open file behind a descriptor path; `None` for an ordinary path.
fn lookup(path: &Path) -> Option<io::Result<Arc<File>>> {
    let n = serial(path)?;
    Some(lock().get(&n).cloned().ok_or_else(|| {
        io::Error::other(
            "it was passed as an open file by a command that has ended; submit it again",
        )
    }))
}

/// `text` with every descriptor path's mark removed: what the node says of an input, in the
/// user's own words (its path).
pub fn unmark(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(MARK) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARK.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(':') {
            rest = &after[digits + 1..];
        } else {
            out.push_str(MARK);
            rest = after;
        }
    }
    out.push_str(rest);
    out.into()
}

/// A reader of a file at its own position (descriptors shared by several readers).
pub struct At {
    file: Arc<File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for At {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let base = match to {
            SeekFrom::Start(n) => {
                self.pos = n;
                return Ok(n);
            }
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.file.metadata()?.len(), d),
        };
        self.pos = base
            .0
            .checked_add_signed(base.1)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// An input for reading: the passed descriptor (at a position of its own) for a descriptor
/// path, else the file opened by path.
pub enum Source {
    Passed(At),
    Opened(File),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Passed(a) => a.read(buf),
            Source::Opened(f) => f.read(buf),
        }
    }
}

impl Seek for Source {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Source::Passed(a) => a.seek(to),
            Source::Opened(f) => f.seek(to),
        }
    }
}

/// Open input `path` for reading.
pub fn open(path: &Path) -> io::Result<Source> {
    match lookup(path) {
        Some(file) => Ok(Source::Passed(At {
            file: file?,
            pos: 0,
        })),
        None => File::open(path).map(Source::Opened),
    }
}

/// The metadata of input `path` (of the passed file for a descriptor path).
pub fn metadata(path: &Path) -> io::Result<Metadata> {
    match lookup(path) {
        Some(file) => file?.metadata(),
        None => std::fs::metadata(path),
    }
}

/// Copy input `path` whole to a new file `dest`: the bytes copied.
pub fn copy_to(path: &Path, dest: &Path) -> io::Result<u64> {
    let mut from = open(path)?;
    std::io::copy(&mut from, &mut File::create(dest)?)
}

/// The open file behind a descriptor path, for callers that hash or map it whole.
pub fn passed(path: &Path) -> Option<io::Result<Arc<File>>> {
    lookup(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_registered_file_reads_at_independent_positions_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("clip.mp4");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let reg = register(File::open(&p).unwrap(), &p);
        let path = reg.path().to_path_buf();
        assert!(is_live(&path));
        assert_eq!(path.file_name().unwrap(), "clip.mp4");
        assert_eq!(path.file_stem().unwrap(), "clip");
        assert_eq!(unmark(&path.to_string_lossy()), p.to_string_lossy());
        // it names no file on disk
        assert!(std::fs::metadata(&path).is_err());
        let (mut a, mut b) = (open(&path).unwrap(), open(&path).unwrap());
        let mut buf = [0u8; 4];
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"0123");
        b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"0123", "a second reader starts at 0");
        a.seek(SeekFrom::End(-2)).unwrap();
        a.read_exact(&mut buf[..2]).unwrap();
        assert_eq!(&buf[..2], b"89");
        assert_eq!(metadata(&path).unwrap().len(), 10);
        drop(reg);
        assert!(!is_live(&path));
        let e = open(&path).err().unwrap();
        assert!(e.to_string().contains("submit it again"), "{e}");
    }

    #[test]
    fn unmark_gives_back_the_users_paths() {
        let t = "rendermesh-fd:12:/home/a/x.mp4: not media; rendermesh-fd:3:/b c.mov";
        assert_eq!(unmark(t), "/home/a/x.mp4: not media; /b c.mov");
        assert_eq!(unmark("rendermesh-fd:x:/a"), "rendermesh-fd:x:/a");
        assert_eq!(unmark("plain"), "plain");
        assert!(serial(Path::new("/a/rendermesh-fd:1:/b")).is_none());
    }
}
