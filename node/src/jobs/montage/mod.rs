//! The montage kind: clips and a song in, a beat-synced cut out, rendered across the mesh.
//!
//! - [`timeline`]: the plan as timelines an editor opens (OpenTimelineIO, CMX 3600 EDL,
//!   FCPXML).

pub mod timeline;
