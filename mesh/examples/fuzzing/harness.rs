//! The fuzzing harness shared by the fuzz targets of every crate: a deterministic generator,
//! byte mutations of valid inputs, and a runner that counts refusals and panics (each input
//! under `catch_unwind`) and times every input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// One mutated copy of `seed`: one to four edits (bit flips, bytes set to random or edge
/// values, 8 bytes overwritten by a length-like number, bytes inserted, a range removed or
/// repeated, the tail cut off); one input in eight is random bytes behind the seed's header.
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    if rng.below(8) == 0 {
        b.truncate(4.min(b.len()));
        let n = rng.below(512);
        b.extend((0..n).map(|_| rng.next_u64() as u8));
        return b;
    }
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                b[i] = [0, 0xff, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe][rng.below(8)];
            }
            3 if len >= 8 => {
                let i = rng.below(len - 7);
                let v = [
                    u64::MAX,
                    1 << 32,
                    1 << 60,
                    rng.next_u64(),
                    rng.next_u64() % 100_000,
                ][rng.below(5)];
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(i..i, ins);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below(len - i);
                b.drain(i..i + n);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let dup = b[i..i + n].to_vec();
                b.splice(i..i, dup);
            }
            _ => b.truncate(rng.below(len + 1)),
        }
    }
    b
}

/// What one target did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub name: &'static str,
    pub inputs: u64,
    pub refused: u64,
    pub panics: u64,
    pub first_panic: Option<Vec<u8>>,
    pub slowest: Duration,
    pub took: Duration,
}

/// Run `check` on `n` inputs mutated from `seeds`; `check` says whether it refused the input.
pub fn run_target(
    name: &'static str,
    seeds: &[Vec<u8>],
    n: u64,
    rng: &mut Rng,
    check: impl Fn(&[u8]) -> bool,
) -> Outcome {
    run_inputs(
        name,
        seeds,
        n,
        |_| mutate(&seeds[rng.below(seeds.len())], rng),
        check,
    )
}

/// Run `check` on the `seeds` as they are, then on inputs from `make` (called with the
/// input's number) up to `n` in all.
pub fn run_inputs(
    name: &'static str,
    seeds: &[Vec<u8>],
    n: u64,
    mut make: impl FnMut(usize) -> Vec<u8>,
    check: impl Fn(&[u8]) -> bool,
) -> Outcome {
    let mut o = Outcome {
        name,
        ..Outcome::default()
    };
    let started = Instant::now();
    for i in 0..n {
        let input = match seeds.get(i as usize) {
            Some(s) => s.clone(),
            None => make(i as usize),
        };
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(refused) => o.refused += u64::from(refused),
            Err(_) => {
                o.panics += 1;
                o.first_panic.get_or_insert(input.clone());
            }
        }
        o.slowest = o.slowest.max(t.elapsed());
        o.inputs += 1;
    }
    o.took = started.elapsed();
    o
}

/// Peak resident memory of this process (VmHWM), in MB.
pub fn peak_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

impl Outcome {
    /// This outcome as a row of the benchmark's table.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} ms | {:.0} |",
            self.name,
            self.inputs,
            self.refused,
            self.panics,
            self.slowest.as_secs_f64() * 1e3,
            self.inputs as f64 / self.took.as_secs_f64()
        )
    }

    /// What a test asks of a target: `n` inputs, no panic, none that took a second, and
    /// mutations that reach the refusal paths (most refused, not all).
    pub fn assert_sound(&self, n: u64) {
        assert_eq!(self.inputs, n, "{}", self.name);
        let first = self.first_panic.as_deref().map(String::from_utf8_lossy);
        assert_eq!(self.panics, 0, "{} panicked on {first:?}", self.name);
        assert!(
            self.slowest < Duration::from_secs(1),
            "{}: one input took {:?}",
            self.name,
            self.slowest
        );
        assert!(
            self.refused > self.inputs / 4 && self.refused < self.inputs,
            "{}: {} of {} refused",
            self.name,
            self.refused,
            self.inputs
        );
    }
}
