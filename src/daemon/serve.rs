//! The daemon proper, runnable in-process: [`Daemon::start`] builds the
//! engine (restoring the state file), [`Daemon::serve`] serves a listener
//! and handles [`Event`]s (reload, statistics, checkpoint, child exit,
//! shutdown) until told to stop. The binary feeds it signals
//! (`run.rs`); tests feed it a channel and a manual clock.
//!
//! Everything runs on one thread: a tokio `current_thread` runtime with a
//! `LocalSet`. The engine lives in an `Rc<RefCell<…>>` shared by the
//! sessions and this loop; borrows never cross an `.await`, so no borrow is
//! active when the loop forks a checkpoint.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::{MissedTickBehavior, interval};

use super::checkpoint::Checkpointer;
use super::logging::Logging;
use super::loop_lag::{self, LoopLag};
use super::notify::Notifier;
use super::pidfile::Pidfile;
use super::privileges::{self, Identity};
use super::restore::restore;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::allows::Allows;
use crate::control::protocol::Command;
use crate::control::server::{self as control, ControlRequest};
use crate::dns::Dns;
use crate::files::atomic::remove_stale_temps;
use crate::greylist::Engine;
use crate::greylist::clock::Clock;
use crate::greylist::key::Secret;
use crate::metrics::server::Scrape;
use crate::milter::listener::Listener;
use crate::milter::server::{Limits, serve, serve_sessions};
use crate::pipeline::{MilterFactory, Pipeline, Timeouts};
use crate::postfix_policy::connection::Options as PolicyOptions;
use crate::postfix_policy::server::PolicySessions;

mod admin;
mod checkpoints;
mod reload;
mod report;
pub use admin::{AdminSockets, bind_admin};
use checkpoints::prepare_state_dir;
use reload::Reloads;

/// How often the engine's incremental expiry runs.
const MAINTENANCE_PERIOD: Duration = Duration::from_millis(100);
/// Upper bound of expiry slices per maintenance tick; each is bounded by the
/// engine (`MAINTAIN_BUDGET` entries, ~0.1–0.2 ms) and the loop takes one
/// per turn, so sessions and every other event are served between two.
const MAX_SLICES_PER_TICK: usize = 64;

/// What the main loop is asked to do (by a signal, or by a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
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

/// Where the main loop's events come from.
pub trait Events {
    /// The next event; `None` when there will be no more (shut down).
    fn next(&mut self) -> impl Future<Output = Option<Event>>;
    /// No more events are wanted.
    fn close(&mut self) {}
}

/// A channel of events, for running the daemon in-process.
impl Events for tokio::sync::mpsc::UnboundedReceiver<Event> {
    fn next(&mut self) -> impl Future<Output = Option<Event>> {
        self.recv()
    }

    fn close(&mut self) {
        tokio::sync::mpsc::UnboundedReceiver::close(self);
    }
}

/// The DNS checks the configuration asks for; `None` when it asks for
/// none, so that no resolver is even configured.
fn dns_of(config: &Config) -> Option<Rc<Dns>> {
    let settings = config.dns_settings();
    settings.wanted().then(|| Rc::new(Dns::new(settings)))
}

pub fn timeouts(config: &Config) -> Timeouts {
    Timeouts {
        idle: config.milter.idle_timeout.0,
        decision: config.milter.decision_timeout.0,
    }
}

/// What the daemon needs besides its configuration.
pub struct Setup {
    /// The file SIGHUP re-reads; `None`: built-in defaults.
    pub config_path: Option<PathBuf>,
    /// The log filter a reload adjusts; `None` leaves logging alone (tests).
    pub logging: Option<Logging>,
    /// Whom to become after start-up (the binary, started as root).
    pub identity: Option<Identity>,
    /// The engine's clock: the system's, or a manual one in tests.
    pub clock: Box<dyn Clock>,
}

