//! `rendermesh status [JOB]`: jobs of the local node and their shard tables, and its
//! watched folders (`--watches`: only those).

use rendermesh_protocol::JobStatus;

use crate::api::connect;
use crate::cli::StatusArgs;
use crate::config::NodeConfig;
use crate::watch::WatchRow;

pub fn run(cfg: NodeConfig, args: StatusArgs) -> anyhow::Result<i32> {
    let Some((info, client)) = connect(&cfg.data_dir) else {
        anyhow::bail!(
            "no node is running with data dir {}",
            cfg.data_dir.display()
        );
    };
    if args.watches {
        let watches = client.watches()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&watches)?);
        } else if watches.is_empty() {
            println!("no watched folders on {}", info.name);
        }
        if !args.json {
            print_watches(&watches);
        }
        return Ok(0);
    }
    let jobs = match &args.job {
        Some(id) => vec![client.status(
            id.parse()
                .map_err(|e| anyhow::anyhow!("bad job id {id:?}: {e}"))?,
        )?],
        None => client.list()?,
    };
    if args.json {
        let out = if args.job.is_some() {
            serde_json::to_string_pretty(&jobs[0])?
        } else {
            serde_json::to_string_pretty(&jobs)?
        };
        println!("{out}");
        return Ok(0);
    }
    if jobs.is_empty() {
        println!("no jobs on {}", info.name);
    }
    for j in &jobs {
        print_job(j, args.job.is_some());
    }
    if args.job.is_none() {
        // a node without watched folders (or too old to have them) shows none
        print_watches(&client.watches().unwrap_or_default());
    }
    Ok(0)
}

/// Errors shown per watch (the node keeps 20).
const SHOWN_ERRORS: usize = 5;

/// One block per watched folder: its counters and its most recent errors.
pub fn print_watches(watches: &[WatchRow]) {
    for w in watches {
        let waiting = if w.waiting > 0 {
            format!(", {} waiting", w.waiting)
        } else {
            String::new()
        };
        println!(
            "watch {} → {} ({}): {} done, {} failed, {} skipped{waiting}",
            w.dir.display(),
            w.out.display(),
            w.mode.as_str(),
            w.processed,
            w.failed,
            w.skipped
        );
        let from = w.errors.len().saturating_sub(SHOWN_ERRORS);
        for e in &w.errors[from..] {
            match &e.file {
                Some(f) => println!("    error: {f}: {}", e.error),
                None => println!("    error: {}", e.error),
            }
        }
    }
}

pub fn print_job(j: &JobStatus, shards: bool) {
    let pct = match (j.state, j.frames_total) {
        (rendermesh_protocol::JobState::Done, _) => 100,
        (_, 0) => 0,
        (_, total) => 100 * j.frames_done / total,
    };
    println!(
        "{}  {:<9} {:<9?} {:>3}%  {:>6.1}s  {}{}",
        j.id,
        j.kind,
        j.state,
        pct,
        j.elapsed_ms as f64 / 1000.0,
        if j.items.is_empty() {
            j.inputs.join(" ")
        } else {
            format!("{} files", j.items.len())
        },
        if j.from_cache { "  (from cache)" } else { "" }
    );
    if let Some(e) = &j.error {
        println!("    error: {e}");
    }
    print_items(j, shards);
    if shards && !j.shards.is_empty() {
        println!(
            "    {:>5}  {:<8} {:<20} {:>11} {:>8} {:>7} {:>6}  note",
            "shard", "state", "peer", "frames", "time", "retries", "copies"
        );
        for s in &j.shards {
            let frames = if s.state == rendermesh_protocol::ShardState::Running {
                format!("{}/{}", s.frames_done, s.frames)
            } else {
                s.frames.to_string()
            };
            println!(
                "    {:>5}  {:<8} {:<20} {:>11} {:>7.1}s {:>7} {:>6}  {}",
                s.index,
                format!("{:?}", s.state),
                s.peer.as_deref().unwrap_or("-"),
                frames,
                s.millis as f64 / 1000.0,
                s.retries,
                s.copies,
                s.note.as_deref().unwrap_or("")
            );
        }
    }
}

/// A job of many files: how many files stand where; the failures (every file with `all`).
fn print_items(j: &JobStatus, all: bool) {
    use rendermesh_protocol::ItemState;
    if j.items.is_empty() {
        return;
    }
    let count = |st: ItemState| j.items.iter().filter(|i| i.state == st).count();
    println!(
        "    files: {} done, {} from cache, {} failed, {} running, {} waiting",
        count(ItemState::Done),
        count(ItemState::Cached),
        count(ItemState::Failed),
        count(ItemState::Running),
        count(ItemState::Waiting)
    );
    for i in &j.items {
        if all || i.state == ItemState::Failed {
            let note = i
                .note
                .as_deref()
                .map(|n| format!("  {n}"))
                .unwrap_or_default();
            println!(
                "    {:<8} {}/{} shards  {}{note}",
                format!("{:?}", i.state),
                i.shards_done,
                i.shards,
                i.name
            );
        }
    }
}
