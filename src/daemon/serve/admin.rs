//! The daemon's side of the control socket and the metrics endpoint:
//! binding them at start-up, answering commands and scrapes in the main
//! loop, expiring runtime allowances.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Daemon;
use crate::cluster::Cluster;
use crate::cluster::settings::{SharedSettings, adopted_message};
use crate::config::Config;
use crate::config::cluster::shared_settings;
use crate::control::check;
use crate::control::handle::{self, Context, Reply};
use crate::control::protocol::Command;
use crate::control::server::{self as control, Access, ControlRequest};
use crate::control::shared;
use crate::daemon::privileges::Identity;
use crate::greylist::Engine;
use crate::greylist::engine::{AdminWalk, WALK_SLICE};
use crate::metrics::render::{CheckpointFigures, Input, render};
use crate::ratelimit::LogLimiter;

/// How often a cluster node asks whether an administrator changed the
/// shared state (one GET).
pub const SYNC_PERIOD: Duration = Duration::from_secs(1);

static SYNC_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// The shared allowances after an administrator's change somewhere.
pub struct SharedSync {
    pub epoch: i64,
    pub allows: Vec<(String, u64)>,
}

fn sync_failed(e: &str) {
    if let Some(n) = SYNC_LOG.allow() {
        tracing::warn!("shared allowances not refreshed: {e} ({n} more not logged)");
    }
}

/// Polls the epoch; on a change, fetches the allowances for the main loop.
pub async fn watch_shared(
    cluster: Cluster,
    engine: Rc<RefCell<Engine>>,
    to: mpsc::Sender<SharedSync>,
) {
    let mut seen = None;
    let mut tick = tokio::time::interval(SYNC_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let epoch = match cluster.epoch().await {
            Ok(Some(e)) if seen != Some(e) => e,
            Ok(_) => continue,
            Err(e) => {
                sync_failed(&e);
                continue;
            }
        };
        let now = engine.borrow().now();
        match cluster
            .allowances(now, crate::control::allows::MAX_ALLOWS)
            .await
        {
            Ok(allows) => {
                if to.send(SharedSync { epoch, allows }).await.is_err() {
                    return;
                }
                seen = Some(epoch);
            }
            Err(e) => {
                sync_failed(&e);
            }
        }
    }
}

/// What `bind_admin` bound.
pub struct AdminSockets {
    pub control: Option<(crate::milter::listener::Listener, Access)>,
    pub metrics: Option<std::net::TcpListener>,
}

/// Binds the control socket and the metrics listener (before privileges
/// are dropped: /run, a low port).
pub fn bind_admin(config: &Config, identity: Option<Identity>) -> Result<AdminSockets, String> {
    let control = bind_control(config, identity)?;
    let metrics = match config.metrics.listen {
        Some(addr) => {
            let l = crate::metrics::server::bind(addr).map_err(|e| {
                // The start fails: leave no control socket behind.
                if let Some((control, _)) = &control {
                    let _ = control.remove_socket_file();
                }
                format!("[metrics] listen {addr}: {e}")
            })?;
            let bound = l
                .local_addr()
                .map_or_else(|_| addr.to_string(), |a| a.to_string());
            tracing::info!(metrics = %bound, "metrics endpoint ready");
            Some(l)
        }
        None => None,
    };
    Ok(AdminSockets { control, metrics })
}

/// The control socket, bound as root (in /run) and handed to the daemon's
/// user, with who may use it.
fn bind_control(
    config: &Config,
    identity: Option<Identity>,
) -> Result<Option<(crate::milter::listener::Listener, Access)>, String> {
    let c = &config.control;
    let Some(path) = &c.socket else {
        return Ok(None);
    };
    let group = match &c.group {
        Some(name) => Some(
            nix::unistd::Group::from_name(name)
                .map_err(|e| format!("cannot look up control.group {name:?}: {e}"))?
                .ok_or_else(|| format!("no such control.group {name:?}"))?
                .gid,
        ),
        None => None,
    };
    let listener =
        control::bind(path, c.mode.0, group).map_err(|e| format!("control socket: {e}"))?;
    if let Some(who) = identity {
        nix::unistd::chown(path, Some(who.uid), None)
            .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    }
    let uid = identity.map_or_else(nix::unistd::geteuid, |who| who.uid);
    tracing::info!(socket = %path.display(), "control socket ready");
    Ok(Some((listener, Access { uid, group })))
}