/// The daemon between start-up and exit: the engine, the milter server,
/// checkpoints, statistics and reload, driven by [`Event`]s.
pub struct Daemon {
    config: Config,
    config_path: Option<PathBuf>,
    logging: Option<Logging>,
    engine: Rc<RefCell<Engine>>,
    factory: Rc<MilterFactory>,
    checkpointer: Option<Checkpointer>,
    pidfile: Option<Pidfile>,
    /// Runtime allowances (control socket); the engine has them compiled.
    allows: Allows,
    /// The second at which expired allowances were last looked for.
    allows_checked: u64,
    /// The control socket and metrics listener, bound by the caller.
    admin: Option<AdminSockets>,
    /// How late the loop wakes up (its ticker runs while serving).
    loop_lag: Rc<RefCell<LoopLag>>,
    /// Postfix's policy service (`[policy] listen`), bound by the caller.
    policy: Option<Listener>,
    /// What new policy connections get (a reload changes it).
    policy_options: Rc<Cell<PolicyOptions>>,
    /// Tests: what a reload job pauses with (`None`: a timed yield).
    reload_pause: Option<reload::PauseHook>,
}

/// The policy connections' options in `config`.
pub fn policy_options(config: &Config) -> PolicyOptions {
    PolicyOptions {
        idle_timeout: config.policy.idle_timeout.0,
        decision_timeout: config.milter.decision_timeout.0,
        defer_action: config.policy.defer_action,
    }
}

/// Forks the prefault helper (`crate::prefault`), dropped to the daemon's
/// identity; without it fresh huge pages are faulted on the loop.
fn start_prefault_helper(identity: Option<privileges::Identity>) {
    let setup = move || identity.is_none_or(|who| privileges::drop_to(who).is_ok());
    // The helper runs as `identity` at once, the daemon only after the
    // restore: no request until then (`Daemon::start` releases it).
    crate::prefault::hold(identity.is_some());
    if let Err(e) = crate::prefault::start(setup) {
        tracing::info!(error = %e, "no prefault helper: huge pages are faulted on the main loop");
    }
}

impl Daemon {
    /// State directory, restore, pidfile, privilege drop: in that order,
    /// because the first and the third may need root.
    pub fn start(config: Config, setup: Setup) -> Result<Daemon, String> {
        let Setup {
            config_path,
            logging,
            identity,
            clock,
        } = setup;
        super::announce::configuration(&config);
        // Before the table's first allocation.
        crate::memory::set_huge_pages(config.state.huge_pages);
        // While the process is small (the helper shares what exists now).
        if config.state.huge_pages {
            start_prefault_helper(identity);
        }
        let engine = Rc::new(RefCell::new(Engine::new(config.settings(), clock)));
        let mut checkpointer = None;
        if let Some(path) = &config.state.file {
            prepare_state_dir(path, identity)?;
            remove_stale_temps(path);
            let mut cp = Checkpointer::new(path.clone());
            if restore(&mut engine.borrow_mut(), path) {
                cp.mark_saved(engine.borrow().generation());
            }
            checkpointer = Some(cp);
        } else {
            tracing::info!("no [state] file: the table lives in memory only and is lost at exit");
        }
        let now = engine.borrow().now();
        let (allows, loaded) =
            Allows::load(config.state.file.as_deref().map(Allows::path_for), now);
        match loaded {
            Ok(0) => {}
            Ok(bad) => tracing::warn!("runtime allowances: {bad} unusable line(s) skipped"),
            Err(e) => tracing::error!("runtime allowances: {e}; starting without them"),
        }
        if !allows.is_empty() {
            tracing::info!(count = allows.len(), "restored runtime allowances");
            engine.borrow_mut().set_allowed(allows.compiled());
        }
        let pidfile = match &config.daemon.pidfile {
            Some(path) => {
                let pf = Pidfile::create(path)
                    .map_err(|e| format!("cannot write pidfile {}: {e}", path.display()))?;
                if let Some(who) = identity {
                    privileges::give(pf.path(), who).map_err(|e| e.to_string())?;
                }
                Some(pf)
            }
            None => None,
        };
        if let Some(who) = identity {
            privileges::drop_to(who).map_err(|e| e.to_string())?;
            tracing::info!(uid = %who.uid, gid = %who.gid, "dropped privileges");
            if crate::prefault::running() {
                // setuid made us non-dumpable, which refuses the helper
                // (same uid, no capabilities) access to our memory.
                let _ = nix::sys::prctl::set_dumpable(true);
            }
            crate::prefault::hold(false);
        }
        let pipeline = Pipeline::new(engine.clone());
        pipeline.set_dns(dns_of(&config));
        let factory = Rc::new(MilterFactory::new(pipeline, timeouts(&config)));
        let policy_options = Rc::new(Cell::new(policy_options(&config)));
        Ok(Daemon {
            config,
            config_path,
            logging,
            engine,
            factory,
            checkpointer,
            pidfile,
            allows,
            allows_checked: now,
            admin: None,
            loop_lag: Rc::default(),
            policy: None,
            policy_options,
            reload_pause: None,
        })
    }

