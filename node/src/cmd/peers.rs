//! `rendermesh peers`: the local node's peer table.

use rendermesh_mesh::PeerEntry;

use crate::api::connect;
use crate::cli::PeersArgs;
use crate::config::NodeConfig;

pub fn run(cfg: NodeConfig, args: PeersArgs) -> anyhow::Result<i32> {
    let Some((info, client)) = connect(&cfg.data_dir) else {
        anyhow::bail!(
            "no node is running with data dir {} (start one with `rendermesh node`)",
            cfg.data_dir.display()
        );
    };
    let peers = client.peers()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(0);
    }
    if peers.is_empty() {
        println!("{} sees no peers (a mesh of one)", info.name);
        return Ok(0);
    }
    println!(
        "{:<16} {:<26} {:<8} {:>5} {:>8} {:<10} {:>9} {:>9} {:>9}  encoders",
        "name", "address", "arch", "cores", "RAM GiB", "GPU", "x264 fps", "busy/free", "seen ago"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for p in &peers {
        print_row(p, now);
    }
    Ok(0)
}

fn print_row(p: &PeerEntry, now_ms: u64) {
    let c = &p.caps;
    let gpu = if c.gpus.is_empty() {
        "-".to_string()
    } else {
        c.gpus
            .iter()
            .map(|g| g.vendor.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let x264 = c
        .encoders
        .iter()
        .find(|e| e.name == "libx264" && e.verified)
        .map(|e| format!("{:.1}", e.fps_1080p))
        .unwrap_or_else(|| "-".into());
    let verified: Vec<&str> = c
        .encoders
        .iter()
        .filter(|e| e.verified)
        .map(|e| e.name.as_str())
        .collect();
    let encoders = if c.encoders.is_empty() {
        "(probing)".to_string()
    } else {
        verified.join(",")
    };
    println!(
        "{:<16} {:<26} {:<8} {:>5} {:>8.1} {:<10} {:>9} {:>9} {:>8.1}s  {}",
        p.name,
        p.address,
        c.arch,
        c.cores,
        c.ram_total_bytes as f64 / (1u64 << 30) as f64,
        gpu,
        x264,
        format!("{}/{}", p.running, p.slots.saturating_sub(p.running)),
        now_ms.saturating_sub(p.last_seen_unix_ms) as f64 / 1000.0,
        encoders
    );
}
