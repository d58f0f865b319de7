//! Logging to stderr (journald picks it up) or to syslog (facility mail by
//! default, see `syslog.rs`), level reloadable on SIGHUP.
//!
//! Writes are synchronous on the calling thread: a background writer thread
//! would break the single-thread rule the checkpoint fork depends on.
//! Stderr lines go through `log_output`'s buffer (flushed whenever the
//! loop is about to sleep), and decision lines through its own writer.

use std::io::{IsTerminal, Write as _};

use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use super::syslog::{self, Syslog};
use crate::config::{LogConfig, LogFormat, LogTarget};
use crate::log_output;

pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    /// RUST_LOG was set: it wins over the configuration, also on reload.
    from_env: bool,
}

impl Logging {
    /// Installs the global subscriber. Call once.
    pub fn init(config: &LogConfig) -> Logging {
        let env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
        let from_env = env.is_some();
        let directive = env.unwrap_or_else(|| config.level.directive());
        let filter = EnvFilter::try_new(&directive).unwrap_or_else(|_| EnvFilter::new("info"));
        let (filter, handle) = reload::Layer::new(filter);
        let syslog = config.target == LogTarget::Syslog;
        let writer = || match config.target {
            LogTarget::Stderr => BoxMakeWriter::new(log_output::Stderr),
            LogTarget::Syslog => BoxMakeWriter::new(Syslog::new(
                config.syslog_socket.clone(),
                config.facility.code(),
            )),
        };
        // Colours only for a person at a terminal, never into journald or files.
        let ansi = !syslog && std::io::stderr().is_terminal();
        // Syslog stamps the time and carries the level in the priority.
        let text = (config.format == LogFormat::Text).then(|| {
            let layer = fmt::layer()
                .with_writer(writer())
                .with_target(false)
                .with_ansi(ansi);
            if syslog {
                layer.without_time().with_level(false).boxed()
            } else {
                layer.boxed()
            }
        });
        let json =
            (config.format == LogFormat::Json).then(|| fmt::layer().json().with_writer(writer()));
        let text_plain = config.format == LogFormat::Text && !ansi;
        // A second init (tests) keeps the first subscriber.
        let installed = tracing_subscriber::registry()
            .with(filter)
            .with(text)
            .with(json)
            .try_init()
            .is_ok();
        // The decision line's own writer, in the layout just installed.
        if installed && text_plain {
            match config.target {
                LogTarget::Stderr => log_output::install_stderr(),
                LogTarget::Syslog => {
                    let syslog = Syslog::new(config.syslog_socket.clone(), config.facility.code());
                    let info = syslog::severity(&tracing::Level::INFO);
                    log_output::install_syslog(Box::new(move |message| {
                        let _ = syslog.line(info).write_all(message);
                    }));
                }
            }
        }
        if installed {
            // Buffered lines first, then the panic's message.
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                log_output::flush_if_free();
                previous(info);
            }));
        }
        Logging {
            filter: handle,
            from_env,
        }
    }

    /// Applies a reloaded configuration's level (the format is
    /// restart-only: `config::reload`).
    pub fn apply(&self, config: &LogConfig) {
        if self.from_env {
            return;
        }
        match EnvFilter::try_new(config.level.directive()) {
            Ok(filter) => {
                if let Err(e) = self.filter.reload(filter) {
                    tracing::error!(error = %e, "cannot change the log level");
                }
            }
            Err(e) => tracing::error!(error = %e, "invalid log level"),
        }
    }
}
