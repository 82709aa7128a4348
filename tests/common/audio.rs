//! Audio with known beats, made here: metronomes of clicks or kick drums with accented bar
//! starts, tempo steps, silence, as 16-bit WAV; the beat grid of a Frets on Fire chart
//! (`notes.mid`); and the scores a beat grid is judged by.

use std::path::Path;

pub const RATE: u32 = 44_100;

/// What a metronome plays on each beat.
#[derive(Clone, Copy, Debug)]
pub enum Voice {
    /// A short tone burst: 1000 Hz, 1500 Hz on a bar start.
    Click,
    /// A synthesised kick drum (a falling sine), louder on a bar start.
    Kick,
}

/// A metronome: `(bpm, seconds)` parts one after another, `meter` beats to the bar, the
/// first beat after `lead` seconds of silence. Returns the samples and the beat times (and
/// which of them start bars).
pub fn metronome(
    parts: &[(f64, f64)],
    meter: usize,
    voice: Voice,
    lead: f64,
) -> (Vec<f32>, Vec<(f64, bool)>) {
    let total: f64 = lead + parts.iter().map(|p| p.1).sum::<f64>() + 0.5;
    let mut x = vec![0.0f32; (total * RATE as f64) as usize];
    let mut beats = Vec::new();
    let mut t = lead;
    let mut i = 0usize;
    let mut part_end = lead;
    for &(bpm, secs) in parts {
        part_end += secs;
        while t < part_end - 1e-9 {
            let bar = i.is_multiple_of(meter);
            add_hit(&mut x, t, bar, voice);
            beats.push((t, bar));
            i += 1;
            t += 60.0 / bpm;
        }
    }
    (x, beats)
}

fn add_hit(x: &mut [f32], t: f64, bar: bool, voice: Voice) {
    let start = (t * RATE as f64).round() as usize;
    let sr = RATE as f64;
    match voice {
        Voice::Click => {
            let f = if bar { 1500.0 } else { 1000.0 };
            let amp = if bar { 0.9 } else { 0.6 };
            for k in 0..(0.03 * sr) as usize {
                let tt = k as f64 / sr;
                if let Some(s) = x.get_mut(start + k) {
                    *s +=
                        (amp * (std::f64::consts::TAU * f * tt).sin() * (-tt / 0.004).exp()) as f32;
                }
            }
        }
        Voice::Kick => {
            let amp = if bar { 0.9 } else { 0.6 };
            let mut phase = 0.0f64;
            for k in 0..(0.15 * sr) as usize {
                let tt = k as f64 / sr;
                phase += std::f64::consts::TAU * (60.0 + 90.0 * (-tt * 40.0).exp()) / sr;
                if let Some(s) = x.get_mut(start + k) {
                    *s += (amp * phase.sin() * (-tt * 20.0).exp()) as f32;
                }
            }
        }
    }
}

/// Write mono 16-bit PCM WAV at [`RATE`].
pub fn write_wav(path: &Path, x: &[f32]) {
    let data: Vec<u8> = x
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    write_pcm(path, &data, RATE, 16);
}

