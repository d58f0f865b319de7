//! The Redis connection, the decision call with its deadline, and the
//! start-up check of the shared secret.
//!
//! One multiplexed connection (redis-rs `ConnectionManager`, or ours for
//! TLS, see `tls.rs`: it pipelines concurrent calls on one socket and
//! reconnects after an I/O error; one per primary of a Redis Cluster, see
//! `shard.rs`) on the daemon's current-thread runtime. Every call is bounded by `timeout`; a
//! call that times out may still run on the server later, which the script
//! tolerates (times are the node's `now`, expiries absolute).
//!
//! Threads: tokio resolves a host name on a blocking thread, which would
//! stop checkpoints from forking. A host name in the URL is therefore
//! resolved once, at start, in the calling thread (std's blocking
//! `getaddrinfo`), and the connection uses the address found; IP literals
//! and `unix:` sockets need no resolution (with TLS the certificate is still
//! checked against the host name as written); sentinels and Redis Cluster
//! nodes must be IP literals, and the primaries they name are addresses
//! already. A changed DNS record is seen after a restart.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Value};
use tracing::{error, info, warn};

use super::breaker::{Allow, Breaker, CallResult, ClusterCounters};
use super::conn::{self, Conn};
use super::schema::{self, Schema};
use super::script::{self, Args, FINGERPRINT_KEY, Reply};
use super::secret::SharedSecret;
use super::sentinel::{self, SentinelSpec};
use super::shard::{self, ShardSpec, Sharded};
use super::tls::TlsSetup;
use crate::greylist::key::TupleKey;
use crate::ratelimit::LogLimiter;

static JUNK_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));
static REPLY_LOG: LogLimiter = LogLimiter::new(Duration::from_secs(60));

/// How long start-up waits for Redis to check the secret's fingerprint.
pub const START_CHECK: Duration = Duration::from_secs(2);

/// What `connect` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `redis://[user:password@]host:port[/db]` or `unix:/path[?db=N]`
    /// (`rediss://` with TLS; sentinels as in `sentinel.rs`).
    pub url: String,
    pub secret: SharedSecret,
    pub timeout: Duration,
    /// Required by a `rediss` URL (built by `TlsSetup::load`).
    pub tls: Option<TlsSetup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verified {
    Yes,
    /// Redis was unreachable at start: checked before the first call.
    NotYet,
    /// Another secret is in use: stay local for good.
    Mismatch,
    /// Redis holds a schema this release does not know: stay local.
    SchemaRefused,
}

struct Inner {
    breaker: Breaker,
    verified: Verified,
}

/// A node's handle on the shared state; clones share the connection, the
/// breaker and the counters.
#[derive(Clone)]
pub struct Cluster {
    /// `None` until the sentinels name a primary.
    conn: Rc<RefCell<Option<Conn>>>,
    sentinel: Option<Rc<SentinelSpec>>,
    tls: Option<TlsSetup>,
    primary: Rc<Cell<Option<SocketAddr>>>,
    sha: Rc<str>,
    fingerprint: Rc<str>,
    timeout: Duration,
    inner: Rc<RefCell<Inner>>,
    /// Bumped by each settings check, so that a newer one supersedes.
    settings_generation: Rc<Cell<u64>>,
}

/// The scheme of a plain URL with TLS.
pub const TLS_SCHEME: &str = "rediss://";

/// Whether the URL asks for TLS (`rediss://`, `rediss+sentinel://`,
/// `rediss+cluster://`).
pub fn wants_tls(url: &str) -> bool {
    url.starts_with(TLS_SCHEME)
        || url.starts_with(sentinel::TLS_SCHEME)
        || url.starts_with(shard::TLS_SCHEME)
}

