//! Listing a watched folder, and telling when a file has stopped growing.
//!
//! [`scan`] walks the folder (subfolders too, links not followed) and lists its video files
//! with their size and mtime; [`Settler`] remembers, across scans, since when each file has
//! looked the same: a file is settled once its size and mtime have not changed for the
//! watch's settle time. A file that disappears is forgotten.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::jobs::batch::work::VIDEO_EXTENSIONS;

/// Deepest subfolder a scan enters.
const MAX_DEPTH: usize = 32;

/// A video file of the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Its path relative to the watched folder, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

/// What a scan found: the files, and what it could not look at (one line each).
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<Seen>,
    pub problems: Vec<String>,
}

/// Does `name` end in one of the video extensions (any case)?
pub fn is_video(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The video files under `dir`, sorted by name, leaving out `skip` (an output folder inside
/// the watched one), hidden names, and anything not a regular file. An error: `dir` itself
/// cannot be listed.
pub fn scan(dir: &Path, skip: &Path) -> Result<Listing, String> {
    let mut listing = Listing::default();
    let top = std::fs::read_dir(dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    let mut stack = vec![(top, String::new(), 0usize)];
    while let Some((entries, prefix, depth)) = stack.pop() {
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    listing.problems.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                listing.problems.push(format!(
                    "{}: the name is not UTF-8; left alone",
                    path.display()
                ));
                continue;
            };
            if name.starts_with('.') || path == skip {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            if kind.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    listing.problems.push(format!(
                        "{}: deeper than {MAX_DEPTH} folders; left alone",
                        path.display()
                    ));
                    continue;
                }
                match std::fs::read_dir(&path) {
                    Ok(sub) => stack.push((sub, format!("{rel}/"), depth + 1)),
                    Err(e) => listing
                        .problems
                        .push(format!("{}: cannot list: {e}", path.display())),
                }
                continue;
            }
            if !kind.is_file() || !is_video(&name) {
                continue;
            }
            // gone since it was listed: it is simply not there
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            listing.files.push(Seen {
                rel,
                path,
                size: meta.len(),
                mtime_ns: meta
                    .mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(meta.mtime_nsec()),
            });
        }
    }
    listing.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(listing)
}

/// Since when each file has looked the same.
#[derive(Debug, Default)]
pub struct Settler {
    seen: HashMap<String, (u64, i64, Instant)>,
}

impl Settler {
    /// Take in a scan made at `now`: a file whose size or mtime changed starts over; a file
    /// no longer there is forgotten.
    pub fn observe(&mut self, files: &[Seen], now: Instant) {
        let mut next = HashMap::with_capacity(files.len());
        for f in files {
            let since = match self.seen.get(&f.rel) {
                Some(&(size, mtime, since)) if size == f.size && mtime == f.mtime_ns => since,
                _ => now,
            };
            next.insert(f.rel.clone(), (f.size, f.mtime_ns, since));
        }
        self.seen = next;
    }

    /// Has `rel` looked the same for at least `settle` at `now`?
    pub fn settled(&self, rel: &str, now: Instant, settle: Duration) -> bool {
        self.seen
            .get(rel)
            .is_some_and(|&(_, _, since)| now.saturating_duration_since(since) >= settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_lists_video_files_recursively_and_leaves_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("day1/.cache")).unwrap();
        std::fs::create_dir_all(root.join("out")).unwrap();
        for f in [
            "a.mp4",
            "B.MOV",
            "notes.txt",
            ".hidden.mp4",
            "day1/c.mkv",
            "day1/.cache/d.mp4",
            "out/a_proxy.mp4",
        ] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink(root.join("a.mp4"), root.join("link.mp4")).unwrap();
        let l = scan(root, &root.join("out")).unwrap();
        let names: Vec<&str> = l.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["B.MOV", "a.mp4", "day1/c.mkv"]);
        assert!(l.problems.is_empty());
        assert_eq!(l.files[1].size, 1);
        assert!(scan(&root.join("missing"), Path::new("/x")).is_err());
    }

    #[test]
    fn a_file_settles_only_after_it_stopped_changing() {
        let mut s = Settler::default();
        let t0 = Instant::now();
        let settle = Duration::from_millis(1500);
        let f = |size| Seen {
            rel: "a.mp4".into(),
            path: "/in/a.mp4".into(),
            size,
            mtime_ns: size as i64,
        };
        s.observe(&[f(10)], t0);
        assert!(!s.settled("a.mp4", t0 + Duration::from_millis(1000), settle));
        // it grew: the clock starts over
        s.observe(&[f(20)], t0 + Duration::from_millis(1000));
        assert!(!s.settled("a.mp4", t0 + Duration::from_millis(2000), settle));
        s.observe(&[f(20)], t0 + Duration::from_millis(2000));
        assert!(s.settled("a.mp4", t0 + Duration::from_millis(2500), settle));
        // gone, then back: a new file
        s.observe(&[], t0 + Duration::from_millis(2600));
        s.observe(&[f(20)], t0 + Duration::from_millis(2700));
        assert!(!s.settled("a.mp4", t0 + Duration::from_millis(3000), settle));
        assert!(!s.settled("other.mp4", t0 + Duration::from_secs(60), settle));
    }
}
