//! The job kinds this binary runs, listed once.

use rendermesh_protocol::Capabilities;

use super::batch::Batch;
use super::beats::Beats;
use super::checksum::Checksum;
use super::kind::{JobContext, JobKind, Speeds, Started, SubmitRequest};
use super::montage::Montage;
use super::scenes::Scenes;
use super::transcode::Transcode;

/// Every kind this binary runs. A peer's shard whose task belongs to none is refused.
pub const KINDS: &[&dyn JobKind] = &[&Transcode, &Scenes, &Checksum, &Beats, &Montage, &Batch];

/// The kind called `name`.
pub fn kind(name: &str) -> Option<&'static dyn JobKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// Start a job of the kind `req` names.
pub fn start(ctx: &JobContext, req: SubmitRequest) -> Result<(&'static str, Started), String> {
    let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    let k = kind(&req.kind).ok_or_else(|| {
        format!(
            "unknown job kind {:?}; this node runs {}",
            req.kind,
            names.join(", ")
        )
    })?;
    Ok((k.name(), k.start(ctx, req.params)?))
}

/// Fill in the speeds and lacks of every kind's classes from a calibrated record.
pub fn fill_speeds(caps: &mut Capabilities) {
    let mut out = Speeds::default();
    for k in KINDS {
        k.speeds(caps, &mut out);
    }
    caps.speeds = out.speeds;
    caps.lacks = out.lacks;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name_and_names_are_unique() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        for n in &names {
            assert_eq!(kind(n).map(|k| k.name()), Some(*n));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), KINDS.len());
        assert!(kind("nope").is_none());
    }
}