/// Checks the `redis` setting without resolving anything (`check-config`).
pub fn parse_url(url: &str) -> Result<Target, String> {
    if url.starts_with(sentinel::SCHEME) || url.starts_with(sentinel::TLS_SCHEME) {
        return sentinel::parse(url).map(|s| Target::Sentinel(Rc::new(s)));
    }
    if url.starts_with(shard::SCHEME) || url.starts_with(shard::TLS_SCHEME) {
        return shard::parse(url).map(Target::Sharded);
    }
    // redis-rs parses rediss:// only with its own TLS, which we do not use.
    let (plain, tls) = match url.strip_prefix(TLS_SCHEME) {
        Some(rest) => (format!("redis://{rest}"), true),
        None => (url.to_string(), false),
    };
    if !(plain.starts_with("redis://") || plain.starts_with("unix:")) {
        return Err(format!(
            "{url:?}: only redis[s]://[user:password@]host:port[/db], unix:/path[?db=N], \
             redis[s]+sentinel://IP:PORT[,IP:PORT…]/MASTER[/DB] and \
             redis[s]+cluster://IP:PORT[,IP:PORT…][/0] are supported"
        ));
    }
    let info = plain
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("{url:?}: {e}"))?;
    match info.addr() {
        ConnectionAddr::Tcp(host, _) => {
            let tls_name = if tls {
                super::tls::server_name(host).map_err(|e| format!("{url:?}: {e}"))?;
                Some(host.clone())
            } else {
                None
            };
            Ok(Target::Direct(info, tls_name))
        }
        ConnectionAddr::Unix(_) => Ok(Target::Direct(info, None)),
        _ => Err(format!("{url:?}: unsupported address")),
    }
}

/// Where Redis is: one address (with, for TLS, the name its certificate
/// must carry), whichever primary the sentinels name, or the primaries of
/// a Redis Cluster.
#[derive(Debug, Clone)]
pub enum Target {
    Direct(ConnectionInfo, Option<String>),
    Sentinel(Rc<SentinelSpec>),
    Sharded(ShardSpec),
}

/// Parses the `redis` setting; a host name is resolved here, once.
pub fn target(url: &str) -> Result<Target, String> {
    let (info, tls_name) = match parse_url(url)? {
        Target::Direct(info, tls_name) => (info, tls_name),
        other @ (Target::Sentinel(_) | Target::Sharded(_)) => return Ok(other),
    };
    let resolved = match info.addr() {
        ConnectionAddr::Tcp(host, port) if host.parse::<IpAddr>().is_err() => {
            let addr = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("{url:?}: cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{url:?}: {host} has no address"))?;
            info!("redis host {host} resolved once to {}", addr.ip());
            Some(ConnectionAddr::Tcp(addr.ip().to_string(), *port))
        }
        _ => None,
    };
    let info = match resolved {
        Some(addr) => info.set_addr(addr),
        None => info,
    };
    Ok(Target::Direct(info, tls_name))
}

fn call_failure(e: &RedisError) -> CallResult {
    if e.is_timeout() {
        CallResult::Timeout
    } else {
        CallResult::Error
    }
}

