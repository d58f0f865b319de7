//! SIGHUP or `greymilter reload`: a new configuration applied to the
//! running daemon, the table kept.

use super::{Daemon, dns_of, policy_options, timeouts};
use crate::config::Config;
use crate::config::reload::keep_restart_only;
use crate::greylist::lists::Lists;
use crate::pace::{Pacer, SLICE};

impl Daemon {
    /// SIGHUP or `greymilter reload`. `Ok(true)` when the checkpoint
    /// interval changed; `Err` says why nothing was reloaded.
    ///
    /// The list files are parsed and compiled in slices of
    /// [`crate::pace::SLICE`] entries with the loop yielding between them,
    /// so sessions keep being served (with the running lists) while a
    /// large list reloads; the new lists are swapped in at the end, in one
    /// step. The caller awaits this before it takes the next event: a
    /// second SIGHUP meanwhile waits its turn and reloads again.
    pub(super) async fn reload(&mut self) -> Result<bool, String> {
        self.reload_paced(&mut Pacer::new(SLICE, tokio::task::yield_now))
            .await
    }

    /// [`Daemon::reload`] with the given pacer (tests observe the pauses).
    pub(super) async fn reload_paced(&mut self, pacer: &mut Pacer<'_>) -> Result<bool, String> {
        let Some(path) = self.config_path.clone() else {
            let why = "running on built-in defaults, there is no configuration file to reload";
            tracing::info!("reload: {why}");
            return Err(why.to_string());
        };
        let path = &path;
        let new = match Config::load_paced(path, pacer).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload failed, keeping the running configuration: {e}");
                return Err(format!(
                    "reload failed, keeping the running configuration: {e}"
                ));
            }
        };
        // The last lines' slice ends here; copying the entries into the
        // engine's settings gets a slice of its own.
        pacer.pause().await;
        let mut new = new;
        let restart_needed = keep_restart_only(&self.config, &mut new);
        if !restart_needed.is_empty() {
            tracing::warn!(
                "reload: {} changed; that takes effect only after a restart",
                restart_needed.join(", ")
            );
        }
        let mut settings = self.allows.apply(new.settings());
        pacer.pause().await;
        let spec = std::mem::take(&mut settings.lists);
        let lists = Lists::compile_paced(&spec, settings.normalize_sender, pacer).await;
        // Only now, in one step: decisions so far used the running lists.
        self.engine
            .borrow_mut()
            .set_settings_compiled(settings, lists);
        drop(spec);
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
        tracing::info!(config = %path.display(), "configuration reloaded");
        self.watch_cluster_settings();
        Ok(interval_changed)
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::fmt::Write as _;
    use std::net::IpAddr;

    use super::*;
    use crate::daemon::Setup;
    use crate::greylist::clock::ManualClock;
    use crate::greylist::lists::ListName;
    use crate::greylist::{Action, Reason, Request};

    const OLD: &str = "203.0.113.5";
    const NEW: &str = "198.51.100.7";

    fn clients_file(listed: &str) -> String {
        let mut text = format!("{listed}/32\n");
        for i in 0..30_000u32 {
            let _ = writeln!(text, "10.{}.{}.0/24", i >> 8, i & 0xff);
        }
        text
    }

    fn listed(engine: &RefCell<crate::greylist::Engine>, client: &str) -> bool {
        let addr: IpAddr = client.parse().unwrap();
        let d = engine.borrow_mut().decide_rcpt(&Request {
            client_addr: Some(addr),
            client_name: b"",
            sender: b"<a@sender.example>",
            recipient: b"<r@local.example>",
            authenticated: false,
        });
        if d.reason == Reason::List(ListName::Clients) {
            assert_eq!(d.action, Action::Accept);
            true
        } else {
            false
        }
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&runtime, async {
            let setup = Setup {
                config_path: Some(path.clone()),
                logging: None,
                identity: None,
                clock: Box::new(ManualClock::new(1_700_000_000)),
            };
            let mut daemon = Daemon::start(Config::load(&path).unwrap(), setup).unwrap();
            let engine = daemon.engine.clone();
            assert!(listed(&engine, OLD) && !listed(&engine, NEW));

            std::fs::write(&clients, clients_file(NEW)).unwrap();
            let seen = RefCell::new(Vec::new());
            let mut pacer = Pacer::new(SLICE, || {
                seen.borrow_mut()
                    .push((listed(&engine, OLD), listed(&engine, NEW)));
                tokio::task::yield_now()
            });
            assert_eq!(daemon.reload_paced(&mut pacer).await, Ok(false));
            let pauses = pacer.pauses();
            drop(pacer);
            let seen = seen.into_inner();
            assert_eq!(seen.len(), pauses);
            // Parsing and compiling 30,001 entries each fill 7 slices.
            assert!(seen.len() >= 2 * (30_001 / SLICE), "{} pauses", seen.len());
            assert!(seen.iter().all(|&s| s == (true, false)), "{seen:?}");
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));

            // A broken file keeps the lists whole, as before.
            std::fs::write(&clients, "not a network\n").unwrap();
            let e = daemon.reload().await.unwrap_err();
            assert!(e.contains("clients:1:"), "{e}");
            assert!(!listed(&engine, OLD) && listed(&engine, NEW));
        });
    }
}
