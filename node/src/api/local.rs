//! The node's local socket: how the users of this box reach their node.
//!
//! `control.sock` (in the service's runtime directory, else the data dir) is open to the node's
//! user and group (mode 0660): joining the group is the permission, and no token file is read.
//! The peer's credentials (`SO_PEERCRED`) are checked again on every connection. A request is
//! an API call ([`super::fdpass::Ask`]) that the node makes to its own HTTP API with its token;
//! a submit passes its inputs as **open files** the user's command opened, and every input of
//! a job submitted here must be one: the node then reads only what that user could read, never
//! a path the user names (which the node might read and the user might not). The files stay
//! registered ([`crate::engine::source`]) until the job ends.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fdpass::{self, Answer, Ask, Peer, MAX_FILES};
use crate::engine::source::{self, Registration};

/// The socket's file name.
pub const SOCKET_FILE: &str = "control.sock";

/// Connections served at once; more are refused with one line.
const MAX_CALLS: usize = 128;

/// The header that tells the HTTP API a submit came through this socket: its inputs must all
/// be passed files.
pub const PASSED_ONLY: &str = "x-rendermesh-passed-files-only";

/// Where the node puts its socket: the service's runtime directory when systemd gave one,
/// else the data dir.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY") {
        // systemd may list several, separated by ':'
        Some(d) if !d.is_empty() => {
            let first = d
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            PathBuf::from(first).join(SOCKET_FILE)
        }
        _ => data_dir.join(SOCKET_FILE),
    }
}

/// Who may use the socket: root, the node's own user, and members of its group.
fn allowed(peer: &Peer) -> bool {
    // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    peer.uid == 0
        || peer.uid == uid
        || peer.gid == gid
        || groups_of(peer.pid).is_some_and(|g| g.contains(&gid))
}

/// The supplementary groups of process `pid`.
fn groups_of(pid: i32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    Some(
        line.split_whitespace()
            .filter_map(|g| g.parse().ok())
            .collect(),
    )
}

