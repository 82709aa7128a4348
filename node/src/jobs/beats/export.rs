//! Beat grids as files: JSON (the grid, with the file's name) and CSV (one row per beat).

use rendermesh_protocol::BeatGrid;
use serde::Serialize;

/// Times in files are rounded to the microsecond, values to 0.01.
fn us(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

fn hundredths(x: f32) -> f64 {
    (x as f64 * 100.0).round() / 100.0
}

#[derive(Serialize)]
struct JsonGrid<'a> {
    file: &'a str,
    duration_s: f64,
    tempo_bpm: f64,
    meter: u8,
    beats: Vec<f64>,
    downbeats: Vec<f64>,
    beat_loudness: Vec<f64>,
    beat_onset: Vec<f64>,
    sections: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

/// The grid as JSON, `file` naming its input.
pub fn to_json(grid: &BeatGrid, file: &str) -> String {
    let j = JsonGrid {
        file,
        duration_s: us(grid.duration_s),
        tempo_bpm: (grid.tempo_bpm * 1000.0).round() / 1000.0,
        meter: grid.meter,
        beats: grid.beats.iter().map(|&t| us(t)).collect(),
        downbeats: grid.downbeats.iter().map(|&t| us(t)).collect(),
        beat_loudness: grid.beat_loudness.iter().map(|&x| hundredths(x)).collect(),
        beat_onset: grid.beat_onset.iter().map(|&x| hundredths(x)).collect(),
        sections: grid.sections.iter().map(|&t| us(t)).collect(),
        note: grid.note.as_deref(),
    };
    let mut s = serde_json::to_string_pretty(&j).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// Bar number (from 1) and position in the bar (from 1) of every beat; beats before the
/// first downbeat count back from it (bar 0).
pub fn bar_positions(grid: &BeatGrid) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(grid.beats.len());
    let mut bar = 0u32;
    let mut pos = 0u32;
    let first = grid
        .downbeats
        .first()
        .and_then(|d| grid.beats.iter().position(|b| b == d))
        .unwrap_or(0);
    let meter = u32::from(grid.meter.max(1));
    let mut db = grid.downbeats.iter().peekable();
    for (i, b) in grid.beats.iter().enumerate() {
        if db.peek().is_some_and(|d| *d == b) {
            db.next();
            bar += 1;
            pos = 1;
        } else if i < first {
            let back = (first - i) as u32;
            pos = meter - ((back - 1) % meter);
        } else {
            pos += 1;
        }
        out.push((bar, pos));
    }
    out
}

/// One row per beat: `time_s,is_downbeat,bar,beat_in_bar,loudness,onset`.
pub fn to_csv(grid: &BeatGrid) -> String {
    let mut s = String::from("time_s,is_downbeat,bar,beat_in_bar,loudness,onset\n");
    let downs: std::collections::HashSet<u64> =
        grid.downbeats.iter().map(|t| t.to_bits()).collect();
    for ((t, (bar, pos)), (l, o)) in grid
        .beats
        .iter()
        .zip(bar_positions(grid))
        .zip(grid.beat_loudness.iter().zip(&grid.beat_onset))
    {
        s.push_str(&format!(
            "{:.6},{},{},{},{:.2},{:.2}\n",
            t,
            u8::from(downs.contains(&t.to_bits())),
            bar,
            pos,
            l,
            o
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::ContentId;

    #[test]
    fn csv_rows_count_bars_from_the_first_downbeat() {
        let g = BeatGrid {
            input: ContentId::of(b"x"),
            duration_s: 4.0,
            tempo_bpm: 120.0,
            meter: 3,
            beats: vec![0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
            downbeats: vec![1.0, 2.5],
            beat_loudness: vec![-6.0; 6],
            beat_onset: vec![0.5; 6],
            sections: vec![1.0],
            note: None,
        };
        let csv = to_csv(&g);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "time_s,is_downbeat,bar,beat_in_bar,loudness,onset");
        assert_eq!(rows[1], "0.500000,0,0,3,-6.00,0.50");
        assert_eq!(rows[2], "1.000000,1,1,1,-6.00,0.50");
        assert_eq!(rows[4], "2.000000,0,1,3,-6.00,0.50");
        assert_eq!(rows[5], "2.500000,1,2,1,-6.00,0.50");
        let j: serde_json::Value = serde_json::from_str(&to_json(&g, "song.ogg")).unwrap();
        assert_eq!(j["file"], "song.ogg");
        assert_eq!(j["meter"], 3);
        assert_eq!(j["downbeats"][1], 2.5);
        assert!(j.get("note").is_none());
    }
}