impl Cluster {
    /// Connects and checks that Redis holds our secret's fingerprint (or
    /// stores it). A different fingerprint is an error: this node hashes
    /// with another secret and would split every tuple in two. Redis being
    /// unreachable is not: the node starts, decides locally, and checks
    /// before its first shared decision.
    pub async fn connect(opts: &Options) -> Result<Cluster, String> {
        let tls = match (wants_tls(&opts.url), &opts.tls) {
            (true, None) => return Err(format!("{:?}: TLS settings missing", opts.url)),
            (true, Some(setup)) => {
                if setup.insecure {
                    warn!(
                        "[cluster] tls_insecure = true: the certificate of redis at {:?} is NOT \
                         verified; anyone on the path can read and write the greylist. For tests \
                         only: remove it and set ca_file",
                        opts.url
                    );
                }
                Some(setup.clone())
            }
            (false, _) => None,
        };
        let (conn, sentinel) = match target(&opts.url)? {
            Target::Direct(info, name) => {
                let tls_arg = tls.as_ref().zip(name.as_deref());
                (
                    Some(conn::open(info, tls_arg).map_err(|e| format!("{:?}: {e}", opts.url))?),
                    None,
                )
            }
            Target::Sentinel(spec) => (None, Some(spec)),
            Target::Sharded(spec) => (Some(Conn::Sharded(Sharded::new(spec, tls.clone()))), None),
        };
        let hash = redis::Script::new(script::SOURCE).get_hash().to_string();
        let cluster = Cluster {
            conn: Rc::new(RefCell::new(conn)),
            sentinel,
            tls,
            primary: Rc::new(Cell::new(None)),
            sha: hash.into(),
            fingerprint: opts.secret.fingerprint_hex().into(),
            timeout: opts.timeout,
            inner: Rc::new(RefCell::new(Inner {
                breaker: Breaker::default(),
                verified: Verified::NotYet,
            })),
            settings_generation: Rc::new(Cell::new(0)),
        };
        let check = async {
            if cluster.sentinel.is_some() {
                cluster.rediscover(START_CHECK / 4).await;
            }
            cluster.check_fingerprint().await
        };
        match tokio::time::timeout(START_CHECK, check).await {
            Ok(Ok(())) => info!("redis reachable at {:?}, shared secret matches", opts.url),
            Ok(Err(Check::Mismatch(theirs))) => {
                return Err(format!(
                    "redis at {:?} holds the fingerprint {theirs} of another hashing secret \
                     (ours is {}): every node must use the same cluster secret_file",
                    opts.url, cluster.fingerprint
                ));
            }
            Ok(Err(Check::Schema(why))) => error!(
                "redis at {:?} refused: {why}; this host decides locally (Redis-Schema-Bad)",
                opts.url
            ),
            Ok(Err(Check::Failed(e))) if e.contains("TLS handshake") => error!(
                "redis at {:?}: {e}; check [cluster] ca_file and the server's certificate \
                 (name, dates, CA): deciding locally until a handshake succeeds",
                opts.url
            ),
            Ok(Err(Check::Failed(e))) => warn!(
                "redis at {:?} unreachable at start ({e}): deciding locally until it answers",
                opts.url
            ),
            Err(_) => warn!(
                "redis at {:?} did not answer within {} s at start: deciding locally until it answers",
                opts.url,
                START_CHECK.as_secs()
            ),
        }
        Ok(cluster)
    }

    /// The current connection; `Failed` while no primary is known.
    fn connection(&self) -> Result<Conn, String> {
        self.conn
            .borrow()
            .clone()
            .ok_or_else(|| "no primary known to the sentinels yet".to_string())
    }

    /// Asks the sentinels for the primary and reconnects if it moved.
    /// For a Redis Cluster: reloads the slot map before the next call.
    async fn rediscover(&self, per_sentinel: Duration) {
        if let Some(Conn::Sharded(s)) = &*self.conn.borrow() {
            s.mark_stale();
        }
        let Some(spec) = &self.sentinel else {
            return;
        };
        let Some(addr) = spec.primary(per_sentinel, self.tls.as_ref()).await else {
            return;
        };
        if self.primary.get() == Some(addr) && self.conn.borrow().is_some() {
            return;
        }
        let name = addr.ip().to_string();
        let tls = self.tls.as_ref().map(|t| (t, name.as_str()));
        match spec.info_for(addr).and_then(|info| conn::open(info, tls)) {
            Ok(m) => {
                info!("redis primary is {addr} (from the sentinels)");
                self.primary.set(Some(addr));
                *self.conn.borrow_mut() = Some(m);
            }
            Err(e) => warn!("cannot connect to the redis primary {addr}: {e}"),
        }
    }