impl Daemon {
    /// A control command but `reload` (a job of the loop: `reload.rs`).
    pub(super) fn on_control(
        &mut self,
        request: ControlRequest,
        again: &mpsc::Sender<ControlRequest>,
    ) {
        if request.walked.is_none()
            && let Some(walk) = self.start_walk(&request.command)
        {
            self.walk_then_answer(walk, request, again.clone());
            return;
        }
        if let (Command::AdoptSettings, Some(cluster)) =
            (&request.command, self.factory.pipeline().cluster().cloned())
        {
            self.adopt_settings(cluster, request);
            return;
        }
        if let (Command::Import(_), Some(_)) = (&request.command, self.factory.pipeline().cluster())
        {
            // Redis is the authority: `greymilter import` writes there.
            let _ = request.reply.send(Reply::error(
                "this node has a [cluster] section: greymilter import writes into Redis, not through a node",
            ));
            return;
        }
        if let Command::Check { .. } = request.command {
            // DNS (and Redis) may be asked: in a task of its own, so the
            // loop never waits.
            let pipeline = self.factory.pipeline().clone();
            tokio::task::spawn_local(async move {
                let answer = check::check(&pipeline, &request.command).await;
                let _ = request.reply.send(answer);
            });
            return;
        }
        if let Some(cluster) = self.factory.pipeline().cluster().cloned()
            && !matches!(request.command, Command::Stats | Command::Reload)
        {
            self.on_shared_control(cluster, request);
            return;
        }
        let reply = match &request.command {
            Command::Stats => Reply::ok(self.report()),
            command => {
                let mut engine = self.engine.borrow_mut();
                handle::execute(
                    command,
                    Context {
                        engine: &mut engine,
                        allows: &mut self.allows,
                        uid: request.uid,
                        walked: request.walked,
                    },
                )
            }
        };
        let _ = request.reply.send(reply);
    }

    /// The table walk a command needs (`forget NETWORK`, `flush`), if any.
    fn start_walk(&self, command: &Command) -> Option<AdminWalk> {
        let engine = self.engine.borrow();
        match command {
            Command::FlushPending => Some(engine.flush_walk()),
            // A refused network is answered by `execute`.
            Command::ForgetNetwork(net) => engine.forget_network_walk(*net).ok(),
            _ => None,
        }
    }

    /// Walks the table for `request` in slices of [`WALK_SLICE`] tuples,
    /// the loop serving between them (a whole walk is 0.2-1.7 s at 10M
    /// tuples), then hands the request back to the loop with what the walk
    /// removed, to be answered (and shared with a cluster) as usual.
    fn walk_then_answer(
        &self,
        mut walk: AdminWalk,
        request: ControlRequest,
        again: mpsc::Sender<ControlRequest>,
    ) {
        let engine = self.engine.clone();
        tokio::task::spawn_local(async move {
            let walked = loop {
                if let Some(done) = engine.borrow_mut().walk_step(&mut walk, WALK_SLICE) {
                    break done;
                }
                // Woken after the runtime has polled its sockets and timers.
                tokio::task::yield_now().await;
            };
            let request = ControlRequest {
                walked: Some(walked),
                ..request
            };
            if let Err(e) = again.send(request).await {
                let _ = e.0.reply.send(Reply::error("the daemon is shutting down"));
            }
        });
    }

