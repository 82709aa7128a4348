//! The CLI's side of the control API.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rendermesh_protocol::{JobId, JobResult, JobStatus};

use super::ControlInfo;
use crate::jobs::kind::SubmitRequest;

/// A connection to a running node: its local socket (the files of a submit go as open files),
/// or its HTTP API with the control token.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Socket(PathBuf),
    Http {
        base: String,
        token: String,
        agent: ureq::Agent,
    },
}

/// A call's answer (a success): its body, read as it comes.
struct Reply {
    body: Box<dyn Read + Send + Sync>,
}

impl Reply {
    fn json<T: serde::de::DeserializeOwned>(self) -> anyhow::Result<T> {
        let mut text = String::new();
        let mut body = self.body;
        body.read_to_string(&mut text)?;
        // the node names passed files by descriptor paths: the user's own paths here
        Ok(serde_json::from_str(&crate::engine::source::unmark(&text))?)
    }
}

fn api_err(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => error_of(code, resp.into_reader()),
        other => anyhow::anyhow!("node is not answering: {other}"),
    }
}

/// The node's line from an error answer's body.
fn error_of(code: u16, mut body: impl Read) -> anyhow::Error {
    let mut text = String::new();
    let _ = body.read_to_string(&mut text);
    let msg = serde_json::from_str::<serde_json::Value>(&crate::engine::source::unmark(&text))
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {code}"));
    anyhow::anyhow!("{msg}")
}

