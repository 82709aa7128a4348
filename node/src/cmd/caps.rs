//! `rendermesh caps`: what this box can do, probed and calibrated once per hardware and
//! binary version (cached in the data dir).

use rendermesh_protocol::Capabilities;

use crate::cli::CapsArgs;
use crate::config::NodeConfig;
use crate::jobs::calibrate::load_or_probe;
use crate::jobs::registry::fill_speeds;

pub fn run(cfg: NodeConfig, args: CapsArgs) -> anyhow::Result<i32> {
    let force_cpu = cfg.effective_force_cpu();
    if !args.json {
        eprintln!("probing encoders (a test encode each) and calibrating; cached afterwards…");
    }
    let (caps, cached) = load_or_probe(
        &cfg.data_dir,
        force_cpu,
        cfg.effective_threads(),
        args.recalibrate,
        fill_speeds,
        &rendermesh_mesh::exec::CancelToken::default(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&caps)?);
    } else {
        print(&caps, cached);
    }
    Ok(0)
}

fn print(c: &Capabilities, cached: bool) {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!("{} — {} {} ({})", c.hostname, c.arch, c.os, c.cpu_model);
    println!(
        "cores {} / threads {}, RAM {:.1} GiB ({:.1} GiB available){}",
        c.cores,
        c.threads,
        gib(c.ram_total_bytes),
        gib(c.ram_available_bytes),
        if c.force_cpu {
            ", GPUs hidden (force_cpu)"
        } else {
            ""
        }
    );
    if c.gpus.is_empty() {
        println!("GPUs: none");
    }
    for g in &c.gpus {
        println!("GPU: {} {} ({})", g.vendor, g.name, g.device);
    }
    println!(
        "scene analysis: {:.0} fps at 720p, {:.0} fps at 1080p (per shard)",
        c.scene_fps_720p, c.scene_fps_1080p
    );
    println!(
        "{:<20} {:<6} {:<9} {:>9} {:>10}  note",
        "encoder", "codec", "kind", "fps 720p", "fps 1080p"
    );
    for e in &c.encoders {
        println!(
            "{:<20} {:<6} {:<9} {:>9.1} {:>10.1}  {}",
            e.name,
            e.codec,
            if e.hardware { "hardware" } else { "software" },
            e.fps_720p,
            e.fps_1080p,
            if e.verified {
                "verified".to_string()
            } else {
                format!("unusable: {}", e.reason.as_deref().unwrap_or("?"))
            }
        );
    }
    println!(
        "({}; fingerprint {})",
        if cached {
            "cached calibration"
        } else {
            "calibrated now"
        },
        c.fingerprint
    );
}
