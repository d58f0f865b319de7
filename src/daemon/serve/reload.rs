//! SIGHUP or `greymilter reload`: a new configuration applied to the
//! running daemon, the table kept.
//!
//! A reload is a job the main loop interleaves with its other events
//! ([`Reloads`]): the list files are parsed and the lists compiled in
//! slices of about [`crate::pace::BUDGET`], built aside while sessions,
//! signals, control requests, scrapes and checkpoints are served with the
//! running configuration; the result is swapped in at the end, in one step
//! ([`Daemon::apply_reload`]). A reload asked for meanwhile runs once the
//! running one is swapped in (several coalesce into one); a shutdown
//! abandons the job.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use tokio::sync::oneshot;

use super::{Daemon, dns_of, policy_options, timeouts};
use crate::config::Config;
use crate::config::reload::keep_restart_only;
use crate::control::handle::Reply;
use crate::daemon::notify::Notifier;
use crate::greylist::lists::Lists;
use crate::greylist::settings::Settings;
use crate::pace::{BUDGET, Pacer, SLICE};

/// What a reload job pauses with in a test (instead of a timed yield):
/// called at every pause of a counting pacer of [`SLICE`] entries.
pub(super) type PauseHook = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

type Job = Pin<Box<dyn Future<Output = Result<Prepared, String>>>>;

/// A reload's result, ready to be swapped in.
pub(super) struct Prepared {
    new: Config,
    settings: Settings,
    lists: Lists,
}

/// The reload in progress, if any, and who waits for it.
#[derive(Default)]
pub(super) struct Reloads {
    job: Option<Job>,
    /// `greymilter reload` requests answered when the job ends.
    waiting: Vec<oneshot::Sender<Reply>>,
    /// Asked for while the job ran (with the requests to answer): runs
    /// once the job's result is swapped in, with the files as they are then.
    queued: Option<Vec<oneshot::Sender<Reply>>>,
}

impl Reloads {
    pub(super) fn running(&self) -> bool {
        self.job.is_some()
    }

    /// Runs the job to its end; cancelled (by another event of the loop's
    /// `select!`), it keeps its place and goes on at the next call.
    pub(super) async fn finished(&mut self) -> Result<Prepared, String> {
        let Some(job) = self.job.as_mut() else {
            return std::future::pending().await;
        };
        let result = job.await;
        self.job = None;
        result
    }

    /// At shutdown: the job is dropped, its requests told so.
    pub(super) fn abandon(&mut self) {
        if self.job.take().is_some() {
            tracing::info!("shutting down: the reload in progress is abandoned");
        }
        let queued = self.queued.take().unwrap_or_default();
        for reply in self.waiting.drain(..).chain(queued) {
            let _ = reply.send(Reply::error(
                "the daemon is shutting down: the reload was abandoned",
            ));
        }
    }
}

