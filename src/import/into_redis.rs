//! Imported entries merged into the shared state of a cluster (`[cluster]`
//! set): keyed with the cluster's secret (`secret_file`), written under the
//! keys and value forms the decision script uses (`cluster::import`), in
//! batches of [`BATCH`] script calls. Redis is the authority: every node
//! finds the entries on its next question.

use super::keyed::Keyed;
use crate::cluster::Cluster;
use crate::cluster::import::{ImportOp, RedisImported};
use crate::config::Config;
use crate::config::cluster::ClusterConfig;

/// Script calls per pipeline.
const BATCH: usize = 500;

/// The cluster's hashing secret, for keying.
pub fn secret(c: &ClusterConfig) -> Result<crate::greylist::key::Secret, String> {
    Ok(crate::cluster::SharedSecret::load(&c.secret_file)?.secret)
}

/// Writes `keyed` into the cluster's Redis.
pub fn send(config: &Config, c: &ClusterConfig, keyed: &Keyed) -> Result<RedisImported, String> {
    let options = crate::daemon::run::cluster_options(c)?;
    let settings = config.settings();
    let window = crate::greylist::table::secs32(settings.retry_window.as_secs());
    let lifetime = crate::greylist::table::secs32(settings.whitelist_lifetime.as_secs());
    let ops: Vec<ImportOp> = keyed
        .white
        .iter()
        .map(|(k, t)| ImportOp::White(*k, *t))
        .chain(keyed.pending.iter().map(|(k, t)| ImportOp::Pending(*k, *t)))
        .chain(keyed.awl.iter().map(|(n, r)| ImportOp::Network(*n, *r)))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let cluster = Cluster::connect(&options).await?;
        let mut done = RedisImported::default();
        for chunk in ops.chunks(BATCH) {
            let d = cluster.import(chunk, window, lifetime).await.map_err(|e| {
                format!(
                    "{e} ({} entries imported before it; importing again merges)",
                    done.new_white + done.new_pending + done.new_networks + done.known
                )
            })?;
            done.new_white += d.new_white;
            done.new_pending += d.new_pending;
            done.new_networks += d.new_networks;
            done.known += d.known;
            done.forgotten += d.forgotten;
        }
        Ok(done)
    })
}
