//! The items of a batch (one per input: state, note, output), shared between the driver and
//! the joiner thread, with a flag telling the coordinator when they changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rendermesh_protocol::{ItemState, JobItem};

/// The items of a batch, shared with the joiner thread.
#[derive(Clone)]
pub(super) struct Items {
    list: Arc<Mutex<Vec<JobItem>>>,
    changed: Arc<AtomicBool>,
}

impl Items {
    pub(super) fn new(names: Vec<String>) -> Self {
        Self {
            list: Arc::new(Mutex::new(
                names.into_iter().map(JobItem::waiting).collect(),
            )),
            changed: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Change items `which` in place.
    pub(super) fn update(&self, which: &[usize], f: impl Fn(&mut JobItem)) {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        for &i in which {
            if let Some(item) = list.get_mut(i) {
                f(item);
            }
        }
        self.changed.store(true, Ordering::Release);
    }

    pub(super) fn fail(&self, which: &[usize], why: &str) {
        self.update(which, |it| {
            it.state = ItemState::Failed;
            it.note = Some(why.to_string());
            it.output = None;
        });
    }

    pub(super) fn snapshot(&self) -> Vec<JobItem> {
        self.list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn take_changed(&self) -> Option<Vec<JobItem>> {
        self.changed
            .swap(false, Ordering::AcqRel)
            .then(|| self.snapshot())
    }
}
