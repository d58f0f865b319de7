//! Standard output of the command-line verbs. `print!` panics when the
//! reader has gone away (`greymilter check-config | head -1`); [`out!`] and
//! [`outln!`] stop writing instead, quietly, and let the verb finish with
//! its own exit status (an import still writes its state file). Any other
//! write error (a full disk) is said once on stderr, and [`failed`] tells
//! the binary to exit with a failure.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes `args` to standard output unless an earlier write failed.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut out = io::stdout().lock();
    // Flushed at once so that a closed pipe is seen here, not at exit.
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => STATE.store(CLOSED, Ordering::Relaxed),
        Err(e) => {
            STATE.store(FAILED, Ordering::Relaxed);
            eprintln!("greymilter: cannot write to standard output: {e}");
        }
    }
}

/// Whether a write to standard output failed for another reason than its
/// reader going away.
pub fn failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

/// `print!` that neither panics nor complains when the reader has gone
/// away (see the module docs).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write_fmt(format_args!($($arg)*)) };
}

/// `println!` that neither panics nor complains when the reader has gone
/// away (see the module docs).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
