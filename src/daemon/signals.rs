//! Signals as events for the main loop.
//!
//! signal-hook's handler only writes a byte into a pipe (async-signal-safe);
//! everything else happens when the main loop reads the event. This is the
//! rule the project was born from: no logging, no allocation, no work at all
//! in signal context. Deliveries of one signal between two reads coalesce
//! into one event, which is what every action here wants.

use futures_util::StreamExt;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_tokio::{Handle, Signals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR1: write the statistics report.
    Stats,
    /// SIGUSR2: write a checkpoint now.
    Checkpoint,
    /// SIGTERM or SIGINT: shut down gracefully.
    Shutdown,
    /// SIGCHLD: reap the checkpoint child.
    ChildExited,
}

pub struct SignalEvents {
    signals: Signals,
    handle: Handle,
}

impl SignalEvents {
    /// Installs the handlers. Must run inside the tokio runtime.
    pub fn install() -> std::io::Result<SignalEvents> {
        let signals = Signals::new([SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGCHLD])?;
        let handle = signals.handle();
        Ok(SignalEvents { signals, handle })
    }

    /// The next signal; `None` only after [`SignalEvents::close`].
    pub async fn next(&mut self) -> Option<SignalEvent> {
        loop {
            let event = match self.signals.next().await? {
                SIGHUP => SignalEvent::Reload,
                SIGUSR1 => SignalEvent::Stats,
                SIGUSR2 => SignalEvent::Checkpoint,
                SIGTERM | SIGINT => SignalEvent::Shutdown,
                SIGCHLD => SignalEvent::ChildExited,
                _ => continue,
            };
            return Some(event);
        }
    }

    pub fn close(&self) {
        self.handle.close();
    }
}
