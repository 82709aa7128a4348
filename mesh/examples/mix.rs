//! The benchmark's prediction for a small mesh of unequal boxes (`bench/unequal.sh`): the
//! coordinator's rules ([`rendermesh_mesh::sched::sim`]) run on the nodes' measured speeds
//! and the job's shards. Prints the predicted seconds, then the shards per node and each
//! node's idle seconds at the tail.
//!
//! ```text
//! mix --speeds 300,150 [--believed 300,300] --shards 120,120,… [--per-run 0.02] [--serial 0.4]
//! ```
//! Speeds are frames per second of shard work on each node alone (the first node
//! coordinates); shards are frames each; `--per-run` and `--serial` are seconds.

use rendermesh_mesh::sched::auction::Lot;
use rendermesh_mesh::sched::sim::{simulate, Model, Node};

fn numbers(v: &str) -> Result<Vec<f64>, String> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("not a number of at least 0: {x:?}"))
        })
        .collect()
}

fn run() -> Result<(), String> {
    let (mut speeds, mut believed, mut shards) = (Vec::new(), None, Vec::new());
    let (mut per_run, mut serial) = (0.0, 0.0);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--speeds" => speeds = numbers(&value)?,
            "--believed" => believed = Some(numbers(&value)?),
            "--shards" => shards = numbers(&value)?,
            "--per-run" => per_run = numbers(&value)?[0],
            "--serial" => serial = numbers(&value)?[0],
            other => return Err(format!("unknown option {other}")),
        }
    }
    if speeds.is_empty() || shards.is_empty() || speeds.iter().any(|s| *s <= 0.0) {
        return Err("needs --speeds (above 0) and --shards".into());
    }
    let believed = believed.unwrap_or_else(|| speeds.clone());
    if believed.len() != speeds.len() {
        return Err("--believed needs one figure per node".into());
    }
    let model = Model {
        nodes: speeds
            .iter()
            .zip(&believed)
            .enumerate()
            .map(|(i, (&speed, &b))| Node {
                speed,
                believed: if b > 0.0 { b } else { speed },
                slots: 1,
                remote: i > 0,
            })
            .collect(),
        lots: shards
            .iter()
            .enumerate()
            .map(|(i, &work)| Lot::of_work(i as u32, work.max(1e-3)))
            .collect(),
        per_run_s: per_run,
        serial_s: serial,
        copies: true,
    };
    let o = simulate(&model);
    let split: Vec<String> = o.per_node.iter().map(|n| n.to_string()).collect();
    let idle: Vec<String> = o.tail_idle.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "{:.3} shards {} idle {} copies {}",
        o.makespan,
        split.join("/"),
        idle.join("/"),
        o.copies
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mix: {e}");
        std::process::exit(2);
    }
}