impl Daemon {
    /// SIGHUP (`reply` none) or `greymilter reload`: starts a reload job,
    /// or queues one behind the job in progress.
    pub(super) fn ask_reload(
        &self,
        reloads: &mut Reloads,
        reply: Option<oneshot::Sender<Reply>>,
        notify: &Notifier,
    ) {
        if reloads.running() {
            reloads.queued.get_or_insert_with(Vec::new).extend(reply);
            return;
        }
        match self.reload_job() {
            Ok(job) => {
                notify.reloading();
                reloads.job = Some(job);
                reloads.waiting.extend(reply);
            }
            Err(why) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Reply::error(why));
                }
            }
        }
    }

    /// The job's result: swapped in (or the failure logged), its requests
    /// answered, the queued reload started. True when the checkpoint
    /// interval changed.
    pub(super) fn reload_finished(
        &mut self,
        reloads: &mut Reloads,
        result: Result<Prepared, String>,
        notify: &Notifier,
    ) -> bool {
        let result = match result {
            // The runtime allowances are not in the lists: the engine keeps
            // those in force, whatever changed while the job ran.
            Ok(prepared) => Ok(self.apply_reload(prepared)),
            Err(e) => {
                tracing::error!("{e}");
                Err(e)
            }
        };
        // What the reload logged reaches the log before anyone is told.
        crate::log_output::flush();
        let reply = match &result {
            Ok(_) => Reply::ok("configuration reloaded"),
            Err(e) => Reply::error(e.clone()),
        };
        for waiting in reloads.waiting.drain(..) {
            let _ = waiting.send(reply.clone());
        }
        match reloads.queued.take() {
            Some(queued) => match self.reload_job() {
                Ok(job) => {
                    reloads.job = Some(job);
                    reloads.waiting = queued;
                }
                Err(why) => {
                    for reply in queued {
                        let _ = reply.send(Reply::error(why.clone()));
                    }
                    notify.ready();
                }
            },
            None => notify.ready(),
        }
        result == Ok(true)
    }

    /// A reload job of the configuration file as it is now, owning what it
    /// reads: the loop goes on using `self` while it runs.
    fn reload_job(&self) -> Result<Job, String> {
        let Some(path) = self.config_path.clone() else {
            let why = "running on built-in defaults, there is no configuration file to reload";
            tracing::info!("reload: {why}");
            return Err(why.to_string());
        };
        let pacer = match self.reload_pause.clone() {
            Some(hook) => Pacer::new(SLICE, move || hook()),
            None => Pacer::timed(BUDGET, tokio::task::yield_now),
        };
        Ok(Box::pin(prepare(path, pacer)))
    }

    /// Swaps a prepared reload in, in one step. Returns true when the
    /// checkpoint interval changed.
    pub(super) fn apply_reload(&mut self, prepared: Prepared) -> bool {
        let Prepared {
            mut new,
            settings,
            lists,
        } = prepared;
        let restart_needed = keep_restart_only(&self.config, &mut new);
        if !restart_needed.is_empty() {
            tracing::warn!(
                "reload: {} changed; that takes effect only after a restart",
                restart_needed.join(", ")
            );
        }
        // Only now: decisions so far used the running lists.
        self.engine
            .borrow_mut()
            .set_settings_compiled(settings, lists);
        self.factory.set_timeouts(timeouts(&new));
        self.policy_options.set(policy_options(&new));
        if new.dns_settings() != self.config.dns_settings() {
            self.factory.pipeline().set_dns(dns_of(&new));
        }
        if let Some(logging) = &self.logging {
            logging.apply(&new.log);
        }
        // For the blocks allocated from now on (the table's next growth).
        crate::memory::set_huge_pages(new.state.huge_pages);
        let interval_changed =
            new.state.checkpoint_interval != self.config.state.checkpoint_interval;
        crate::daemon::announce::configuration(&new);
        self.config = new;
        if let Some(path) = &self.config_path {
            tracing::info!(config = %path.display(), "configuration reloaded");
        }
        self.watch_cluster_settings();
        interval_changed
    }

    /// Compares this host's timing settings with the cluster's, in the
    /// background (`cluster::settings`): at start and after each reload.
    pub(super) fn watch_cluster_settings(&self) {
        if let Some(cluster) = self.factory.pipeline().cluster() {
            let ours = crate::config::cluster::shared_settings(&self.config);
            cluster.watch_settings(crate::cluster::settings::SharedSettings::new(ours));
        }
    }
}

