//! Jobs of many files from the command line: `submit transcode IN… -o DIR/` and `submit
//! proxy IN… -o DIR/`. Output names come from a template; outputs that exist are skipped
//! unless `--overwrite`; each finished file is written as soon as it is done (one line
//! each, under one progress bar); a summary names every failure; the exit code is 1 when
//! any file failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{print_notes, progress_bar, show, write_report};
use crate::cli::CommonSubmit;
use crate::config::NodeConfig;
use crate::delivery::batch::{follow, Outcome};
use crate::jobs::batch::work::{extension_of, output_name, VIDEO_EXTENSIONS};
use crate::jobs::batch::{Batch, Params, Work};
use crate::jobs::kind::{JobKind, SubmitRequest};

/// Is `out` written as a directory (it ends in `/`)? A single input with such an output is
/// a batch of one; an existing directory named without the `/` stays an error for a single
/// input, as before batches existed.
pub(super) fn is_dir_arg(out: &Path) -> bool {
    out.as_os_str().to_string_lossy().ends_with('/')
}

/// The inputs: files as given (absolute), directories replaced by their video files
/// (sorted); a name that cannot be read is a failure of its own.
pub(super) fn expand(inputs: &[PathBuf]) -> Vec<(PathBuf, Result<PathBuf, String>)> {
    let mut out = Vec::new();
    for given in inputs {
        let path = match std::fs::canonicalize(given) {
            Ok(p) => p,
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_string(),
                    _ => format!("cannot read: {e}"),
                };
                out.push((given.clone(), Err(why)));
                continue;
            }
        };
        if !path.is_dir() {
            out.push((given.clone(), Ok(path)));
            continue;
        }
        let listed = match std::fs::read_dir(&path) {
            Ok(l) => l,
            Err(e) => {
                out.push((given.clone(), Err(format!("cannot list: {e}"))));
                continue;
            }
        };
        let mut found: Vec<PathBuf> = listed
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .map(|e| e.to_string_lossy().to_lowercase())
                        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.as_str()))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            eprintln!(
                "rendermesh: note: {}: no video files in it",
                given.display()
            );
        }
        out.extend(found.into_iter().map(|p| (p.clone(), Ok(p))));
    }
    out
}

/// One file of the batch as the command line sees it before submitting.
enum Entry {
    /// To be made: its source (absolute) and destination.
    Make {
        source: PathBuf,
        dest: PathBuf,
    },
    Skipped(PathBuf),
    Failed(String),
}