    async fn check_fingerprint(&self) -> Result<(), Check> {
        let mut conn = self.connection().map_err(Check::Failed)?;
        let old: Value = redis::cmd("SET")
            .arg(FINGERPRINT_KEY)
            .arg(&*self.fingerprint)
            .arg("NX")
            .arg("GET")
            .query_async(&mut conn)
            .await
            .map_err(|e| Check::Failed(e.to_string()))?;
        let result = match &old {
            Value::Nil => Ok(()),
            Value::BulkString(b) if b.as_slice() == self.fingerprint.as_bytes() => Ok(()),
            Value::BulkString(b) => Err(Check::Mismatch(String::from_utf8_lossy(b).into_owned())),
            other => Err(Check::Mismatch(format!("{other:?}"))),
        };
        if let Err(e) = result {
            self.inner.borrow_mut().verified = Verified::Mismatch;
            return Err(e);
        }
        match schema::check(&mut conn).await.map_err(Check::Failed)? {
            Schema::Current => {
                self.inner.borrow_mut().verified = Verified::Yes;
                Ok(())
            }
            Schema::Refused(why) => {
                let mut inner = self.inner.borrow_mut();
                inner.verified = Verified::SchemaRefused;
                inner.breaker.note_schema_refused();
                Err(Check::Schema(why))
            }
        }
    }

    /// A connection for an administrator's command (`admin.rs`): the
    /// primary found and the secret checked as for a decision, but past
    /// the breaker: a command is rare and its caller waits for an answer.
    /// The caller bounds the time.
    pub(super) async fn admin_connection(&self) -> Result<Conn, String> {
        match self.inner.borrow().verified {
            Verified::Mismatch => {
                return Err("redis holds the fingerprint of another hashing secret".to_string());
            }
            Verified::SchemaRefused => {
                return Err(format!(
                    "redis holds a {} this release does not know (see the log)",
                    schema::SCHEMA_KEY
                ));
            }
            Verified::Yes | Verified::NotYet => {}
        }
        if self.conn.borrow().is_none() {
            self.rediscover(self.timeout).await;
        }
        if self.inner.borrow().verified == Verified::NotYet {
            match self.check_fingerprint().await {
                Ok(()) => {}
                Err(Check::Mismatch(theirs)) => {
                    return Err(format!(
                        "redis holds the fingerprint {theirs} of another hashing secret"
                    ));
                }
                Err(Check::Schema(why)) => return Err(why),
                Err(Check::Failed(e)) => return Err(e),
            }
        }
        self.connection()
    }

    /// The bound of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// This host refuses this Redis for good (another secret, a schema it
    /// does not know).
    pub(super) fn refused(&self) -> bool {
        matches!(
            self.inner.borrow().verified,
            Verified::Mismatch | Verified::SchemaRefused
        )
    }

