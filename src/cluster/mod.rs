//! Shared greylist state in Redis for several MX hosts (`[cluster]`).
//!
//! Network code, so it lives outside the engine: the engine hands over
//! plain keys and times and gets plain outcomes back.
//!
//! * [`script`]: the Lua decision script, key names, the reply.
//! * [`admin`]: an administrator's check, allow, forget and flush on Redis.
//! * [`import`]: `greymilter import` merged into the shared keys.
//! * [`client`]: the connection, the bounded call, the secret check.
//! * [`breaker`]: fail-fast after repeated failures; the counters.
//! * [`schema`]: the version of the shared keys (`gm:schema`), migrations.
//! * [`secret`]: the hashing secret all nodes share (`secret_file`).
//! * [`sentinel`]: finding the primary through Redis Sentinel.
//! * [`settings`]: the cluster's timing settings and the drift warning.
//! * [`tls`]: TLS to Redis and the sentinels (`rediss://`).
//! * [`conn`]: one connection type, plain or TLS.

pub mod admin;
pub mod breaker;
pub mod client;
pub mod conn;
pub mod import;
pub mod schema;
pub mod script;
pub mod secret;
pub mod sentinel;
pub mod settings;
pub mod tls;

pub use breaker::ClusterCounters;
pub use client::{Cluster, Options};
pub use script::{Args, Outcome, Reply};
pub use secret::SharedSecret;
