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

use super::serve::{Event, Events};

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
}

impl Events for SignalEvents {
    /// The next signal; `None` only after [`Events::close`].
    async fn next(&mut self) -> Option<Event> {
        loop {
            let event = match self.signals.next().await? {
                SIGHUP => Event::Reload,
                SIGUSR1 => Event::Stats,
                SIGUSR2 => Event::Checkpoint,
                SIGTERM | SIGINT => Event::Shutdown,
                SIGCHLD => Event::ChildExited,
                _ => continue,
            };
            return Some(event);
        }
    }

    fn close(&mut self) {
        self.handle.close();
    }
}