/// Write mono PCM WAV of `bits` (8: unsigned, 16: signed LE) per sample.
pub fn write_pcm(path: &Path, data: &[u8], rate: u32, bits: u16) {
    let bytes = u32::from(bits / 8);
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * bytes).to_le_bytes());
    out.extend_from_slice(&(bytes as u16).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// Beat F-measure (as mir_eval's): estimated and reference times matched one to one within
/// `window` seconds; 2PR / (P + R).
pub fn f_measure(est: &[f64], reference: &[f64], window: f64) -> f64 {
    if est.is_empty() || reference.is_empty() {
        return 0.0;
    }
    let mut used = vec![false; est.len()];
    let mut hits = 0usize;
    for &r in reference {
        let best = est
            .iter()
            .enumerate()
            .filter(|(i, e)| !used[*i] && (*e - r).abs() <= window)
            .min_by(|a, b| (a.1 - r).abs().total_cmp(&(b.1 - r).abs()));
        if let Some((i, _)) = best {
            used[i] = true;
            hits += 1;
        }
    }
    let p = hits as f64 / est.len() as f64;
    let r = hits as f64 / reference.len() as f64;
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The distance from each reference time to the nearest estimate.
pub fn errors(est: &[f64], reference: &[f64]) -> Vec<f64> {
    reference
        .iter()
        .map(|r| {
            est.iter()
                .map(|e| e - r)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(f64::INFINITY)
        })
        .collect()
}

/// A chart's grid from a Standard MIDI File: tempo changes (meta 0x51) and time signatures
/// (meta 0x58) from every track; beats every quarter note from tick 0 until `until`
/// seconds, downbeats every bar. Returns `(beats, downbeats)`.
pub fn midi_grid(path: &Path, until: f64) -> (Vec<f64>, Vec<f64>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"MThd", "{} is not a MIDI file", path.display());
    let division = u16::from_be_bytes([b[12], b[13]]) as u64;
    assert!(
        division & 0x8000 == 0,
        "SMPTE time division is not used by charts"
    );
    let mut tempos: Vec<(u64, u32)> = Vec::new(); // (tick, µs per quarter)
    let mut meters: Vec<(u64, u32)> = Vec::new(); // (tick, beats per bar)
    let mut i = 8 + u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
    while i + 8 <= b.len() {
        let len = u32::from_be_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        let track = &b[i + 8..(i + 8 + len).min(b.len())];
        let (mut j, mut tick, mut status) = (0usize, 0u64, 0u8);
        while j < track.len() {
            let (delta, n) = vlq(&track[j..]);
            j += n;
            tick += delta;
            let s = track[j];
            if s == 0xff {
                let kind = track[j + 1];
                let (l, n) = vlq(&track[j + 2..]);
                let data = &track[j + 2 + n..j + 2 + n + l as usize];
                if kind == 0x51 {
                    tempos.push((tick, u32::from_be_bytes([0, data[0], data[1], data[2]])));
                } else if kind == 0x58 {
                    meters.push((tick, data[0] as u32));
                }
                j += 2 + n + l as usize;
            } else if s == 0xf0 || s == 0xf7 {
                let (l, n) = vlq(&track[j + 1..]);
                j += 1 + n + l as usize;
            } else {
                if s & 0x80 != 0 {
                    status = s;
                    j += 1;
                }
                j += if matches!(status & 0xf0, 0xc0 | 0xd0) {
                    1
                } else {
                    2
                };
            }
        }
        i += 8 + len;
    }
    tempos.sort();
    meters.sort();
    if tempos.first().is_none_or(|t| t.0 > 0) {
        tempos.insert(0, (0, 500_000));
    }
    // seconds of a tick, through the tempo map
    let seconds = |tick: u64| {
        let mut s = 0.0;
        let mut at = 0u64;
        let mut us = tempos[0].1;
        for &(t, u) in &tempos {
            if t >= tick {
                break;
            }
            s += (t - at) as f64 * us as f64 / 1e6 / division as f64;
            at = t;
            us = u;
        }
        s + (tick - at) as f64 * us as f64 / 1e6 / division as f64
    };
    let meter_at = |tick: u64| {
        meters
            .iter()
            .take_while(|m| m.0 <= tick)
            .last()
            .map_or(4, |m| m.1.max(1) as u64)
    };
    let (mut beats, mut downs) = (Vec::new(), Vec::new());
    let (mut tick, mut bar_start) = (0u64, 0u64);
    loop {
        let t = seconds(tick);
        if t > until {
            break;
        }
        if (tick - bar_start) % (division * meter_at(bar_start)) == 0 {
            downs.push(t);
            bar_start = tick;
        }
        beats.push(t);
        tick += division;
    }
    (beats, downs)
}

fn vlq(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    for (i, &c) in b.iter().enumerate().take(4) {
        v = (v << 7) | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    (v, 4)
}

/// Mono samples of any file ffmpeg reads, at `rate`, by the ffmpeg CLI.
pub fn decode(path: &Path, rate: u32) -> Vec<f32> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-ac", "1", "-ar", &rate.to_string(), "-f", "f32le", "-"])
        .output()
        .expect("ffmpeg CLI");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Where a chart's beats sit against the audio: the shift (within ±`max` s) that puts the
/// beat times on the largest rises of the audio's energy (10 ms frames, log energy,
/// positive changes). Independent of rendermesh's tracker: a check of the chart itself.
pub fn chart_offset(samples: &[f32], rate: u32, beats: &[f64], max: f64) -> f64 {
    let hop = (rate / 100) as usize;
    let energy: Vec<f64> = samples
        .chunks(hop)
        .map(|c| (c.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / c.len() as f64 + 1e-10).ln())
        .collect();
    let rise: Vec<f64> = std::iter::once(0.0)
        .chain(energy.windows(2).map(|w| (w[1] - w[0]).max(0.0)))
        .collect();
    // the rise at time t, linearly interpolated between frames (a rise in frame i happened
    // somewhere in it: on average at its middle)
    let at = |t: f64| {
        let x = (t - 0.005) * 100.0;
        let i = x.floor();
        if i < 0.0 || i as usize + 1 >= rise.len() {
            return 0.0;
        }
        let a = x - i;
        rise[i as usize] * (1.0 - a) + rise[i as usize + 1] * a
    };
    let steps = (max * 1000.0) as i64;
    (-steps..=steps)
        .map(|ms| ms as f64 / 1000.0)
        .map(|d| (d, beats.iter().map(|&b| at(b + d)).sum::<f64>()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.0, |x| x.0)
}
