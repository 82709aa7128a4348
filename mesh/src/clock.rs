//! Wall-clock time as the mesh carries it: milliseconds since the Unix epoch (peer table
//! rows, job statuses).

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
