//! `rendermesh submit KIND`: send a job to the local node, or, when no node answers, run the
//! same actors in this process as a mesh of one. Shows progress, then writes the results as
//! the invoking user, atomically (temp file + rename).
//!
//! One file per kind turns its arguments into the kind's parameters and its result into
//! files and lines: [`transcode`], [`scenes`], [`checksum`], [`beats`], [`montage`]. What they share is here.

pub mod batch;
mod beats;
mod checksum;
mod montage;
pub mod proxy;
mod scenes;
pub(crate) mod transcode;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use rendermesh_protocol::{JobId, JobResult, JobStatus};

use crate::api::client::Client;
use crate::api::connect;
use crate::cli::{CommonSubmit, SubmitCmd};
use crate::config::NodeConfig;
use crate::delivery::files::move_atomic;
pub use crate::delivery::files::write_atomic;
use crate::delivery::{HttpView, JobView, LocalView};
use crate::jobs::kind::SubmitRequest;
use crate::runtime::Runtime;

pub fn run(cfg: NodeConfig, sub: SubmitCmd) -> anyhow::Result<i32> {
    let done = match sub {
        SubmitCmd::Transcode(a) => transcode::run(cfg, a),
        SubmitCmd::Proxy(a) => proxy::run(cfg, a),
        SubmitCmd::Scenes(a) => scenes::run(cfg, a),
        SubmitCmd::Checksum(a) => checksum::run(cfg, a),
        SubmitCmd::Beats(a) => beats::run(cfg, a),
        SubmitCmd::Montage(a) => montage::run(cfg, *a),
    };
    crate::cmd::interrupt::settle();
    done
}

/// Where the finished job lives.
pub(super) enum Done {
    Node {
        client: Client,
        id: JobId,
    },
    Local {
        runtime_cache: rendermesh_cache::Cache,
    },
}

/// An input path as the node will see it: absolute, and present.
pub(super) fn input_path(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such file", p.display()),
        _ => anyhow::anyhow!("{}: cannot read: {e}", p.display()),
    })
}

/// With several inputs, one output file per input: `{name}` in the path is replaced by the
/// input's stem, or the stem is appended (`cuts.csv` → `cuts-a.csv`).
pub(super) fn per_input(out: &Path, input: &Path, many: bool) -> PathBuf {
    if !many {
        return out.to_path_buf();
    }
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let s = out.to_string_lossy();
    if s.contains("{name}") {
        return PathBuf::from(s.replace("{name}", &stem));
    }
    let base = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match out.extension() {
        Some(e) => format!("{base}-{stem}.{}", e.to_string_lossy()),
        None => format!("{base}-{stem}"),
    };
    out.with_file_name(name)
}

/// Bring a finished job's output blob (`bytes` long) to `dest`: streamed from the node, or
/// moved out of the in-process store; a short copy is removed and is an error.
pub(super) fn deliver(
    done: &Done,
    output: &rendermesh_protocol::ContentId,
    bytes: u64,
    dest: &Path,
) -> anyhow::Result<()> {
    let written = match done {
        Done::Node { client, id } => {
            let n = write_atomic(dest, client.output(*id)?)?;
            if let Err(e) = client.drop_output(*id) {
                tracing::warn!(error = %e, "node kept the output");
            }
            n
        }
        Done::Local { runtime_cache } => move_atomic(&runtime_cache.blobs.path(output), dest)?,
    };
    if written != bytes {
        let _ = std::fs::remove_file(dest);
        anyhow::bail!(
            "{}: received {written} of {bytes} bytes; removed",
            dest.display()
        );
    }
    Ok(())
}

fn progress_bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:40} [{bar:30}] {pos}/{len} frames  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

fn show(pb: &ProgressBar, s: &JobStatus) {
    pb.set_length(s.frames_total.max(1));
    pb.set_position(s.frames_done);
    let running: Vec<String> = s
        .shards
        .iter()
        .filter(|r| r.state == rendermesh_protocol::ShardState::Running)
        .map(|r| {
            let copy = if r.copies > 0 { "+copy" } else { "" };
            format!("#{}@{}{copy}", r.index, r.peer.as_deref().unwrap_or("?"))
        })
        .collect();
    let done = s
        .shards
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                rendermesh_protocol::ShardState::Done | rendermesh_protocol::ShardState::Cached
            )
        })
        .count();
    pb.set_message(format!(
        "{} {:?} {}/{} shards {}",
        s.kind,
        s.state,
        done,
        s.shards.len(),
        running.join(" ")
    ));
}

fn print_notes(status: &JobStatus) {
    for n in &status.notes {
        eprintln!("rendermesh: note: {n}");
    }
}

fn write_report(path: &Option<PathBuf>, status: &JobStatus, mode: &str) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let (decoded, encoded) = crate::engine::process_counters();
    let doc = serde_json::json!({
        "mode": mode,
        "status": status,
        "process_decoded_frames": decoded,
        "process_encoded_frames": encoded,
    });
    write_atomic(path, serde_json::to_vec_pretty(&doc)?.as_slice())?;
    Ok(())
}

