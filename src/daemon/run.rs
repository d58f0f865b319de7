//! The binary's runtime shell: logging, the identity to drop to, the
//! single-threaded runtime, the bound listener and the signals, around
//! [`Daemon`] (`serve.rs`), which does the work.

use std::path::PathBuf;

use tokio::task::LocalSet;

use super::logging::Logging;
use super::privileges::{self, Identity};
use super::serve::{Daemon, Setup, bind_admin};
use super::signals::SignalEvents;
use crate::cluster::tls::TlsSetup;
use crate::cluster::{Cluster, Options as ClusterOptions, SharedSecret};
use crate::config::Config;
use crate::config::cluster::ClusterConfig;
use crate::greylist::clock::SystemClock;
use crate::log_output;
use crate::milter::listener::{Listener, UnixSocketOptions};

/// Runs the daemon until SIGTERM/SIGINT. `Err` only for start-up failures.
pub fn run(config: Config, config_path: Option<PathBuf>) -> Result<(), String> {
    let logging = Logging::init(&config.log);
    match &config_path {
        Some(p) => {
            tracing::info!(config = %p.display(), version = env!("CARGO_PKG_VERSION"), "greymilter starting")
        }
        None => tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            "greymilter starting with built-in defaults (no configuration file)"
        ),
    }
    // What check-config warns about (listeners reachable from the
    // network), in the log too: an admin may never have run it.
    if let Some(p) = &config_path {
        for mut warning in config.preflight(p).warnings {
            warning.message = warning.message.replacen("warning: ", "", 1);
            tracing::warn!("{warning}");
        }
    }
    // `[milter] enabled = false`: the policy service alone.
    let spec = config
        .milter
        .enabled
        .then(|| config.milter.listen.spec.clone());
    let identity = identity(&config)?;
    let unix = UnixSocketOptions {
        mode: config.milter.socket_mode.0,
        group: socket_group(config.milter.socket_group.as_deref())?,
    };
    let policy_spec = config.policy.listen.as_ref().map(|l| l.spec.clone());
    let policy_unix = UnixSocketOptions {
        mode: config.policy.socket_mode.0,
        group: socket_group(config.policy.socket_group.as_deref())?,
    };

    // Read before privileges are dropped: the secret and the TLS key may
    // be readable by root only.
    let cluster_options = config.cluster.as_ref().map(cluster_options).transpose()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        // Log lines of one loop turn in one write (`log_output`).
        .on_thread_park(log_output::flush)
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    log_output::buffer_until_flushed();
    let local = LocalSet::new();
    let result = local.block_on(&runtime, async move {
        // First, so that a SIGHUP or SIGTERM sent as soon as the daemon is
        // seen (its pidfile, its socket) is an event, not the default
        // action that kills the process.
        let signals =
            SignalEvents::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        // Before listening: a node with the wrong secret must not take mail.
        let cluster = match cluster_options {
            Some(o) => Some((Cluster::connect(&o).await?, o.secret.secret)),
            None => None,
        };
        let listener = match &spec {
            Some(spec) => {
                let l = Listener::bind(spec, &unix).map_err(|e| e.to_string())?;
                tracing::info!(listen = %l.local_addr(), "listening");
                Some(l)
            }
            None => None,
        };
        // A start that fails past this point leaves no socket file behind.
        let cleanup = |listeners: &[&Option<Listener>]| {
            for l in listeners.iter().copied().flatten() {
                let _ = l.remove_socket_file();
            }
        };
        let policy = match &policy_spec {
            Some(spec) => {
                let l = Listener::bind(spec, &policy_unix)
                    .map_err(|e| format!("[policy] {e}"))
                    .inspect_err(|_| cleanup(&[&listener]))?;
                tracing::info!(listen = %l.local_addr(), "policy service listening");
                Some(l)
            }
            None => None,
        };
        let admin = bind_admin(&config, identity).inspect_err(|_| {
            cleanup(&[&listener, &policy]);
        })?;
        let setup = Setup {
            config_path,
            logging: Some(logging),
            identity,
            clock: Box::new(SystemClock),
        };
        let started = Daemon::start(config, setup).inspect_err(|_| {
            cleanup(&[&listener, &policy]);
            if let Some((control, _)) = &admin.control {
                let _ = control.remove_socket_file();
            }
        })?;
        let mut daemon = started.with_admin(admin);
        if let Some((c, secret)) = cluster {
            daemon = daemon.with_cluster(c, secret);
        }
        if let Some(policy) = policy {
            daemon = daemon.with_policy(policy);
        }
        daemon.serve(listener, signals).await;
        Ok(())
    });
    drop(local);
    drop(runtime);
    // Whatever was logged on the way out, before main says anything.
    log_output::unbuffer();
    result
}

pub(crate) fn cluster_options(c: &ClusterConfig) -> Result<ClusterOptions, String> {
    Ok(ClusterOptions {
        url: c.redis.0.clone(),
        secret: SharedSecret::load(&c.secret_file)?,
        timeout: c.timeout.0,
        tls: c
            .tls()
            .then(|| TlsSetup::load(&c.tls_files()))
            .transpose()
            .map_err(|(_, e)| e)?,
    })
}

fn identity(config: &Config) -> Result<Option<Identity>, String> {
    if !privileges::is_root() {
        if config.daemon.user.is_some() {
            tracing::warn!(
                "[daemon] user is set but greymilter was not started as root; running as the current user"
            );
        }
        return Ok(None);
    }
    let identity = privileges::resolve(&config.daemon).map_err(|e| e.to_string())?;
    if identity.is_none() {
        tracing::warn!(
            "running as root: set [daemon] user so greymilter drops its privileges after start-up"
        );
    }
    Ok(identity)
}

fn socket_group(name: Option<&str>) -> Result<Option<nix::unistd::Gid>, String> {
    let Some(name) = name else {
        return Ok(None);
    };
    let group = nix::unistd::Group::from_name(name)
        .map_err(|e| format!("cannot look up socket_group {name:?}: {e}"))?
        .ok_or_else(|| format!("no such socket_group {name:?}"))?;
    Ok(Some(group.gid))
}