/// Can files be created in `dir` (made when missing)? One line when not.
fn writable_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let probe = dir.join(format!(".rendermesh-write-check-{}", std::process::id()));
    std::fs::File::create(&probe)
        .map_err(|e| format!("{}: cannot write there: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// What to do with each input: make it, skip it (its output exists), or why it cannot be.
fn entries(
    inputs: &[(PathBuf, Result<PathBuf, String>)],
    out_dir: &Path,
    template: &str,
    ext: &str,
    overwrite: bool,
) -> Vec<Entry> {
    let dir_ok = writable_dir(out_dir);
    let mut taken: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    inputs
        .iter()
        .map(|(given, source)| {
            let source = match source {
                Ok(s) => s.clone(),
                Err(why) => return Entry::Failed(why.clone()),
            };
            if let Err(why) = &dir_ok {
                return Entry::Failed(why.clone());
            }
            let name = output_name(template, &source, ext);
            if name.contains('/') || name.is_empty() || name.starts_with('.') {
                return Entry::Failed(format!("output name {name:?} is not a plain file name"));
            }
            let dest = out_dir.join(&name);
            if std::fs::canonicalize(&dest).is_ok_and(|d| d == source) {
                return Entry::Failed(format!(
                    "{}: would be written over its own source",
                    dest.display()
                ));
            }
            if let Some(first) = taken.get(&dest) {
                return Entry::Failed(format!(
                    "{}: same output name as {}",
                    dest.display(),
                    first.display()
                ));
            }
            taken.insert(dest.clone(), given.clone());
            if dest.exists() && !overwrite {
                return Entry::Skipped(dest);
            }
            Entry::Make { source, dest }
        })
        .collect()
}

/// Run a batch: `work` on every input, outputs into `out_dir` named by `template`.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    cfg: &NodeConfig,
    inputs: &[PathBuf],
    out_dir: &Path,
    template: &str,
    overwrite: bool,
    work: Work,
    common: &CommonSubmit,
) -> anyhow::Result<i32> {
    let listed = expand(inputs);
    if listed.is_empty() {
        anyhow::bail!("no input files");
    }
    let ext = extension_of(&work.container);
    let plan = entries(&listed, out_dir, template, ext, overwrite);
    let mut sources = Vec::new();
    let mut dests = Vec::new();
    let mut slot_of = Vec::new();
    for (n, e) in plan.iter().enumerate() {
        if let Entry::Make { source, dest } = e {
            slot_of.push(n);
            sources.push(source.clone());
            dests.push(dest.clone());
        }
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.len()];
    let started = std::time::Instant::now();
    if !sources.is_empty() {
        let keep = work.keep;
        let params = Params {
            inputs: sources.clone(),
            work,
            chunk_seconds: common.chunk_seconds,
        };
        let req = SubmitRequest::new(Batch.name(), &params)?;
        let pb = progress_bar(common.quiet);
        let pb2 = pb.clone();
        let shown = sources.clone();
        let (status, made) = super::execute_with(cfg, req, common, move |view| {
            follow(view, &dests, keep, &mut |s| show(&pb2, s), &mut |n, o| {
                let text = line(&shown[n], o);
                if pb2.is_hidden() {
                    println!("{text}");
                } else {
                    pb2.println(text);
                }
            })
        })?;
        pb.finish_and_clear();
        write_report(&common.report, &status, "batch")?;
        print_notes(&status);
        for (k, o) in made.into_iter().enumerate() {
            outcomes[slot_of[k]] = Some(o);
        }
    }
    Ok(summary(&listed, &plan, &outcomes, started.elapsed()))
}

/// The line printed when a file ends.
fn line(source: &Path, o: &Outcome) -> String {
    match o {
        Outcome::Written {
            dest,
            frames,
            bytes,
            cached,
            note,
        } => {
            let how = if *cached { "cached" } else { "done" };
            let note = note
                .as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default();
            format!(
                "{how:6} {} → {} ({frames} frames, {:.1} MB{note})",
                source.display(),
                dest.display(),
                *bytes as f64 / 1e6
            )
        }
        Outcome::Failed(why) => format!("FAILED {}: {why}", source.display()),
    }
}

/// Print the summary; the exit code (1 when any file failed).
fn summary(
    listed: &[(PathBuf, Result<PathBuf, String>)],
    plan: &[Entry],
    outcomes: &[Option<Outcome>],
    took: std::time::Duration,
) -> i32 {
    let (mut done, mut cached, mut skipped) = (0, 0, 0);
    let mut failed: Vec<String> = Vec::new();
    for (n, e) in plan.iter().enumerate() {
        let given = listed[n].0.display();
        match (e, &outcomes[n]) {
            (Entry::Skipped(dest), _) => {
                skipped += 1;
                println!("skip   {given}: {} exists", dest.display());
            }
            (Entry::Failed(why), _) => {
                println!("FAILED {given}: {why}");
                failed.push(format!("{given}: {why}"));
            }
            (Entry::Make { .. }, Some(Outcome::Written { cached: c, .. })) => {
                done += 1;
                cached += usize::from(*c);
            }
            (Entry::Make { .. }, Some(Outcome::Failed(why))) => {
                failed.push(format!("{given}: {why}"))
            }
            (Entry::Make { .. }, None) => failed.push(format!("{given}: no answer")),
        }
    }
    println!(
        "batch: {done} done ({cached} from cache), {skipped} skipped (output exists), {} failed, in {:.1}s",
        failed.len(),
        took.as_secs_f64()
    );
    for f in &failed {
        println!("  failed: {f}");
    }
    i32::from(!failed.is_empty())
}
