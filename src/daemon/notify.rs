//! systemd's notification protocol (`Type=notify`, `WatchdogSec=`): a few
//! datagrams to `$NOTIFY_SOCKET`, sent from the main loop.
//!
//! Hand-written rather than a crate because it is one non-blocking
//! `sendto` per event, and a send that cannot go through at once is
//! dropped with a rate-limited log line: systemd being slow must never
//! stall the milter. Outside systemd (no `$NOTIFY_SOCKET`) every call is a
//! no-op.

use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::ratelimit::LogLimiter;

static SEND_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (a
    /// watchdog meant for another process is ignored, as sd_notify does).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let connect = || -> io::Result<(UnixDatagram, SocketAddr)> {
                let bytes = path.as_encoded_bytes();
                let addr = match bytes.strip_prefix(b"@") {
                    Some(name) => SocketAddr::from_abstract_name(name)?,
                    None => SocketAddr::from_pathname(&path)?,
                };
                let sock = UnixDatagram::unbound()?;
                sock.set_nonblocking(true)?;
                Ok((sock, addr))
            };
            connect()
                .map_err(|e| tracing::warn!("NOTIFY_SOCKET {path:?} unusable: {e}"))
                .ok()
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim().parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us && target.is_some())
            .map(|u| Duration::from_micros(u / 2).max(Duration::from_millis(1)));
        Notifier { target, watchdog }
    }

    /// How often [`Notifier::watchdog`] must be called: half the timeout
    /// systemd gave us, or `None` when no watchdog is armed.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }

    /// The listener is bound and the state restored.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving");
    }

    /// A reload starts; [`Notifier::ready`] ends it. systemd (253+) wants
    /// the monotonic time of the start with it.
    pub fn reloading(&self) {
        let usec = monotonic_usec();
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    fn send(&self, message: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        if let Err(e) = sock.send_to_addr(message.as_bytes(), addr)
            && let Some(held_back) = SEND_LOG.allow()
        {
            tracing::warn!(
                "cannot notify systemd ({}): {e} ({held_back} more suppressed)",
                message.lines().next().unwrap_or_default()
            );
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0) / 1000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value systemd reads is in microseconds and follows real time:
    /// across a measured span of at least 20 ms it moves by that span (a
    /// constant, or milliseconds or nanoseconds, fail here).
    #[test]
    fn monotonic_clock_counts_microseconds() {
        let span = Duration::from_millis(20);
        let outer = std::time::Instant::now();
        let a = monotonic_usec();
        let inner = std::time::Instant::now();
        std::thread::sleep(span);
        let inner = inner.elapsed();
        let b = monotonic_usec();
        let outer = outer.elapsed();
        let moved = b.checked_sub(a).expect("went backwards");
        assert!(
            moved >= inner.as_micros() as u64 && moved <= outer.as_micros() as u64 + 1,
            "moved {moved} us while {inner:?}..{outer:?} passed"
        );
    }
}
