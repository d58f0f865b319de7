//! Postfix's policy connections under the shared accept loop
//! (`crate::milter::server::serve_sessions`): the same connection cap,
//! shutdown and drain as the milter's.

use std::future::Future;
use std::rc::Rc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tracing::debug;

use super::connection::{Options, run_connection};
use crate::milter::server::Sessions;
use crate::pipeline::Pipeline;

/// Makes one policy connection per accepted socket.
pub struct PolicySessions {
    pub pipeline: Pipeline,
    pub options: Rc<std::cell::Cell<Options>>,
}

impl Sessions for PolicySessions {
    const NAME: &'static str = "policy";

    fn spawn<S: AsyncRead + AsyncWrite + Unpin + 'static>(
        &self,
        sessions: &mut JoinSet<()>,
        conn_id: u64,
        stream: S,
        peer: String,
        stop: impl Future<Output = ()> + 'static,
    ) {
        debug!(conn = conn_id, peer = %peer, "policy connection");
        let pipeline = self.pipeline.clone();
        // Read at accept: a reload applies to the connections after it.
        let options = self.options.get();
        sessions.spawn_local(async move {
            let ended = run_connection(stream, &pipeline, &options, conn_id, &peer, stop).await;
            debug!(conn = conn_id, peer = %peer, ?ended, "policy connection ended");
        });
    }
}
