//! The CLI's side of the control API.

use std::io::Read;
use std::time::Duration;

use rendermesh_protocol::{JobId, JobResult, JobStatus};

use super::ControlInfo;
use crate::jobs::kind::SubmitRequest;

/// A connection to a running node.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

fn api_err(e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let msg = resp
                .into_json::<serde_json::Value>()
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {code}"));
            anyhow::anyhow!("{msg}")
        }
        other => anyhow::anyhow!("node is not answering: {other}"),
    }
}

impl Client {
    pub fn new(info: &ControlInfo, token: String) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .build();
        Self {
            base: format!("http://{}", info.addr),
            token,
            agent,
        }
    }

    /// Does a node answer?
    pub fn ping(&self) -> bool {
        self.agent
            .get(&format!("{}/v1/health", self.base))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn submit(&self, req: &SubmitRequest) -> anyhow::Result<JobId> {
        let v: serde_json::Value = self
            .agent
            .post(&format!("{}/v1/jobs", self.base))
            .set("Authorization", &self.auth())
            .send_json(req)
            .map_err(api_err)?
            .into_json()?;
        let id = v.get("id").and_then(|i| i.as_str()).unwrap_or_default();
        id.parse()
            .map_err(|e| anyhow::anyhow!("node answered a bad job id {id:?}: {e}"))
    }

    pub fn status(&self, id: JobId) -> anyhow::Result<JobStatus> {
        Ok(self.get(&format!("/v1/jobs/{id}"))?.into_json()?)
    }

    /// The status once the job is over, or after `wait_ms` milliseconds (at most 2000).
    pub fn status_waiting(&self, id: JobId, wait_ms: u64) -> anyhow::Result<JobStatus> {
        Ok(self
            .get(&format!("/v1/jobs/{id}?wait_ms={wait_ms}"))?
            .into_json()?)
    }

    pub fn list(&self) -> anyhow::Result<Vec<JobStatus>> {
        Ok(self.get("/v1/jobs")?.into_json()?)
    }

    pub fn peers(&self) -> anyhow::Result<Vec<rendermesh_mesh::PeerEntry>> {
        Ok(self.get("/v1/peers")?.into_json()?)
    }

    pub fn cache_entries(&self) -> anyhow::Result<Vec<super::CacheRow>> {
        Ok(self.get("/v1/cache/entries")?.into_json()?)
    }

    pub fn result(&self, id: JobId) -> anyhow::Result<JobResult> {
        Ok(self.get(&format!("/v1/jobs/{id}/result"))?.into_json()?)
    }

    /// The output file's bytes, as a reader.
    pub fn output(&self, id: JobId) -> anyhow::Result<Box<dyn Read + Send + Sync>> {
        Ok(self.get(&format!("/v1/jobs/{id}/output"))?.into_reader())
    }

    /// Ask the node to drain (finish its shards, take no new ones) and exit.
    pub fn drain(&self) -> anyhow::Result<()> {
        self.agent
            .post(&format!("{}/v1/drain", self.base))
            .set("Authorization", &self.auth())
            .call()
            .map_err(api_err)?;
        Ok(())
    }

    /// Cancel job `id` wherever it runs: the node's line on what it did.
    pub fn cancel(&self, id: &str) -> anyhow::Result<String> {
        let answer: serde_json::Value = self
            .agent
            .post(&format!("{}/v1/jobs/{id}/cancel", self.base))
            .set("Authorization", &self.auth())
            .call()
            .map_err(api_err)?
            .into_json()?;
        Ok(answer
            .get("ok")
            .and_then(|v| v.as_str())
            .unwrap_or("cancelled")
            .to_string())
    }

    /// The output file of item `n` of a job of many files, as a reader.
    pub fn item_output(&self, id: JobId, n: usize) -> anyhow::Result<Box<dyn Read + Send>> {
        Ok(Box::new(
            self.get(&format!("/v1/jobs/{id}/items/{n}/output"))?
                .into_reader(),
        ))
    }

    pub fn drop_item_output(&self, id: JobId, n: usize) -> anyhow::Result<()> {
        self.agent
            .delete(&format!("{}/v1/jobs/{id}/items/{n}/output", self.base))
            .set("Authorization", &self.auth())
            .call()
            .map_err(api_err)?;
        Ok(())
    }

    pub fn drop_output(&self, id: JobId) -> anyhow::Result<()> {
        self.agent
            .delete(&format!("{}/v1/jobs/{id}/output", self.base))
            .set("Authorization", &self.auth())
            .call()
            .map_err(api_err)?;
        Ok(())
    }

    /// The node's watched folders.
    pub fn watches(&self) -> anyhow::Result<Vec<crate::watch::WatchRow>> {
        Ok(self.get("/v1/watches")?.into_json()?)
    }

    /// The marks of watch `watch`.
    pub fn watch_marks(&self, watch: &str) -> anyhow::Result<Vec<super::MarkRow>> {
        Ok(self
            .get(&format!("/v1/watch/{watch}/records"))?
            .into_json()?)
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
        self.agent
            .put(&format!("{}/v1/watch/{watch}/records", self.base))
            .set("Authorization", &self.auth())
            .send_json(&row)
            .map_err(api_err)?;
        Ok(())
    }

    fn get(&self, path: &str) -> anyhow::Result<ureq::Response> {
        self.agent
            .get(&format!("{}{path}", self.base))
            .set("Authorization", &self.auth())
            .call()
            .map_err(api_err)
    }
}
