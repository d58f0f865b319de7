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
//! * [`shard`]: a sharded Redis Cluster: the slot map, routing, redirects.
//! * [`slot`]: the key slots of Redis Cluster.
//! * [`settings`]: the cluster's timing settings and the drift warning.
//! * [`tls`]: TLS to Redis and the sentinels (`rediss://`).
//! * [`conn`]: the connection the others use: one server or a Redis Cluster.
//! * [`link`]: a connection to one server, plain or TLS.

pub(crate) mod admin;
pub(crate) mod breaker;
pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod import;
pub(crate) mod link;
pub(crate) mod schema;
pub(crate) mod script;
pub(crate) mod secret;
pub(crate) mod sentinel;
pub(crate) mod settings;
pub(crate) mod shard;
pub(crate) mod slot;
pub(crate) mod tls;

pub use admin::SharedTuple;
pub use breaker::ClusterCounters;
pub use client::{Cluster, Options, START_CHECK};
pub use import::{ImportOp, RedisImported};
pub use schema::{SCHEMA_KEY, VERSION as SCHEMA_VERSION};
pub use script::{Args, FINGERPRINT_KEY, Outcome, Reply, keys};
pub use secret::SharedSecret;
pub use shard::REFRESH_EVERY;
pub use tls::{TlsFiles, TlsSetup};
