//! Ctrl-C and SIGTERM for the commands that must end cleanly (`watch`, `submit`): the first
//! signal sets a flag the command looks at; a second one ends the process at once (exit 130).
//!
//! A submit registers what stopping means with [`on_stop`] (cancel its job on the node): a
//! thread waits for the flag, runs it, removes the files the command was still writing and
//! exits with 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

/// What the stop thread runs before the process exits.
type Stop = Box<dyn FnOnce() + Send>;
static ON_STOP: Mutex<Option<Stop>> = Mutex::new(None);
static CAUGHT: Once = Once::new();
static STOPPER: Once = Once::new();

extern "C" fn on_signal(_signum: i32) {
    extern "C" {
        fn _exit(code: i32) -> !;
    }
    if STOP.swap(true, Ordering::SeqCst) {
        // the second one: the user means it
        // SAFETY: _exit is async-signal-safe and ends the process.
        unsafe { _exit(130) }
    }
}

/// From now on SIGINT and SIGTERM set the flag ([`flag`]) instead of killing the process.
pub fn catch() {
    CAUGHT.call_once(|| {
        extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGINT: i32 = 2;
        const SIGTERM: i32 = 15;
        // SAFETY: installs a handler that only touches an atomic (and may call _exit).
        unsafe {
            signal(SIGINT, on_signal as extern "C" fn(i32) as usize);
            signal(SIGTERM, on_signal as extern "C" fn(i32) as usize);
        }
    });
}

/// The flag the signals set.
pub fn flag() -> &'static AtomicBool {
    &STOP
}

/// On Ctrl-C or SIGTERM: run `stop` (the latest one registered), remove the files being
/// written for the user, and exit with 130.
pub fn on_stop(stop: impl FnOnce() + Send + 'static) {
    *ON_STOP.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(stop));
    catch();
    STOPPER.call_once(|| {
        std::thread::spawn(|| {
            while !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let stop = ON_STOP.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(stop) = stop {
                stop();
            }
            crate::delivery::files::remove_unfinished();
            std::process::exit(130);
        });
    });
}

/// When a stop is under way, give its thread up to 30 s to end the process: a command whose
/// job the stop cancelled exits with 130, not with the job's "cancelled" error.
pub fn settle() {
    if !(STOPPER.is_completed() && STOP.load(Ordering::SeqCst)) {
        return;
    }
    for _ in 0..300 {
        std::thread::sleep(Duration::from_millis(100));
    }
}
