//! The plan as timelines an editor opens: OpenTimelineIO, CMX 3600 EDL, FCPXML.

use rendermesh_protocol::MontagePlan;

/// Placeholder until the exports land.
pub fn otio(_plan: &MontagePlan, _name: &str) -> String {
    String::new()
}

/// Placeholder until the exports land.
pub fn edl(_plan: &MontagePlan, _title: &str) -> String {
    String::new()
}

/// Placeholder until the exports land.
pub fn fcpxml(_plan: &MontagePlan, _title: &str) -> String {
    String::new()
}