/// Run the job on the local node if one answers, else in-process; wait for the result.
pub(super) fn execute(
    cfg: &NodeConfig,
    req: SubmitRequest,
    common: &CommonSubmit,
) -> anyhow::Result<(JobStatus, JobResult, Done)> {
    if !common.local {
        if let Some((_, client)) = connect(&cfg.data_dir) {
            if client.ping() {
                return execute_remote(client, req, common);
            }
        }
        eprintln!(
            "rendermesh: no node answers for data dir {}; running in-process as a mesh of one",
            cfg.data_dir.display()
        );
    }
    execute_local(cfg.clone(), req, common)
}

/// Submit `req` (to the local node when one answers, else in-process) and follow the job
/// with `follow`, on a blocking thread: a job whose outputs are taken while it runs.
pub(super) fn execute_with<T: Send + 'static>(
    cfg: &NodeConfig,
    req: SubmitRequest,
    common: &CommonSubmit,
    follow: impl FnOnce(&dyn JobView) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    if !common.local {
        if let Some((_, client)) = connect(&cfg.data_dir) {
            if client.ping() {
                let id = client.submit(&req)?;
                cancel_on_stop(&client, id);
                return follow(&HttpView {
                    client: &client,
                    id,
                });
            }
        }
        eprintln!(
            "rendermesh: no node answers for data dir {}; running in-process as a mesh of one",
            cfg.data_dir.display()
        );
    }
    let cfg = cfg.clone();
    stop_in_process();
    let sys = actix::System::new();
    sys.block_on(async move {
        let runtime = Runtime::start(cfg)?;
        let handle = runtime.submit(req).map_err(|e| anyhow::anyhow!("{e}"))?;
        let view = LocalView {
            handle,
            cache: runtime.cache.clone(),
        };
        let cache = view.cache.clone();
        let followed = tokio::task::spawn_blocking(move || follow(&view))
            .await
            .map_err(|e| anyhow::anyhow!("following the job crashed: {e}"))?;
        if followed.is_err() {
            sweep_own_temp(&cache);
        }
        followed
    })
}

/// An in-process job failed and the command exits: what its shards were still writing goes
/// with it (a node's shards are cancelled and clean up themselves).
fn sweep_own_temp(cache: &rendermesh_cache::Cache) {
    if let Err(e) = cache.blobs.clean_own_temp() {
        tracing::warn!(error = %e, "cannot remove this command's temp files");
    }
}

/// Ctrl-C or SIGTERM from here on cancels job `id` on the node (or, when it has ended, drops
/// its output there) before the command exits.
fn cancel_on_stop(client: &Client, id: JobId) {
    let client = client.clone();
    crate::cmd::interrupt::on_stop(move || {
        eprintln!("rendermesh: interrupted; cancelling job {id}");
        match client.cancel(&id.to_string()) {
            Ok(line) => eprintln!("rendermesh: {line}"),
            Err(e) => {
                // it ended meanwhile: nobody will fetch its output now
                let _ = client.drop_output(id);
                eprintln!("rendermesh: job {id} not cancelled: {e}");
            }
        }
    });
}

/// Ctrl-C or SIGTERM from here on ends the in-process mesh with the command; what it leaves
/// in its store is swept by the next start.
fn stop_in_process() {
    crate::cmd::interrupt::on_stop(|| {
        eprintln!("rendermesh: interrupted; the in-process job stops with this command");
    });
}

fn execute_remote(
    client: Client,
    req: SubmitRequest,
    common: &CommonSubmit,
) -> anyhow::Result<(JobStatus, JobResult, Done)> {
    let id = client.submit(&req)?;
    cancel_on_stop(&client, id);
    let pb = progress_bar(common.quiet);
    // each request returns at the job's end or after 150 ms: progress every 150 ms, and
    // the end seen at once
    let status = loop {
        let s = client.status_waiting(id, 150)?;
        show(&pb, &s);
        if s.state.is_final() {
            break s;
        }
    };
    pb.finish_and_clear();
    write_report(&common.report, &status, "node")?;
    print_notes(&status);
    if let Some(e) = &status.error {
        anyhow::bail!("{e}");
    }
    let result = client.result(id)?;
    Ok((status, result, Done::Node { client, id }))
}

fn execute_local(
    cfg: NodeConfig,
    req: SubmitRequest,
    common: &CommonSubmit,
) -> anyhow::Result<(JobStatus, JobResult, Done)> {
    let quiet = common.quiet;
    stop_in_process();
    let sys = actix::System::new();
    let (status, result, cache) = sys.block_on(async move {
        let runtime = Runtime::start(cfg)?;
        let handle = runtime.submit(req).map_err(|e| anyhow::anyhow!("{e}"))?;
        let pb = progress_bar(quiet);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let waiter = handle.clone();
        let wait = waiter.wait();
        tokio::pin!(wait);
        let result = loop {
            tokio::select! {
                r = &mut wait => break r,
                _ = tick.tick() => show(&pb, &handle.status()),
            }
        };
        pb.finish_and_clear();
        anyhow::Ok((handle.status(), result, runtime.cache.clone()))
    })?;
    if result.is_err() {
        sweep_own_temp(&cache);
    }
    write_report(&common.report, &status, "local")?;
    print_notes(&status);
    let result = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        status,
        result,
        Done::Local {
            runtime_cache: cache,
        },
    ))
}
