//! The bidder side of the contract net: how long this node would take for a shard.
//!
//! A shard's compute time is its work ÷ this node's measured speed for the shard's task class
//! (`Capabilities::speeds`, filled in by each job kind's calibration; a class missing there
//! is priced from another class of its family, e.g. `@720p` for `@1080p`, since work is
//! counted in the same units). The estimate is then multiplied by the ratio of observed to
//! estimated time of the shards this node has run for that class (a moving average), so a
//! calibration that was off corrects itself. The bidder never looks inside a shard's task.
//!
//! A shard is declined when its spec is out of range, when its memory need is above what the
//! node allows or has free, when the node lacks its class (`Capabilities::lacks`: e.g. an
//! encoder that failed its test encode), or when it requires a class this node has no speed
//! for. A shard that does not require its class is estimated at [`UNCALIBRATED_SPEED`] until
//! the node has measured it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rendermesh_protocol::{Bid, BidSheet, Capabilities, ContentId, JobId, ShardSpec};

/// Assumed speed (work units per second per slot) of a class the node has not measured.
pub const UNCALIBRATED_SPEED: f64 = 10.0;
/// Weight of the newest observation in the correction factor.
const LEARN: f64 = 0.3;
/// Correction factors stay within these bounds (a stalled or instant run is no calibration).
const CORRECTION_MIN: f64 = 0.05;
const CORRECTION_MAX: f64 = 20.0;

/// The family of a class name: the part before `@`.
fn family(class: &str) -> &str {
    class.split('@').next().unwrap_or(class)
}

/// This node's speed for `class`: measured, else that of another class of its family.
fn speed_of(caps: &Capabilities, class: &str) -> Option<f64> {
    let ok = |v: &f32| v.is_finite() && *v > 0.0;
    caps.speeds
        .get(class)
        .filter(|v| ok(v))
        .or_else(|| {
            let fam = family(class);
            caps.speeds
                .iter()
                .find(|(c, v)| family(c) == fam && ok(v))
                .map(|(_, v)| v)
        })
        .map(|v| *v as f64)
}

/// Compute seconds of `spec` on a node with `caps` (before correction), or why it declines.
pub fn estimate(caps: &Capabilities, spec: &ShardSpec) -> Result<f64, String> {
    let fam = spec.class_family();
    if let Some(why) = caps.lacks.get(&spec.class).or_else(|| caps.lacks.get(fam)) {
        return Err(why.clone());
    }
    let speed = match speed_of(caps, &spec.class) {
        Some(v) => v,
        None if spec.required && caps.calibrated_unix_ms == 0 => {
            return Err(format!(
                "{fam} is not verified here yet (calibration running)"
            ))
        }
        None if spec.required => return Err(format!("{fam} is not on this node")),
        None => UNCALIBRATED_SPEED,
    };
    Ok(spec.cost.work.max(1e-3) / speed.max(1e-6))
}

/// One run in progress on this node.
struct Run {
    started: Instant,
    /// Corrected estimate of its compute time.
    estimate_s: f64,
}

/// This node's cost model: calibration, corrections from observed runs, what runs now.
#[derive(Clone)]
pub struct CostModel {
    inner: Arc<Inner>,
}

struct Inner {
    caps: RwLock<Capabilities>,
    /// Shards needing more memory than this are declined (0 = only free RAM counts).
    ram_limit: u64,
    /// Correction factor per task class.
    correction: Mutex<HashMap<String, f64>>,
    running: Mutex<HashMap<(JobId, u32), Run>>,
}