/// Reads `path` and its list files and compiles the lists, pausing with
/// `pacer`; nothing of the running daemon is touched. `Err` says why
/// nothing is to be reloaded.
pub(super) async fn prepare(path: PathBuf, mut pacer: Pacer<'_>) -> Result<Prepared, String> {
    let new = Config::load_paced(&path, &mut pacer)
        .await
        .map_err(|e| format!("reload failed, keeping the running configuration: {e}"))?;
    // The last lines' slice ends here; the entries are copied into the
    // engine's settings in slices.
    pacer.pause().await;
    let mut settings = new.settings_paced(&mut pacer).await;
    pacer.pause().await;
    let spec = std::mem::take(&mut settings.lists);
    let lists = Lists::compile_paced(&spec, settings.normalize_sender, &mut pacer).await;
    pacer.pause().await;
    drop(spec);
    pacer.pause().await;
    Ok(Prepared {
        new,
        settings,
        lists,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    use std::net::IpAddr;

    use super::*;
    use crate::daemon::Setup;
    use crate::daemon::serve::Event;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::lists::ListName;
    use crate::greylist::{Action, Decision, Reason, Request};

    const OLD: &str = "203.0.113.5";
    const NEW: &str = "198.51.100.7";

    fn clients_file(listed: &str) -> String {
        let mut text = format!("{listed}/32\n");
        for i in 0..30_000u32 {
            let _ = writeln!(text, "10.{}.{}.0/24", i >> 8, i & 0xff);
        }
        text
    }

    fn decide(engine: &RefCell<crate::greylist::Engine>, client: &str) -> Decision {
        let addr: IpAddr = client.parse().unwrap();
        engine.borrow_mut().decide_rcpt(&Request {
            client_addr: Some(addr),
            client_name: b"",
            sender: b"<a@sender.example>",
            recipient: b"<r@local.example>",
            authenticated: false,
        })
    }

    fn listed(engine: &RefCell<crate::greylist::Engine>, client: &str) -> bool {
        let d = decide(engine, client);
        if d.reason == Reason::List(ListName::Clients) {
            assert_eq!(d.action, Action::Accept);
            true
        } else {
            false
        }
    }

    fn setup(path: &std::path::Path) -> Setup {
        Setup {
            config_path: Some(path.to_path_buf()),
            logging: None,
            identity: None,
            clock: Box::new(ManualClock::new(1_700_000_000)),
        }
    }

    /// Runs `f` as the daemon runs: a `current_thread` runtime, a `LocalSet`.
    fn on_one_thread(f: impl std::future::Future<Output = ()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, f);
    }

    /// A reload of 30,000 list lines pauses after every slice; a decision
    /// taken at each pause sees the running lists, whole; after the swap
    /// decisions see the new ones.
    #[test]
    fn a_large_list_reloads_in_slices_with_decisions_served_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist.toml");
        let clients = dir.path().join("clients");
        std::fs::write(&clients, clients_file(OLD)).unwrap();
        let stats = dir.path().join("stats");
        std::fs::write(
            &path,
            format!(
                "[stats]\nfile = \"{}\"\n[lists.files]\naccept_clients = [\"clients\"]\n",
                stats.display()
            ),
        )
        .unwrap();
        on_one_thread(async {
            let mut daemon = Daemon::start(Config::load(&path).unwrap(), setup(&path)).unwrap();
            let engine = daemon.engine.clone();
            assert!(listed(&engine, OLD) && !listed(&engine, NEW));

            std::fs::write(&clients, clients_file(NEW)).unwrap();
            let seen = RefCell::new(Vec::new());
            let pacer = Pacer::new(SLICE, || {
                seen.borrow_mut()
                    .push((listed(&engine, OLD), listed(&engine, NEW)));
                tokio::task::yield_now()
            });
            let prepared = prepare(path.clone(), pacer).await;
            let seen = seen.into_inner();
            // Parsing and compiling 30,001 entries each fill 7 slices.
            assert!(seen.len() >= 2 * (30_001 / SLICE), "{} pauses", seen.len());
            assert!(seen.iter().all(|&s| s == (true, false)), "{seen:?}");
            let Ok(prepared) = prepared else {
                panic!("the reload failed")
            };
            assert!(!daemon.apply_reload(prepared));
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));

            // A broken file keeps the lists whole, as before.
            std::fs::write(&clients, "not a network\n").unwrap();
            let Err(e) = prepare(path.clone(), Pacer::unpaced()).await else {
                panic!("a broken file reloaded")
            };
            assert!(e.contains("clients:1:"), "{e}");
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));
        });
    }

    async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(60), f)
            .await
            .expect("the loop did not answer while a reload was held")
    }

    /// A control command over the socket; the whole answer.
    async fn control(socket: &std::path::Path, line: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// `GET /metrics`; the whole response.
    async fn scrape(addr: std::net::SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// The reload job is held at its first pause (a gate the test opens):
    /// meanwhile the loop answers a control command and a scrape, and the
    /// job has not gone one slice further. Opened, the reload is swapped in
    /// and answered. A second reload held the same way is abandoned by a
    /// shutdown, which completes though the gate never opens again.
    #[test]
    fn the_loop_serves_other_events_during_a_reload_and_a_shutdown_abandons_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist.toml");
        let clients = dir.path().join("clients");
        let socket = dir.path().join("control.sock");
        std::fs::write(&clients, clients_file(OLD)).unwrap();
        std::fs::write(
            &path,
            format!(
                "[control]\nsocket = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
                 [lists.files]\naccept_clients = [\"clients\"]\n",
                socket.display()
            ),
        )
        .unwrap();
        on_one_thread(async {
            let config = Config::load(&path).unwrap();
            let admin = super::super::bind_admin(&config, None).unwrap();
            let metrics = admin.metrics.as_ref().unwrap().local_addr().unwrap();
            let mut daemon = Daemon::start(config, setup(&path))
                .unwrap()
                .with_admin(admin);
            let (gate, gate_rx) = tokio::sync::watch::channel(false);
            let (paused_tx, mut paused) = tokio::sync::mpsc::unbounded_channel();
            daemon.reload_pause = Some(Rc::new(move || {
                let _ = paused_tx.send(());
                let mut open = gate_rx.clone();
                Box::pin(async move {
                    let _ = open.wait_for(|open| *open).await;
                })
            }));
            let engine = daemon.engine.clone();
            let (events, rx) = tokio::sync::mpsc::unbounded_channel();
            let done = tokio::task::spawn_local(daemon.serve(None, rx));

            std::fs::write(&clients, clients_file(NEW)).unwrap();
            let reload = tokio::task::spawn_local({
                let socket = socket.clone();
                async move { control(&socket, "reload").await }
            });
            paused.recv().await.unwrap();
            // Guards against a loop that waits for the reload: a hang
            // becomes a failure (the answers come at once otherwise).
            let stats = within(control(&socket, "stats")).await;
            assert!(
                stats.starts_with("ok\n") && stats.contains("Loop-Lag-Max"),
                "{stats}"
            );
            let text = within(scrape(metrics)).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.contains("greymilter_event_loop_lag_seconds"), "{text}");
            // Still held at its first pause, the running lists in use.
            assert!(paused.try_recv().is_err());
            assert!(!reload.is_finished());
            assert!(listed(&engine, OLD) && !listed(&engine, NEW));
            gate.send_replace(true);
            assert_eq!(reload.await.unwrap(), "ok\nconfiguration reloaded\n");
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));

            gate.send_replace(false);
            while paused.try_recv().is_ok() {}
            std::fs::write(&clients, clients_file(OLD)).unwrap();
            events.send(Event::Reload).unwrap();
            paused.recv().await.unwrap();
            events.send(Event::Shutdown).unwrap();
            within(done).await.unwrap();
            // Abandoned: nothing of it was swapped in.
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));
        });
    }

    /// An allowance given while a reload compiles the lists aside is in
    /// force at once, and the swap keeps it: the reload is compiled once,
    /// and its request answered at its end.
    #[test]
    fn an_allowance_given_during_a_reload_is_in_force_at_once_and_kept_by_the_swap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greylist.toml");
        std::fs::write(dir.path().join("clients"), clients_file(OLD)).unwrap();
        std::fs::write(&path, "[lists.files]\naccept_clients = [\"clients\"]\n").unwrap();
        on_one_thread(async {
            let mut daemon = Daemon::start(Config::load(&path).unwrap(), setup(&path)).unwrap();
            let engine = daemon.engine.clone();
            let notify = Notifier::from_env();
            let mut reloads = Reloads::default();
            let (reply, answer) = oneshot::channel();
            daemon.ask_reload(&mut reloads, Some(reply), &notify);
            assert!(reloads.running());
            let allow = crate::control::protocol::Command::AllowNetwork {
                net: format!("{NEW}/32").parse().unwrap(),
                duration: std::time::Duration::from_secs(3600),
            };
            let given = crate::control::handle::execute(
                &allow,
                crate::control::handle::Context {
                    engine: &mut engine.borrow_mut(),
                    allows: &mut daemon.allows,
                    uid: 0,
                    walked: None,
                },
            );
            assert!(given.ok, "{given:?}");
            assert_eq!(
                decide(&engine, NEW).reason,
                Reason::Allowed(ListName::Clients)
            );
            let result = reloads.finished().await;
            assert!(!daemon.reload_finished(&mut reloads, result, &notify));
            assert!(!reloads.running(), "compiled again");
            assert_eq!(answer.await.unwrap(), Reply::ok("configuration reloaded"));
            assert_eq!(
                decide(&engine, NEW).reason,
                Reason::Allowed(ListName::Clients)
            );
            assert!(listed(&engine, OLD));
        });
    }
}