impl Client {
    pub fn new(info: &ControlInfo, token: String) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .build();
        Self {
            transport: Transport::Http {
                base: format!("http://{}", info.addr),
                token,
                agent,
            },
        }
    }

    /// A client of the node's local socket at `path`.
    pub fn local(path: PathBuf) -> Self {
        Self {
            transport: Transport::Socket(path),
        }
    }

    /// Does this client pass files (the node's local socket)?
    pub fn passes_files(&self) -> bool {
        matches!(self.transport, Transport::Socket(_))
    }

    /// One API call; a status of 400 or more is the node's line as an error.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        files: Vec<(PathBuf, std::fs::File)>,
    ) -> anyhow::Result<Reply> {
        match &self.transport {
            Transport::Http { base, token, agent } => {
                let req = agent
                    .request(method, &format!("{base}{path}"))
                    .set("Authorization", &format!("Bearer {token}"));
                let resp = match body {
                    Some(b) => req.send_json(b),
                    None => req.call(),
                }
                .map_err(api_err)?;
                Ok(Reply {
                    body: Box::new(resp.into_reader()),
                })
            }
            Transport::Socket(sock) => {
                use std::os::fd::AsRawFd;
                let mut conn = std::os::unix::net::UnixStream::connect(sock).map_err(|e| {
                    anyhow::anyhow!("node is not answering on {}: {e}", sock.display())
                })?;
                let ask = super::fdpass::Ask {
                    method: method.to_string(),
                    path: path.to_string(),
                    body,
                    files: files.iter().map(|(p, _)| p.clone()).collect(),
                };
                let fds: Vec<_> = files.iter().map(|(_, f)| f.as_raw_fd()).collect();
                let sent = super::fdpass::write_frame(&mut conn, &ask)
                    .and_then(|()| super::fdpass::send_files(&conn, &fds));
                drop(files);
                // a node that refuses the caller answers before it reads: its line first
                let answer: super::fdpass::Answer = match super::fdpass::read_frame(&mut conn) {
                    Ok(a) => a,
                    Err(e) => {
                        let e = sent.err().unwrap_or(e);
                        anyhow::bail!("node is not answering on {}: {e}", sock.display())
                    }
                };
                let body = conn.take(answer.length);
                if answer.status >= 400 {
                    return Err(error_of(answer.status, body));
                }
                Ok(Reply {
                    body: Box::new(body),
                })
            }
        }
    }

    /// Does a node answer?
    pub fn ping(&self) -> bool {
        match &self.transport {
            Transport::Http { base, agent, .. } => agent
                .get(&format!("{base}/v1/health"))
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok(),
            Transport::Socket(_) => self.call("GET", "/v1/health", None, vec![]).is_ok(),
        }
    }

    /// Submit a job. Through the local socket every input file named in its parameters (an
    /// absolute path of a regular file) is opened here, as the user, and passed open: a file
    /// this user cannot read is refused here, with its path.
    pub fn submit(&self, req: &SubmitRequest) -> anyhow::Result<JobId> {
        let files = if self.passes_files() {
            open_inputs(&req.params)?
        } else {
            vec![]
        };
        let v: serde_json::Value = self
            .call("POST", "/v1/jobs", Some(serde_json::to_value(req)?), files)?
            .json()?;
        let id = v.get("id").and_then(|i| i.as_str()).unwrap_or_default();
        id.parse()
            .map_err(|e| anyhow::anyhow!("node answered a bad job id {id:?}: {e}"))
    }

    pub fn status(&self, id: JobId) -> anyhow::Result<JobStatus> {
        self.get(&format!("/v1/jobs/{id}"))?.json()
    }

    /// The status once the job is over, or after `wait_ms` milliseconds (at most 2000).
    pub fn status_waiting(&self, id: JobId, wait_ms: u64) -> anyhow::Result<JobStatus> {
        self.get(&format!("/v1/jobs/{id}?wait_ms={wait_ms}"))?
            .json()
    }

    pub fn list(&self) -> anyhow::Result<Vec<JobStatus>> {
        self.get("/v1/jobs")?.json()
    }

    pub fn peers(&self) -> anyhow::Result<Vec<rendermesh_mesh::PeerEntry>> {
        self.get("/v1/peers")?.json()
    }

    pub fn cache_entries(&self) -> anyhow::Result<Vec<super::CacheRow>> {
        self.get("/v1/cache/entries")?.json()
    }

    pub fn result(&self, id: JobId) -> anyhow::Result<JobResult> {
        self.get(&format!("/v1/jobs/{id}/result"))?.json()
    }

    /// The output file's bytes, as a reader.
    pub fn output(&self, id: JobId) -> anyhow::Result<Box<dyn Read + Send + Sync>> {
        Ok(self.get(&format!("/v1/jobs/{id}/output"))?.body)
    }

    /// Ask the node to drain (finish its shards, take no new ones) and exit.
    pub fn drain(&self) -> anyhow::Result<()> {
        self.call("POST", "/v1/drain", None, vec![])?;
        Ok(())
    }

    /// Cancel job `id` wherever it runs: the node's line on what it did.
    pub fn cancel(&self, id: &str) -> anyhow::Result<String> {
        let answer: serde_json::Value = self
            .call("POST", &format!("/v1/jobs/{id}/cancel"), None, vec![])?
            .json()?;
        Ok(answer
            .get("ok")
            .and_then(|v| v.as_str())
            .unwrap_or("cancelled")
            .to_string())
    }

    /// The output file of item `n` of a job of many files, as a reader.
    pub fn item_output(&self, id: JobId, n: usize) -> anyhow::Result<Box<dyn Read + Send>> {
        Ok(self.get(&format!("/v1/jobs/{id}/items/{n}/output"))?.body)
    }

    pub fn drop_item_output(&self, id: JobId, n: usize) -> anyhow::Result<()> {
        self.call(
            "DELETE",
            &format!("/v1/jobs/{id}/items/{n}/output"),
            None,
            vec![],
        )?;
        Ok(())
    }

    pub fn drop_output(&self, id: JobId) -> anyhow::Result<()> {
        self.call("DELETE", &format!("/v1/jobs/{id}/output"), None, vec![])?;
        Ok(())
    }

    /// The node's watched folders.
    pub fn watches(&self) -> anyhow::Result<Vec<crate::watch::WatchRow>> {
        self.get("/v1/watches")?.json()
    }

    /// The marks of watch `watch`.
    pub fn watch_marks(&self, watch: &str) -> anyhow::Result<Vec<super::MarkRow>> {
        self.get(&format!("/v1/watch/{watch}/records"))?.json()
    }

    pub fn put_watch_mark(
        &self,
        watch: &str,
        file: &str,
        mark: &rendermesh_cache::Mark,
    ) -> anyhow::Result<()> {
        let row = super::MarkRow {
            file: file.to_string(),
            mark: mark.clone(),
        };
        self.call(
            "PUT",
            &format!("/v1/watch/{watch}/records"),
            Some(serde_json::to_value(&row)?),
            vec![],
        )?;
        Ok(())
    }

    fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.call("GET", path, None, vec![])
    }
}

/// Open, as this user, every input a job's parameters name: each string that is an absolute
/// path of an existing file, folders aside (other strings are not paths, or name outputs). One
/// line for a file this user may not read.
fn open_inputs(params: &serde_json::Value) -> anyhow::Result<Vec<(PathBuf, std::fs::File)>> {
    let mut paths = Vec::new();
    collect_paths(params, &mut paths);
    paths.sort();
    paths.dedup();
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        use std::os::unix::fs::OpenOptionsExt;
        // a pipe or a device opens at once too (without a writer a pipe would hold the open):
        // the node then says of it what it says of any input that is not a regular file
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    anyhow::anyhow!("{}: you may not read this file ({e})", p.display())
                }
                _ => anyhow::anyhow!("{}: cannot read: {e}", p.display()),
            })?;
        files.push((p, f));
    }
    Ok(files)
}

fn collect_paths(v: &serde_json::Value, out: &mut Vec<PathBuf>) {
    match v {
        serde_json::Value::String(s) if s.starts_with('/') => {
            let p = Path::new(s.as_str());
            // a file that exists (not a folder), even one this user may not read: opening it
            // says so
            if std::fs::metadata(p).is_ok_and(|m| !m.is_dir())
                || matches!(std::fs::metadata(p), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
            {
                out.push(p.to_path_buf());
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_paths(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_paths(x, out)),
        _ => {}
    }
}
