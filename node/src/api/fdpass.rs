//! The local socket's wire: one request a connection, as a length-prefixed JSON frame ([`Ask`]);
//! the open files a request passes follow it as `SCM_RIGHTS` messages; the answer is a frame
//! ([`Answer`]) and the body's bytes. [`peer`] tells who is at the other end (`SO_PEERCRED`).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The largest frame either side reads.
pub const MAX_FRAME: usize = 1 << 20;
/// The most files one request may pass.
pub const MAX_FILES: usize = 4096;
/// Descriptors in one message (the kernel takes at most 253).
const FILES_PER_MESSAGE: usize = 200;

/// A request: an API call (`method`, `path`, JSON `body`), and the user's paths of the open
/// files passed after it, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Ask {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// The answer's head: the status, then `length` bytes of body.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub length: u64,
}

pub fn write_frame<T: Serialize>(sock: &mut UnixStream, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a request of {} bytes is over the {MAX_FRAME}-byte limit",
            body.len()
        )));
    }
    sock.write_all(&(body.len() as u32).to_be_bytes())?;
    sock.write_all(&body)
}

pub fn read_frame<T: serde::de::DeserializeOwned>(sock: &mut UnixStream) -> io::Result<T> {
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not a frame: {e}")))
}

/// Send `fds` (a byte each message carries them on).
pub fn send_files(sock: &UnixStream, fds: &[RawFd]) -> io::Result<()> {
    for batch in fds.chunks(FILES_PER_MESSAGE) {
        let bytes = std::mem::size_of_val(batch);
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
        let mut control = vec![0u8; space];
        let mut byte = [b'F'];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and
        // the control buffer is CMSG_SPACE(bytes) long, so the one header and its data fit.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            std::ptr::copy_nonoverlapping(
                batch.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                bytes,
            );
            libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        };
        if sent != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receive `n` files sent by [`send_files`].
pub fn recv_files(sock: &UnixStream, n: usize) -> io::Result<Vec<OwnedFd>> {
    let mut got: Vec<OwnedFd> = Vec::with_capacity(n);
    while got.len() < n {
        let want = (n - got.len()).min(FILES_PER_MESSAGE);
        let bytes = want * std::mem::size_of::<RawFd>();
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
        let mut control = vec![0u8; space];
        let mut byte = [0u8];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: as in send_files; the kernel writes at most msg_controllen bytes of control
        // data, and each descriptor it hands over is taken into an OwnedFd exactly once.
        let (read, flags, fds) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let read = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            let mut fds = Vec::new();
            if read >= 0 {
                let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SCM_RIGHTS
                    {
                        let data = libc::CMSG_DATA(cmsg);
                        let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                        for i in 0..len / std::mem::size_of::<RawFd>() {
                            let fd = std::ptr::read_unaligned(
                                data.add(i * std::mem::size_of::<RawFd>()).cast::<RawFd>(),
                            );
                            fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                }
            }
            (read, msg.msg_flags, fds)
        };
        if read < 0 {
            return Err(io::Error::last_os_error());
        }
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the request promised {n} files and sent {}", got.len()),
            ));
        }
        if flags & libc::MSG_CTRUNC != 0 || fds.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a file message came without its files (or with too many)",
            ));
        }
        got.extend(fds);
    }
    got.truncate(n);
    Ok(got)
}

/// Who is at the other end of a local connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

pub fn peer(sock: &UnixStream) -> io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn frames_and_files_cross_a_socket_pair() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<std::fs::File> = (0..450)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, format!("file {i}")).unwrap();
                std::fs::File::open(&p).unwrap()
            })
            .collect();
        let ask = Ask {
            method: "POST".into(),
            path: "/v1/jobs".into(),
            body: Some(serde_json::json!({"kind": "x"})),
            files: (0..450).map(|i| PathBuf::from(format!("/f{i}"))).collect(),
        };
        write_frame(&mut a, &ask).unwrap();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_fd().as_raw_fd()).collect();
        send_files(&a, &raw).unwrap();
        let got: Ask = read_frame(&mut b).unwrap();
        assert_eq!(got.files.len(), 450);
        let fds = recv_files(&b, got.files.len()).unwrap();
        assert_eq!(fds.len(), 450);
        for (i, fd) in fds.into_iter().enumerate() {
            let mut s = String::new();
            std::fs::File::from(fd).read_to_string(&mut s).unwrap();
            assert_eq!(s, format!("file {i}"));
        }
        let me = peer(&b).unwrap();
        // SAFETY: plain getters.
        assert_eq!(me.uid, unsafe { libc::geteuid() });
        assert_eq!(me.pid as u32, std::process::id());
    }

    #[test]
    fn an_oversized_or_garbled_frame_is_an_error() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&(u32::MAX).to_be_bytes()).unwrap();
        let e = read_frame::<Ask>(&mut b).unwrap_err();
        assert!(e.to_string().contains("over the"), "{e}");
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&3u32.to_be_bytes()).unwrap();
        a.write_all(b"{{{").unwrap();
        let e = read_frame::<Ask>(&mut b).unwrap_err();
        assert!(e.to_string().contains("not a frame"), "{e}");
        // files promised and not sent
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(recv_files(&b, 2).is_err());
    }
}