    /// Serves the control socket and the metrics endpoint too (bound by
    /// `bind_admin`, before privileges were dropped).
    pub fn with_admin(mut self, admin: AdminSockets) -> Daemon {
        self.admin = Some(admin);
        self
    }

    /// Serves Postfix's policy service on `listener` too (bound by the
    /// caller, like the milter's).
    pub fn with_policy(mut self, listener: Listener) -> Daemon {
        self.policy = Some(listener);
        self
    }

    /// Decides through the shared state in Redis (`[cluster]`): every
    /// node hashes with the cluster's secret, set after the state restore
    /// (a saved state carries the secret it was written with).
    pub fn with_cluster(mut self, cluster: Cluster, secret: Secret) -> Daemon {
        self.engine.borrow_mut().set_secret(secret);
        // The DNS checks apply on a cluster node too (before the Redis call).
        let pipeline = self.factory.pipeline().clone().with_cluster(cluster);
        self.factory = Rc::new(MilterFactory::new(pipeline, self.factory.timeouts()));
        self
    }

    /// Serves milter connections on `listener` (none: `[milter] enabled =
    /// false`) and policy connections on the listener of
    /// [`Daemon::with_policy`], and handles `events` until
    /// [`Event::Shutdown`] (or the end of `events`), then drains the
    /// sessions, writes the final checkpoint and removes the socket files
    /// and the pidfile. Must run inside a `LocalSet`.
    pub async fn serve(mut self, listener: impl Into<Option<Listener>>, mut events: impl Events) {
        let listener: Option<Listener> = listener.into();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let limits = Limits {
            max_connections: self.config.milter.max_connections.0,
        };
        let drain = self.config.milter.shutdown_timeout.0;
        let factory = self.factory.clone();
        let milter = {
            let stop = stopped(stop_rx.clone());
            async move {
                match listener {
                    Some(listener) => {
                        serve(&listener, factory, limits, stop, drain).await;
                        Some(listener)
                    }
                    None => {
                        stop.await;
                        None
                    }
                }
            }
        };
        let policy_limits = Limits {
            max_connections: self.config.policy.max_connections.0,
        };
        let sessions = PolicySessions {
            pipeline: self.factory.pipeline().clone(),
            options: Rc::clone(&self.policy_options),
        };
        let policy_listener = self.policy.take();
        let policy = {
            let stop = stopped(stop_rx.clone());
            async move {
                match policy_listener {
                    Some(listener) => {
                        serve_sessions(&listener, &sessions, policy_limits, stop, drain).await;
                        Some(listener)
                    }
                    None => {
                        stop.await;
                        None
                    }
                }
            }
        };
        let mut server = tokio::task::spawn_local(async move { tokio::join!(milter, policy) });
        let mut checkpoint_tick = interval(self.config.state.checkpoint_interval.0);
        checkpoint_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        checkpoint_tick.reset();
        let mut maintenance_tick = interval(MAINTENANCE_PERIOD);
        maintenance_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let notify = Notifier::from_env();
        // Without a watchdog the tick still runs, rarely, and sends nothing.
        let mut watchdog_tick = interval(
            notify
                .watchdog_period()
                .unwrap_or(Duration::from_secs(3600)),
        );
        watchdog_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<ControlRequest>(8);
        // Walks of the table come back through the same queue (see
        // `Daemon::walk_then_answer`).
        let walked_tx = control_tx.clone();
        let (metrics_tx, mut metrics_rx) = tokio::sync::mpsc::channel::<Scrape>(8);
        let admin = self.admin.take().unwrap_or(AdminSockets {
            control: None,
            metrics: None,
        });
        let metrics = admin
            .metrics
            .map(|l| tokio::task::spawn_local(crate::metrics::server::serve(l, metrics_tx)));
        let control = admin.control.map(|(l, access)| {
            let l = Rc::new(l);
            let task = tokio::task::spawn_local({
                let l = Rc::clone(&l);
                async move { control::serve(&l, access, control_tx).await }
            });
            (l, task)
        });
        let lag_ticker = tokio::task::spawn_local(loop_lag::watch(self.loop_lag.clone()));
        let (sync_tx, mut sync_rx) = tokio::sync::mpsc::channel::<admin::SharedSync>(2);
        self.watch_cluster_settings();
        let watcher = self.factory.pipeline().cluster().cloned().map(|c| {
            tokio::task::spawn_local(admin::watch_shared(c, self.engine.clone(), sync_tx))
        });
        // The listener was bound and the state restored before this.
        notify.ready();

        let mut reloads = Reloads::default();
        // Expiry slices left in this maintenance tick.
        let mut sweep = 0usize;
        let stopped_early = loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Event::Reload) => self.ask_reload(&mut reloads, None, &notify),
                    Some(Event::Stats) => {
                        self.write_stats();
                        // The report at once, for an admin waiting on it.
                        crate::log_output::flush();
                    }
                    Some(Event::Checkpoint) => self.checkpoint(true),
                    Some(Event::ChildExited) => self.reap(),
                    Some(Event::Shutdown) | None => break None,
                },
                // One slice of the reload per turn of the loop: every other
                // event waits one slice at most.
                result = reloads.finished(), if reloads.running() => {
                    if self.reload_finished(&mut reloads, result, &notify) {
                        checkpoint_tick = interval(self.config.state.checkpoint_interval.0);
                        checkpoint_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                        checkpoint_tick.reset();
                    }
                }
                _ = checkpoint_tick.tick() => {
                    self.reap();
                    self.checkpoint(false);
                }
                _ = maintenance_tick.tick() => {
                    self.expire_allows();
                    sweep = MAX_SLICES_PER_TICK;
                }
                // One expiry slice per turn of the loop, after a yield (the
                // sessions are served between two), like the reload's.
                () = tokio::task::yield_now(), if sweep > 0 => {
                    sweep = if self.engine.borrow_mut().maintain() { sweep - 1 } else { 0 };
                }
                _ = watchdog_tick.tick() => if notify.watchdog_period().is_some() {
                    notify.watchdog();
                },
                Some(scrape) = metrics_rx.recv() => {
                    let _ = scrape.send(self.metrics_text());
                }
                Some(sync) = sync_rx.recv() => self.on_shared_sync(sync),
                Some(request) = control_rx.recv() => {
                    if matches!(request.command, Command::Reload) {
                        tracing::info!(uid = request.uid, "control: reload");
                        self.ask_reload(&mut reloads, Some(request.reply), &notify);
                    } else {
                        self.on_control(request, &walked_tx);
                    }
                }
                result = &mut server => break Some(result),
            }
        };
        reloads.abandon();
        events.close();
        notify.stopping();
        for task in [metrics, watcher].into_iter().flatten() {
            task.abort();
        }
        lag_ticker.abort();
        if let Some((l, task)) = control {
            task.abort();
            if let Err(e) = l.remove_socket_file() {
                tracing::warn!(error = %e, "cannot remove the control socket");
            }
        }
        let listeners = match stopped_early {
            Some(Ok(listeners)) => {
                tracing::error!("the listener stopped unexpectedly; shutting down");
                listeners
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "the listener task failed; shutting down");
                (None, None)
            }
            None => {
                tracing::info!("shutting down: no new connections, waiting for sessions in flight");
                let _ = stop_tx.send(true);
                match server.await {
                    Ok(listeners) => listeners,
                    Err(e) => {
                        tracing::error!(error = %e, "the listener task failed");
                        (None, None)
                    }
                }
            }
        };
        self.final_checkpoint();
        for listener in [listeners.0, listeners.1].into_iter().flatten() {
            if let Err(e) = listener.remove_socket_file() {
                tracing::warn!(error = %e, "cannot remove the Unix socket");
            }
        }
        if let Some(pf) = &self.pidfile {
            pf.remove();
        }
        tracing::info!("greymilter stopped");
    }
}