    pub(super) fn settings_generation(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.settings_generation)
    }

    /// Records how many settings keys differ from the cluster's.
    pub(super) fn note_settings_differ(&self, keys: usize) {
        self.inner.borrow_mut().breaker.note_settings_differ(keys);
    }

    /// Counts a recipient answered from the local cache.
    pub fn note_cached(&self) {
        self.inner.borrow_mut().breaker.note_cached();
    }

    pub fn counters(&self) -> ClusterCounters {
        self.inner.borrow().breaker.counters(Instant::now())
    }

    /// One shared decision, or `None` at once when the breaker says to
    /// decide locally. The future owns what it needs and ends within
    /// `timeout` (plus the fingerprint check once, after an unreachable
    /// start): `None` = decide locally.
    pub fn decide(
        &self,
        key: &TupleKey,
        args: Args,
    ) -> Option<impl Future<Output = Option<Reply>> + 'static> {
        let probe = {
            let mut inner = self.inner.borrow_mut();
            if matches!(inner.verified, Verified::Mismatch | Verified::SchemaRefused) {
                inner.breaker.note_fallback();
                return None;
            }
            match inner.breaker.allow(Instant::now()) {
                Allow::Local => return None,
                Allow::Call => false,
                Allow::Probe => true,
            }
        };
        let (tuple_key, net_key) = script::keys(key);
        let this = self.clone();
        Some(async move {
            let attempt = async {
                if probe || this.conn.borrow().is_none() {
                    this.rediscover(this.timeout).await;
                }
                this.call(tuple_key, net_key, args).await
            };
            let result = tokio::time::timeout(this.timeout, attempt).await;
            let now = Instant::now();
            let mut inner = this.inner.borrow_mut();
            match result {
                Ok(Ok(reply)) => {
                    inner.breaker.record(CallResult::Ok, now);
                    if reply.junk_tuple || reply.junk_network {
                        inner.breaker.note_junk();
                        if let Some(held) = JUNK_LOG.allow() {
                            warn!(
                                "redis: junk at a greymilter key (tuple: {}, network: {}) treated \
                                 as absent and overwritten; is another program writing gm{{...}} \
                                 keys? ({held} more not logged)",
                                reply.junk_tuple, reply.junk_network
                            );
                        }
                    }
                    Some(reply)
                }
                Ok(Err(CallError::Redis(e))) => {
                    inner.breaker.record(call_failure(&e), now);
                    if let Some(held) = REPLY_LOG.allow() {
                        warn!("redis call failed, decided locally: {e} ({held} more not logged)");
                    }
                    None
                }
                Ok(Err(CallError::Reply(v))) => {
                    inner.breaker.record(CallResult::Error, now);
                    if let Some(held) = REPLY_LOG.allow() {
                        warn!(
                            "redis script gave an unexpected reply, decided locally: {v:.200} \
                             ({held} more not logged)"
                        );
                    }
                    None
                }
                Ok(Err(CallError::Mismatch(theirs))) => {
                    inner.breaker.record(CallResult::Error, now);
                    error!(
                        "redis holds the fingerprint {theirs} of another hashing secret (ours is \
                         {}): this node decides locally from now on; give every node the same \
                         cluster secret_file and restart it",
                        this.fingerprint
                    );
                    None
                }
                Ok(Err(CallError::Schema(why))) => {
                    inner.breaker.record(CallResult::Error, now);
                    error!(
                        "redis refused: {why}; this node decides locally from now on \
                         (Redis-Schema-Bad)"
                    );
                    None
                }
                Err(_) => {
                    inner.breaker.record(CallResult::Timeout, now);
                    None
                }
            }
        })
    }

    async fn call(&self, tuple: String, net: String, args: Args) -> Result<Reply, CallError> {
        let verified = self.inner.borrow().verified;
        if verified == Verified::NotYet {
            match self.check_fingerprint().await {
                Ok(()) => info!("redis reachable, shared secret matches"),
                Err(Check::Mismatch(theirs)) => return Err(CallError::Mismatch(theirs)),
                Err(Check::Schema(why)) => return Err(CallError::Schema(why)),
                Err(Check::Failed(e)) => {
                    return Err(CallError::Redis(RedisError::from((
                        redis::ErrorKind::Io,
                        "fingerprint check",
                        e,
                    ))));
                }
            }
        }
        let argv = args.to_argv();
        let mut conn = self.connection().map_err(|e| {
            CallError::Redis(RedisError::from((redis::ErrorKind::Io, "no connection", e)))
        })?;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&*self.sha)
            .arg(2)
            .arg(&tuple)
            .arg(&net)
            .arg(&argv[..]);
        let value: Value = match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // A restarted or failed-over Redis has an empty script
                // cache: EVAL runs the script and caches it again.
                let mut eval = redis::cmd("EVAL");
                eval.arg(script::SOURCE)
                    .arg(2)
                    .arg(&tuple)
                    .arg(&net)
                    .arg(&argv[..]);
                eval.query_async(&mut conn)
                    .await
                    .map_err(CallError::Redis)?
            }
            other => other.map_err(CallError::Redis)?,
        };
        script::decode(&value).ok_or_else(|| CallError::Reply(format!("{value:?}")))
    }
}

enum Check {
    Mismatch(String),
    /// The schema check refused this Redis: why.
    Schema(String),
    Failed(String),
}

enum CallError {
    Redis(RedisError),
    Reply(String),
    Mismatch(String),
    Schema(String),
}