    /// `cluster adopt-settings`: this host's settings become the cluster's,
    /// in a task of its own (the loop never waits for Redis).
    fn adopt_settings(&self, cluster: Cluster, request: ControlRequest) {
        let ours = SharedSettings::new(shared_settings(&self.config));
        let uid = request.uid;
        tokio::task::spawn_local(async move {
            let answer =
                match tokio::time::timeout(shared::SHARED_DEADLINE, cluster.adopt_settings(&ours))
                    .await
                {
                    Ok(Ok(changed)) => {
                        let message = adopted_message(&changed);
                        tracing::warn!(uid, "control: cluster adopt-settings: {message}");
                        Reply::ok(message)
                    }
                    Ok(Err(e)) => Reply::error(format!("redis: {e}")),
                    Err(_) => Reply::error(format!(
                        "redis did not answer within {} s",
                        shared::SHARED_DEADLINE.as_secs()
                    )),
                };
            let _ = request.reply.send(answer);
        });
    }

    /// A command at a cluster node: this node's part now, Redis' part in
    /// a task of its own (the loop never waits for Redis).
    fn on_shared_control(&mut self, cluster: Cluster, request: ControlRequest) {
        let ControlRequest {
            command,
            uid,
            reply,
            walked,
        } = request;
        let local = handle::execute(
            &command,
            Context {
                engine: &mut self.engine.borrow_mut(),
                allows: &mut self.allows,
                uid,
                walked,
            },
        );
        let plan = shared::plan(&command, &self.engine.borrow());
        tokio::task::spawn_local(async move {
            let answer = match plan {
                Some(plan) => shared::edit(&cluster, plan, local, &command.to_line(), uid).await,
                None => local,
            };
            let _ = reply.send(answer);
        });
    }

    /// Another node (or this one) changed the shared state: its
    /// allowances replace ours, and cached whitelisted tuples are asked
    /// about again (one may have been forgotten).
    pub(super) fn on_shared_sync(&mut self, sync: SharedSync) {
        let now = self.engine.borrow().now();
        self.engine.borrow_mut().distrust_cache();
        let bad = self.allows.replace(&sync.allows, now);
        if bad > 0 {
            tracing::warn!("shared allowances: {bad} unusable member(s) skipped");
        }
        self.engine.borrow_mut().set_allowed(self.allows.compiled());
        if let Err(e) = self.allows.save() {
            tracing::error!("{e}");
        }
        tracing::info!(
            epoch = sync.epoch,
            allowances = self.allows.len(),
            "shared state changed by an administrator: allowances reloaded, cache distrusted"
        );
    }

    /// Drops expired runtime allowances (looked for once a second).
    pub(super) fn expire_allows(&mut self) {
        let now = self.engine.borrow().now();
        if now == self.allows_checked || self.allows.is_empty() {
            return;
        }
        self.allows_checked = now;
        let gone = self.allows.expire(now);
        if gone.is_empty() {
            return;
        }
        for a in &gone {
            tracing::info!("runtime allowance expired: {a}");
        }
        self.engine.borrow_mut().set_allowed(self.allows.compiled());
        if let Err(e) = self.allows.save() {
            tracing::error!("{e}");
        }
    }

    /// A fresh exposition text for a scrape.
    pub(super) fn metrics_text(&self) -> String {
        let engine = self.engine.borrow();
        let counters = self.factory.counters();
        let (sessions, protocol_errors, session_timeouts) = counters.ended();
        render(&Input {
            snapshot: engine.stats(),
            decisions: engine.decision_counts(),
            sessions,
            protocol_errors,
            session_timeouts,
            decision_timeouts: counters.decisions_expired(),
            checkpoint: self.checkpointer.as_ref().map(|cp| CheckpointFigures {
                written: cp.stats.written,
                failed: cp.stats.failed,
                busy: cp.stats.skipped_busy,
                last_duration_seconds: cp.stats.last_duration.map_or(0.0, |d| d.as_secs_f64()),
            }),
            allowances: self.allows.len() as u64,
            cluster: self.factory.pipeline().cluster().map(Cluster::counters),
            loop_lag: Some(self.loop_lag_histogram()),
        })
    }
}
