//! How video work is counted: a shard of video is priced in 1080p-frame equivalents, and its
//! class names the nearer of the two resolutions a node measures (720p, 1080p).

use rendermesh_protocol::{video_ram_estimate, ShardCost};

use super::kind::Speeds;

const PIXELS_720P: f64 = 1280.0 * 720.0;
const PIXELS_1080P: f64 = 1920.0 * 1080.0;

/// The class of video work of `family` at `width`×`height`: the nearer of the two measured
/// resolutions (`family@720p` or `family@1080p`).
pub fn video_class(family: &str, width: u32, height: u32) -> String {
    let pixels = width as f64 * height as f64;
    let tier = if pixels <= (PIXELS_720P * PIXELS_1080P).sqrt() {
        "720p"
    } else {
        "1080p"
    };
    format!("{family}@{tier}")
}

/// The cost of `frames` frames of `width`×`height`: work in 1080p-frame equivalents (so a
/// speed measured at either resolution prices any other by its pixels), memory from the
/// frame size, and the input's bytes.
pub fn video_cost(frames: u64, width: u32, height: u32, input_bytes: u64) -> ShardCost {
    let pixels = (width as f64 * height as f64).max(1.0);
    ShardCost {
        units: frames,
        work: frames.max(1) as f64 * pixels / PIXELS_1080P,
        ram: video_ram_estimate(width, height),
        input_bytes,
    }
}

/// Record the speeds of video class `family` measured at 720p and 1080p in frames per second
/// (0 = not measured), in the work units of [`video_cost`].
pub fn video_speeds(out: &mut Speeds, family: &str, fps_720p: f32, fps_1080p: f32) {
    if fps_720p > 0.0 {
        let v = fps_720p as f64 * PIXELS_720P / PIXELS_1080P;
        out.speeds.insert(format!("{family}@720p"), v as f32);
    }
    if fps_1080p > 0.0 {
        out.speeds.insert(format!("{family}@1080p"), fps_1080p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_work_prices_any_size_from_either_measured_resolution() {
        // 300 frames at 1080p on a node doing 20 fps at 1080p: 15 s
        let mut out = Speeds::default();
        video_speeds(&mut out, "encode/libx264", 40.0, 20.0);
        let c = video_cost(300, 1920, 1080, 0);
        assert_eq!(
            video_class("encode/libx264", 1920, 1080),
            "encode/libx264@1080p"
        );
        let s1080 = out.speeds["encode/libx264@1080p"] as f64;
        assert!((c.work / s1080 - 15.0).abs() < 1e-6);
        // 300 frames at 720p on a node doing 40 fps at 720p: 7.5 s
        let c = video_cost(300, 1280, 720, 0);
        assert_eq!(
            video_class("encode/libx264", 1280, 720),
            "encode/libx264@720p"
        );
        let s720 = out.speeds["encode/libx264@720p"] as f64;
        assert!((c.work / s720 - 7.5).abs() < 1e-4, "{}", c.work / s720);
        // 4K from the 1080p figure, by pixels: 60 s
        let c = video_cost(300, 3840, 2160, 0);
        assert!((c.work / s1080 - 60.0).abs() < 1e-6);
        // absurd sizes saturate instead of overflowing
        assert_eq!(video_cost(1, u32::MAX, u32::MAX, 0).ram, u64::MAX);
    }
}
