//! SIGHUP or `greymilter reload`: a new configuration applied to the
//! running daemon, the table kept.

use super::{Daemon, dns_of, policy_options, timeouts};
use crate::config::Config;
use crate::config::reload::keep_restart_only;

impl Daemon {
    /// SIGHUP or `greymilter reload`. `Ok(true)` when the checkpoint
    /// interval changed; `Err` says why nothing was reloaded.
    pub(super) fn reload(&mut self) -> Result<bool, String> {
        let Some(path) = &self.config_path else {
            let why = "running on built-in defaults, there is no configuration file to reload";
            tracing::info!("reload: {why}");
            return Err(why.to_string());
        };
        let new = match Config::load(path) {
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
        self.engine
            .borrow_mut()
            .set_settings(self.allows.apply(new.settings()));
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
