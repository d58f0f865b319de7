//! What the daemon says about its configuration at start and at every
//! reload: how many list entries it enforces and whether it is only
//! learning, so an admin reading the log knows what is in force.

use crate::config::Config;
use crate::greylist::settings::Mode;

/// Logs the list entries in force and the mode.
pub fn configuration(config: &Config) {
    let l = &config.lists;
    let inline = l.clients.len()
        + l.client_names.len()
        + l.senders.len()
        + l.sender_domains.len()
        + l.recipients.len()
        + l.recipient_domains.len();
    let files = &l.files.loaded.summary;
    tracing::info!(
        entries = inline + files.entries,
        inline = inline,
        files = files.files,
        file_entries = files.entries,
        "lists in force"
    );
    for missing in &files.missing_optional {
        tracing::info!(file = %missing.display(), "optional list file missing: skipped");
    }
    if config.greylist.mode == Mode::Learn {
        tracing::warn!(
            "learning mode ([greylist] mode = \"learn\"): nothing is deferred; what would be is logged as action=would-greylist"
        );
    }
}
