//! How fast the network runs on this box: frames per second of `TransNet::predict` on one
//! thread, over a deterministic clip of moving noise.
//!
//! `cargo run --release -p rendermesh-transnet --example speed -- WEIGHTS.pth [FRAMES]`

use std::path::PathBuf;
use std::time::Instant;

use rendermesh_transnet::{TransNet, FRAME_BYTES};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(weights) = args.next().map(PathBuf::from) else {
        eprintln!("usage: speed WEIGHTS.pth [FRAMES]");
        std::process::exit(2);
    };
    let frames: usize = match args.next().map(|a| a.parse()) {
        None => 500,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("FRAMES must be a positive whole number");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let net = match TransNet::load(&weights) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let load = start.elapsed().as_secs_f64();
    let mut s = 1u32;
    let clip: Vec<u8> = (0..frames * FRAME_BYTES)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        })
        .collect();
    let start = Instant::now();
    match net.predict(&clip) {
        Ok(p) => assert_eq!(p.len(), frames),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "weights loaded in {load:.3} s; {frames} frames in {secs:.3} s: {:.1} frames/s on one thread",
        frames as f64 / secs
    );
}