impl CostModel {
    pub fn new(caps: Capabilities, ram_limit: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                caps: RwLock::new(caps),
                ram_limit,
                correction: Mutex::default(),
                running: Mutex::default(),
            }),
        }
    }

    /// The calibration finished (or the capabilities changed).
    pub fn set_caps(&self, caps: Capabilities) {
        *self.inner.caps.write().unwrap_or_else(|p| p.into_inner()) = caps;
    }

    /// The capabilities the model bids from (this node's, once calibrated).
    pub fn caps(&self) -> Capabilities {
        self.inner
            .caps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn correction(&self, key: &str) -> f64 {
        self.inner
            .correction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(1.0)
    }

    /// Corrected compute seconds of `spec` here, or why this node declines it.
    pub fn compute_seconds(&self, spec: &ShardSpec) -> Result<f64, String> {
        spec.validate()?;
        let caps = self.inner.caps.read().unwrap_or_else(|p| p.into_inner());
        let need = spec.cost.ram;
        if self.inner.ram_limit > 0 && need > self.inner.ram_limit {
            return Err(format!(
                "needs about {need} bytes of memory; this node allows {}",
                self.inner.ram_limit
            ));
        }
        if caps.ram_available_bytes > 0 && need > caps.ram_available_bytes {
            return Err(format!(
                "needs about {need} bytes of memory; {} are free here",
                caps.ram_available_bytes
            ));
        }
        let raw = estimate(&caps, spec)?;
        Ok(raw * self.correction(&spec.class))
    }

    /// A shard starts here.
    pub fn begin(&self, spec: &ShardSpec) {
        let estimate_s = self.compute_seconds(spec).unwrap_or(0.0);
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (spec.job, spec.index),
                Run {
                    started: Instant::now(),
                    estimate_s,
                },
            );
    }

    /// A shard that began here ended; a successful run corrects the model.
    pub fn end(&self, spec: &ShardSpec, ok: bool) {
        let run = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(spec.job, spec.index));
        if !ok || run.is_none() {
            return;
        }
        let seconds = run.map_or(0.0, |r| r.started.elapsed().as_secs_f64());
        self.observe(spec, seconds);
    }

    /// Fold a run of `spec` that took `seconds` into the correction for its task.
    pub fn observe(&self, spec: &ShardSpec, seconds: f64) {
        let raw = {
            let caps = self.inner.caps.read().unwrap_or_else(|p| p.into_inner());
            match estimate(&caps, spec) {
                Ok(s) => s,
                Err(_) => return,
            }
        };
        if raw <= 0.0 || seconds <= 0.0 {
            return;
        }
        let ratio = (seconds / raw).clamp(CORRECTION_MIN, CORRECTION_MAX);
        let mut map = self
            .inner
            .correction
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = map.entry(spec.class.clone()).or_insert(ratio);
        *c = ((1.0 - LEARN) * *c + LEARN * ratio).clamp(CORRECTION_MIN, CORRECTION_MAX);
    }

    /// Seconds until the first running shard here is expected to end (0 when none runs).
    fn first_free_s(&self) -> f64 {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| (r.estimate_s - r.started.elapsed().as_secs_f64()).max(0.0))
            .fold(f64::INFINITY, f64::min)
            .clamp(0.0, f64::MAX)
    }

    /// Answer a call for bids for `shards`. `slots`/`running`: this node's slots and shards
    /// running now; `has_blob`: whether the node already holds an input.
    pub fn bid_sheet(
        &self,
        shards: &[ShardSpec],
        slots: u32,
        running: u32,
        has_blob: impl Fn(&ContentId) -> bool,
    ) -> BidSheet {
        let free_slots = slots.saturating_sub(running);
        let queue_s = if free_slots > 0 || running == 0 {
            0.0
        } else {
            let s = self.first_free_s();
            if s.is_finite() {
                s
            } else {
                0.0
            }
        };
        let bids = shards
            .iter()
            .map(|spec| match self.compute_seconds(spec) {
                Ok(compute_s) => Bid::Offer {
                    shard: spec.index,
                    compute_s,
                    fetch_bytes: if spec.inputs.iter().all(&has_blob) {
                        0
                    } else {
                        spec.cost.input_bytes
                    },
                },
                Err(reason) => Bid::Decline {
                    shard: spec.index,
                    reason,
                },
            })
            .collect();
        BidSheet {
            slots,
            free_slots,
            queue_s,
            bids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rendermesh_protocol::{ShardCost, ShardTask, CAPS_VERSION};

    fn caps(speeds: &[(&str, f32)], lacks: &[(&str, &str)]) -> Capabilities {
        Capabilities {
            version: CAPS_VERSION,
            models: Vec::new(),
            hostname: "h".into(),
            arch: "x86_64".into(),
            os: "linux".into(),
            cpu_model: "cpu".into(),
            cores: 4,
            threads: 4,
            ram_total_bytes: 16 << 30,
            ram_available_bytes: 8 << 30,
            gpus: vec![],
            encoders: vec![],
            scene_fps_720p: 0.0,
            scene_fps_1080p: 0.0,
            force_cpu: false,
            speeds: speeds.iter().map(|(c, v)| (c.to_string(), *v)).collect(),
            lacks: lacks
                .iter()
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect(),
            binary_version: "0".into(),
            fingerprint: "f".into(),
            calibrated_unix_ms: 1,
        }
    }

    fn lab_caps() -> Capabilities {
        caps(
            &[
                ("fast@1080p", 300.0),
                ("slow@1080p", 20.0),
                ("slow@720p", 18.0),
            ],
            &[("broken", "broken failed its test here (no device)")],
        )
    }

    fn spec(class: &str, work: f64) -> ShardSpec {
        ShardSpec {
            job: JobId(1),
            index: 0,
            task: ShardTask::Checksum { rounds: 1 },
            class: class.into(),
            required: false,
            inputs: vec![ContentId::of(b"chunk")],
            cost: ShardCost {
                units: 300,
                work,
                ram: 100 << 20,
                input_bytes: 5_000_000,
            },
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn a_class_bids_from_its_measured_speed_or_its_family_s() {
        let m = CostModel::new(lab_caps(), 0);
        assert!(close(
            m.compute_seconds(&spec("slow@1080p", 300.0)).unwrap(),
            15.0
        ));
        assert!(close(
            m.compute_seconds(&spec("fast@1080p", 300.0)).unwrap(),
            1.0
        ));
        assert!(close(
            m.compute_seconds(&spec("slow@720p", 180.0)).unwrap(),
            10.0
        ));
        // no figure for 4K: another class of the family prices it (work is in the same units)
        assert!(close(
            m.compute_seconds(&spec("fast@2160p", 1200.0)).unwrap(),
            4.0
        ));
        // an unknown class that is not required: the default speed
        assert!(close(
            m.compute_seconds(&spec("other", 100.0)).unwrap(),
            100.0 / UNCALIBRATED_SPEED
        ));
    }

    #[test]
    fn lacking_or_unmeasured_required_classes_are_declined() {
        let m = CostModel::new(lab_caps(), 0);
        let failed = m.compute_seconds(&spec("broken@1080p", 30.0)).unwrap_err();
        assert!(failed.contains("failed its test"), "{failed}");
        let required = ShardSpec {
            required: true,
            ..spec("hw/qsv@1080p", 30.0)
        };
        let absent = m.compute_seconds(&required).unwrap_err();
        assert!(absent.contains("not on this node"), "{absent}");
        // before calibration: a class that is not required is estimated, a required one declined
        let mut fresh = caps(&[], &[]);
        fresh.calibrated_unix_ms = 0;
        let fresh = CostModel::new(fresh, 0);
        assert!(fresh.compute_seconds(&spec("slow@1080p", 30.0)).is_ok());
        let why = fresh.compute_seconds(&required).unwrap_err();
        assert!(why.contains("calibration running"), "{why}");
    }

    #[test]
    fn memory_requirements_and_absurd_specs_decline() {
        let limited = CostModel::new(lab_caps(), 50 << 20);
        let why = limited
            .compute_seconds(&spec("slow@1080p", 30.0))
            .unwrap_err();
        assert!(why.contains("this node allows"), "{why}");
        let mut small = lab_caps();
        small.ram_available_bytes = 64 << 20;
        let why = CostModel::new(small, 0)
            .compute_seconds(&spec("slow@1080p", 30.0))
            .unwrap_err();
        assert!(why.contains("are free here"), "{why}");
        let m = CostModel::new(lab_caps(), 0);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e30] {
            assert!(
                m.compute_seconds(&spec("slow@1080p", bad)).is_err(),
                "{bad}"
            );
        }
        let mut huge = spec("slow@1080p", 30.0);
        huge.cost.units = u64::MAX;
        assert!(m.compute_seconds(&huge).is_err());
        huge.cost.units = 1;
        huge.cost.ram = u64::MAX;
        assert!(m.compute_seconds(&huge).is_err());
    }

    #[test]
    fn observed_runs_correct_the_estimate() {
        let m = CostModel::new(lab_caps(), 0);
        let s = spec("slow@1080p", 300.0);
        assert!(close(m.compute_seconds(&s).unwrap(), 15.0));
        // this box is really twice as slow as calibrated
        for _ in 0..30 {
            m.observe(&s, 30.0);
        }
        let corrected = m.compute_seconds(&s).unwrap();
        assert!((corrected - 30.0).abs() < 0.1, "{corrected}");
        // the correction is per class: others keep their calibration
        assert!(close(
            m.compute_seconds(&spec("fast@1080p", 300.0)).unwrap(),
            1.0
        ));
    }

    #[test]
    fn a_bid_sheet_offers_declines_and_counts_input_it_lacks() {
        let m = CostModel::new(lab_caps(), 0);
        let a = spec("slow@1080p", 300.0);
        let b = ShardSpec {
            index: 1,
            required: true,
            ..spec("hw/qsv", 300.0)
        };
        let held = a.inputs[0];
        let sheet = m.bid_sheet(&[a, b], 2, 1, |id| *id == held);
        assert_eq!((sheet.slots, sheet.free_slots, sheet.queue_s), (2, 1, 0.0));
        assert!(matches!(
            sheet.bids[0],
            Bid::Offer {
                shard: 0,
                fetch_bytes: 0,
                ..
            }
        ));
        assert!(matches!(&sheet.bids[1], Bid::Decline { shard: 1, .. }));
        // busy: the queue is the time until the running shard should end
        let run = spec("slow@1080p", 300.0);
        m.begin(&run);
        let sheet = m.bid_sheet(std::slice::from_ref(&run), 1, 1, |_| false);
        assert_eq!(sheet.free_slots, 0);
        assert!(
            sheet.queue_s > 14.0 && sheet.queue_s <= 15.0,
            "{}",
            sheet.queue_s
        );
        assert!(matches!(
            sheet.bids[0],
            Bid::Offer {
                fetch_bytes: 5_000_000,
                ..
            }
        ));
        m.end(&run, false);
        assert_eq!(m.bid_sheet(&[], 1, 0, |_| false).queue_s, 0.0);
    }
}
