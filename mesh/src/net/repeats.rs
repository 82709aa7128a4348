//! A warning that can repeat without bound (a junk connection on the mesh port, a thousand a
//! second if someone wants) is logged at most once a window; the times it was kept quiet are
//! counted and reported with the next line, or by [`Repeats::flush`] once the window has passed.

use std::time::{Duration, Instant};

/// One kind of repeated warning.
#[derive(Debug)]
pub struct Repeats {
    window: Duration,
    /// When the last line was logged.
    last: Option<Instant>,
    /// Times it happened since then without a line.
    quiet: u64,
}

impl Repeats {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            quiet: 0,
        }
    }

    /// It happened again at `now`: `Some(n)` when a line is due (with `n` times it was kept
    /// quiet before), `None` when it is only counted.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.window => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.quiet))
            }
        }
    }

    /// The count kept quiet, once the window since the last line has passed (then a line is
    /// due that reports it).
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_some_and(|t| now.duration_since(t) >= self.window);
        if due && self.quiet > 0 {
            self.last = Some(now);
            Some(std::mem::take(&mut self.quiet))
        } else {
            None
        }
    }

    /// The window, for the lines that report a count.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_window_and_the_rest_counted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r = Repeats::new(10 * s);
        assert_eq!(r.hit(t0), Some(0));
        for i in 1..=999 {
            assert_eq!(r.hit(t0 + Duration::from_millis(i)), None);
        }
        // nothing is due before the window has passed
        assert_eq!(r.flush(t0 + 9 * s), None);
        assert_eq!(r.flush(t0 + 10 * s), Some(999));
        assert_eq!(r.flush(t0 + 30 * s), None);
        // the next one after a quiet window is a line again, with nothing kept back
        assert_eq!(r.hit(t0 + 31 * s), Some(0));
        assert_eq!(r.hit(t0 + 32 * s), None);
        assert_eq!(r.hit(t0 + 42 * s), Some(1));
    }
}
