//! `rendermesh watch DIR (--transcode|--proxy) -o OUTDIR/`: a watched folder in the
//! foreground. Batches go to the local node when one answers (its store keeps the marks),
//! else to an in-process mesh of one (one runtime for the whole session, its own store). One
//! line per file made, skipped or failed; Ctrl-C or SIGTERM stops it (a second Ctrl-C ends
//! it at once). With `--once` it takes what is there, makes it and exits: 1 when anything
//! failed.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::api::connect;
use crate::cli::WatchArgs;
use crate::config::NodeConfig;
use crate::runtime::Runtime;
use crate::watch::engine::{Event, Watcher};
use crate::watch::node::{HttpNode, LocalNode, WatchNode};
use crate::watch::{WatchConfig, WatchMode, WatchRow, WatchSpec};

/// The watch the arguments describe.
fn spec_of(a: &WatchArgs) -> anyhow::Result<WatchSpec> {
    let dir = std::fs::canonicalize(&a.dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("{}: no such folder", a.dir.display()),
        _ => anyhow::anyhow!("{}: cannot read: {e}", a.dir.display()),
    })?;
    if !dir.is_dir() {
        anyhow::bail!("{}: is not a folder", a.dir.display());
    }
    std::fs::create_dir_all(&a.output)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", a.output.display()))?;
    let out = std::fs::canonicalize(&a.output)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.output.display()))?;
    let mode = if a.proxy {
        WatchMode::Proxy
    } else {
        WatchMode::Transcode
    };
    let cfg = WatchConfig {
        name: a.name.clone(),
        codec: a.codec.clone(),
        crf: a.crf,
        preset: a.preset.clone(),
        height: a.height,
        chunk_seconds: a.chunk_seconds,
        settle_seconds: a.settle,
        interval_seconds: a.interval,
        ..WatchConfig::new(dir, out, mode)
    };
    cfg.spec()
}

pub fn run(cfg: NodeConfig, a: WatchArgs) -> anyhow::Result<i32> {
    let spec = spec_of(&a)?;
    super::interrupt::catch();
    if !a.local {
        if let Some((info, client)) = connect(&cfg.data_dir) {
            if client.ping() {
                let node = HttpNode {
                    client,
                    name: info.name.clone(),
                };
                return watch(spec, &node, a.once);
            }
        }
        eprintln!(
            "rendermesh: no node answers for data dir {}; running in-process as a mesh of one",
            cfg.data_dir.display()
        );
    }
    let once = a.once;
    let sys = actix::System::new();
    sys.block_on(async move {
        let runtime = Arc::new(Runtime::start(cfg)?);
        let node = LocalNode {
            runtime: runtime.clone(),
            arbiter: actix::Arbiter::current(),
        };
        let code = tokio::task::spawn_blocking(move || watch(spec, &node, once))
            .await
            .map_err(|e| anyhow::anyhow!("the watch crashed: {e}"))?;
        // the marks are on disk before the process ends
        if let Err(e) = runtime.cache.entries.flush() {
            tracing::warn!(error = %e, "cache flush failed");
        }
        code
    })
}

/// Run the watch against `node` until stopped (or, with `once`, until what is there is
/// made); the exit code.
fn watch(spec: WatchSpec, node: &dyn WatchNode, once: bool) -> anyhow::Result<i32> {
    let row = Arc::new(Mutex::new(WatchRow::new(&spec)));
    let (dir, out) = (spec.dir.clone(), spec.out.clone());
    let on = Box::new(move |e: &Event<'_>| print_event(&dir, e));
    println!(
        "watching {} → {} ({}, {}){}",
        spec.dir.display(),
        spec.out.display(),
        spec.mode.as_str(),
        node.describe(),
        if once { "" } else { "; Ctrl-C stops" }
    );
    let mut w = Watcher::open(spec, node, super::interrupt::flag(), row, on)?;
    let s = w.run(once);
    println!(
        "watch: {} made, {} skipped (output exists), {} failed, into {}",
        s.made,
        s.skipped,
        s.failed,
        out.display()
    );
    Ok(i32::from(once && (s.failed > 0 || s.errors > 0)))
}

fn print_event(dir: &Path, e: &Event<'_>) {
    match e {
        Event::Made {
            file,
            dest,
            frames,
            cached,
        } => {
            let how = if *cached { "cached" } else { "done" };
            println!(
                "{how:6} {} → {} ({frames} frames)",
                dir.join(file).display(),
                dest.display()
            );
        }
        Event::Skipped { file, dest } => println!(
            "skip   {}: {} exists",
            dir.join(file).display(),
            dest.display()
        ),
        Event::Failed { file, error } => {
            println!("FAILED {}: {error}", dir.join(file).display())
        }
        Event::Error(msg) => eprintln!("rendermesh: watch: {msg}"),
    }
}