/// Serve the socket at `path`, forwarding to the HTTP API at `addr` with `token`, on threads
/// of its own.
pub fn serve(path: &Path, addr: String, token: String) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    tracing::info!(socket = %path.display(), "local socket listening");
    let api = Api {
        base: format!("http://{addr}"),
        token,
        agent: ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .build(),
    };
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("local-socket".into())
        .spawn(move || {
            use std::sync::atomic::Ordering;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                if calls.fetch_add(1, Ordering::SeqCst) >= MAX_CALLS {
                    calls.fetch_sub(1, Ordering::SeqCst);
                    refuse(
                        &mut conn,
                        503,
                        "the node is answering too many local calls; try again",
                    );
                    continue;
                }
                let (api, done) = (api.clone(), calls.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("local-call".into())
                        .spawn(move || {
                            api.serve(conn);
                            done.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    calls.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })?;
    Ok(())
}

#[derive(Clone)]
struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

fn refuse(conn: &mut UnixStream, status: u16, line: &str) {
    let body = serde_json::to_vec(&serde_json::json!({ "error": line })).unwrap_or_default();
    let _ = fdpass::write_frame(
        conn,
        &Answer {
            status,
            length: body.len() as u64,
        },
    );
    let _ = conn.write_all(&body);
    // what the caller sent and the node did not read is taken off before the close: a socket
    // closed with unread bytes resets the caller's end, and the caller would lose this line
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = std::io::copy(
        &mut (&*conn).take(2 * fdpass::MAX_FRAME as u64),
        &mut std::io::sink(),
    );
}

impl Api {
    fn serve(&self, mut conn: UnixStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let peer = match fdpass::peer(&conn) {
            Ok(p) => p,
            Err(e) => return refuse(&mut conn, 403, &format!("who is calling is unknown: {e}")),
        };
        if !allowed(&peer) {
            tracing::warn!(
                uid = peer.uid,
                pid = peer.pid,
                "local socket: refused a user outside the node's group"
            );
            return refuse(
                &mut conn,
                403,
                &format!(
                    "user {} is not in the node's group: an admin of this box adds you with `usermod -aG {} USER`",
                    peer.uid,
                    group_name().unwrap_or_else(|| "rendermesh".into())
                ),
            );
        }
        let ask: Ask = match fdpass::read_frame(&mut conn) {
            Ok(a) => a,
            Err(e) => return refuse(&mut conn, 400, &format!("not a request: {e}")),
        };
        if ask.files.len() > MAX_FILES {
            return refuse(
                &mut conn,
                400,
                &format!(
                    "{} files in one request; at most {MAX_FILES}",
                    ask.files.len()
                ),
            );
        }
        let fds = match fdpass::recv_files(&conn, ask.files.len()) {
            Ok(f) => f,
            Err(e) => return refuse(&mut conn, 400, &format!("the passed files: {e}")),
        };
        let _ = conn.set_read_timeout(None);
        if !ask.path.starts_with("/v1/") || ask.path.contains("..") {
            return refuse(&mut conn, 404, &format!("{}: not an API path", ask.path));
        }
        let submit = ask.method == "POST" && ask.path == "/v1/jobs";
        if !fds.is_empty() && !submit {
            return refuse(&mut conn, 400, "only a submit passes files");
        }
        let mut held = Vec::new();
        let mut body = ask.body.clone();
        for (fd, shown) in fds.into_iter().zip(&ask.files) {
            let file = std::fs::File::from(fd);
            if let Err(line) = readable_file(&file, shown) {
                return refuse(&mut conn, 400, &line);
            }
            let reg = source::register(file, shown);
            if let Some(b) = body.as_mut() {
                replace_path(b, shown, reg.path());
            }
            held.push(reg);
        }
        let mut req = self
            .agent
            .request(&ask.method, &format!("{}{}", self.base, ask.path))
            .set("Authorization", &format!("Bearer {}", self.token));
        if submit {
            req = req.set(PASSED_ONLY, "1");
        }
        let answer = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => {
                return refuse(
                    &mut conn,
                    502,
                    &format!("the node's API did not answer: {e}"),
                )
            }
        };
        let status = resp.status();
        let length = resp
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        let mut reader = resp.into_reader();
        let (length, mut reader): (u64, Box<dyn Read>) = match length {
            Some(n) => (n, Box::new(reader.take(n))),
            None => {
                let mut all = Vec::new();
                if let Err(e) = reader.read_to_end(&mut all) {
                    return refuse(
                        &mut conn,
                        502,
                        &format!("the node's API answer broke off: {e}"),
                    );
                }
                (all.len() as u64, Box::new(std::io::Cursor::new(all)))
            }
        };
        if submit && status == 202 && !held.is_empty() {
            // the answer's body is small JSON: read it to learn the job, then pass it on
            let mut all = Vec::new();
            let _ = reader.read_to_end(&mut all);
            let id = serde_json::from_slice::<serde_json::Value>(&all)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
            if let Some(id) = id {
                self.hold_until_done(id, held);
            }
            reader = Box::new(std::io::Cursor::new(all));
        }
        if fdpass::write_frame(&mut conn, &Answer { status, length }).is_ok() {
            let _ = std::io::copy(&mut reader, &mut conn);
        }
    }

    /// Keep a job's passed files open until the job has ended.
    fn hold_until_done(&self, id: String, held: Vec<Registration>) {
        let api = self.clone();
        let _ = std::thread::Builder::new()
            .name("local-files".into())
            .spawn(move || loop {
                let state = api
                    .agent
                    .get(&format!("{}/v1/jobs/{id}?wait_ms=2000", api.base))
                    .set("Authorization", &format!("Bearer {}", api.token))
                    .call();
                let over = match state {
                    Ok(r) => r
                        .into_json::<rendermesh_protocol::JobStatus>()
                        .map(|s| s.state.is_final())
                        .unwrap_or(true),
                    Err(ureq::Error::Status(..)) => true,
                    // the API is gone: the node is stopping
                    Err(_) => true,
                };
                if over {
                    drop(held);
                    return;
                }
            });
    }
}

/// A passed file must be open for reading. One that is not a regular file (a pipe, a device)
/// is kept: the kind says of it what it says of any such input (a job of many files fails
/// that one alone), and reads nothing of it.
fn readable_file(file: &std::fs::File, shown: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on a descriptor we own.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE == libc::O_WRONLY {
        return Err(format!("{}: passed without read access", shown.display()));
    }
    match file.metadata() {
        Ok(m) if m.is_dir() => Err(format!("{}: is a directory", shown.display())),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: {e}", shown.display())),
    }
}

/// Every string of `v` that is `from` becomes `to`.
fn replace_path(v: &mut serde_json::Value, from: &Path, to: &Path) {
    match v {
        serde_json::Value::String(s) if Path::new(s.as_str()) == from => {
            *s = to.to_string_lossy().into_owned();
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| replace_path(x, from, to)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| replace_path(x, from, to)),
        _ => {}
    }
}

/// The name of the node's group.
fn group_name() -> Option<String> {
    // SAFETY: getgrgid_r writes into the buffers given; the name is read before they go.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::group = std::ptr::null_mut();
        let r = libc::getgrgid_r(
            libc::getegid(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if r != 0 || out.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(grp.gr_name)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Every input named in a submit through the socket must be a passed file: the first that is
/// not, as the line that refuses the job.
pub fn check_passed(inputs: &[String]) -> Result<(), String> {
    match inputs.iter().find(|i| !source::is_live(Path::new(i.as_str()))) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{}: through the local socket every input is passed as an open file (the rendermesh command does this); this one was named by its path",
            source::unmark(i)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_a_request_become_descriptor_paths() {
        let mut v = serde_json::json!({"kind": "t", "params": {"input": "/h/a.mp4", "clips": ["/h/a.mp4", "/h/b.mp4"], "n": 3}});
        replace_path(
            &mut v,
            Path::new("/h/a.mp4"),
            Path::new("rendermesh-fd:1:/h/a.mp4"),
        );
        assert_eq!(v["params"]["input"], "rendermesh-fd:1:/h/a.mp4");
        assert_eq!(v["params"]["clips"][0], "rendermesh-fd:1:/h/a.mp4");
        assert_eq!(v["params"]["clips"][1], "/h/b.mp4");
    }

    #[test]
    fn a_submit_naming_a_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mp4");
        std::fs::write(&p, b"x").unwrap();
        let reg = source::register(std::fs::File::open(&p).unwrap(), &p);
        let live = reg.path().to_string_lossy().into_owned();
        assert!(check_passed(std::slice::from_ref(&live)).is_ok());
        let e = check_passed(&[live.clone(), "/etc/shadow".into()]).unwrap_err();
        assert!(
            e.starts_with("/etc/shadow: through the local socket"),
            "{e}"
        );
        drop(reg);
        let e = check_passed(&[live]).unwrap_err();
        assert!(e.starts_with(&format!("{}:", p.display())), "{e}");
    }
}
