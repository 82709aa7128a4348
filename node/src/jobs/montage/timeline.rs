//! The plan as timelines an editor opens: OpenTimelineIO, CMX 3600 EDL, FCPXML.
