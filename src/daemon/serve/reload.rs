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
