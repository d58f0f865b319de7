//! Prometheus metrics on `[metrics] listen` (loopback): `GET /metrics`.
//!
//! * [`render`]: plain data in, the exposition text out, encoded by the
//!   official `prometheus-client` crate.
//! * [`server`]: a hyper HTTP/1 server on the daemon's thread; each scrape
//!   asks the main loop for a fresh text through a channel.

pub mod render;
pub mod server;
