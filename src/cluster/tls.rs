//! TLS to Redis and its sentinels: `rediss://` and `rediss+sentinel://`.
//!
//! rustls with the `ring` provider, configured once at start from
//! `ca_file` (or the platform's roots), `cert_file` and `key_file`: every
//! file is read before privileges are dropped, and nothing is read again on
//! a reconnect. The server name checked (and sent as SNI) is the URL's host
//! as written, although the socket goes to the address it was resolved to
//! at start (see `client.rs`: no resolver thread). Certificate verification
//! is on unless `tls_insecure = true` (tests only; warned about at start).
//!
//! redis-rs' own TLS would resolve the host on every reconnect (a thread)
//! and read the platform roots on every connect, so the stream is ours and
//! [`TlsConnection`] does what its `ConnectionManager` does for plain TCP:
//! one multiplexed connection, reconnected after an I/O error, with the
//! connect running as its own task bounded by [`CONNECT_TIMEOUT`] so that a
//! slow handshake is not restarted by every call that gives up on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisConnectionInfo, RedisError, RedisFuture};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound of one TCP connect plus TLS handshake plus AUTH/SELECT, run in
/// the background: calls meanwhile wait only up to their own `timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A certificate or key file is small; a larger one is a wrong path.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The `[cluster]` TLS settings, as paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure: bool,
}

/// What every TLS connection of a node uses; built once, at start.
#[derive(Clone)]
pub struct TlsSetup {
    config: Arc<ClientConfig>,
    pub insecure: bool,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// *ring* rather than aws-lc-rs (which would add a C/cmake build): its key
/// exchanges are classical only (hence the deprecation since rustls
/// 0.23.48), which is what Redis 7 built against OpenSSL 3.0 offers anyway.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    crate::files::read_regular(path, MAX_PEM_BYTES)
        .map_err(|e| format!("cluster {what} {}: cannot read: {e}", path.display()))
}

impl TlsSetup {
    /// Reads the files and builds the client configuration. On error: the
    /// setting at fault and a message naming the file.
    pub fn load(files: &TlsFiles) -> Result<TlsSetup, (&'static str, String)> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ("redis", format!("TLS: {e}")))?;
        let builder = if files.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                    provider().signature_verification_algorithms,
                )))
        } else {
            builder.with_root_certificates(
                roots(files.ca_file.as_deref()).map_err(|e| ("ca_file", e))?,
            )
        };
        let config = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                let chain = client_chain(cert).map_err(|e| ("cert_file", e))?;
                let pem = read_pem("key_file", key).map_err(|e| ("key_file", e))?;
                let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    (
                        "key_file",
                        format!(
                            "cluster key_file {}: no usable PEM private key: {e}",
                            key.display()
                        ),
                    )
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    (
                        "key_file",
                        format!(
                            "cluster cert_file {} and key_file {}: {e}",
                            cert.display(),
                            key.display()
                        ),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err((
                    "cert_file",
                    "cluster cert_file and key_file go together".to_string(),
                ));
            }
        };
        Ok(TlsSetup {
            config: Arc::new(config),
            insecure: files.insecure,
        })
    }

    /// TCP to `addr`, then a TLS handshake checking `name`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        name: &ServerName<'static>,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(self.config.clone())
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {} at {addr} failed: {e}", name.to_str()))
    }
}

fn client_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(&read_pem("cert_file", path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cluster cert_file {}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "cluster cert_file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(chain)
}

/// `ca_file`'s certificates, or the platform's roots.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_slice_iter(&read_pem("ca_file", path)?) {
                let cert = cert.map_err(|e| format!("cluster ca_file {}: {e}", path.display()))?;
                store
                    .add(cert)
                    .map_err(|e| format!("cluster ca_file {}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!(
                    "cluster ca_file {}: no PEM certificate in it",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "TLS: no trusted root certificate found on this system ({}); install \
                     ca-certificates or set [cluster] ca_file",
                    found
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_string(), |e| e.to_string())
                ));
            }
        }
    }
    Ok(store)
}

/// The name a certificate must carry: the host as written in the URL.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}

/// `tls_insecure = true`: any certificate, any name (signatures of the
/// handshake are still checked). For tests with throw-away certificates.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, String>>>;

enum Slot {
    Empty,
    Connecting(Connecting),
    Ready(MultiplexedConnection),
}

/// One multiplexed TLS connection to one Redis, reconnected on demand.
/// Clones share it. (`Arc<Mutex>` because redis-rs wants `Send` futures;
/// the lock is never held across an await.)
#[derive(Clone)]
pub struct TlsConnection {
    setup: TlsSetup,
    addr: SocketAddr,
    name: ServerName<'static>,
    redis: RedisConnectionInfo,
    slot: Arc<Mutex<Slot>>,
}

impl TlsConnection {
    pub fn new(
        setup: TlsSetup,
        addr: SocketAddr,
        name: ServerName<'static>,
        redis: RedisConnectionInfo,
    ) -> TlsConnection {
        TlsConnection {
            setup,
            addr,
            name,
            redis,
            slot: Arc::new(Mutex::new(Slot::Empty)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // One thread: a poisoned lock can only come from a panic, and the
        // slot is valid whatever the panic interrupted.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection, connecting first if there is none (one connect at
    /// a time, in its own task).
    async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        let pending = {
            let mut slot = self.lock();
            match &*slot {
                Slot::Ready(c) => return Ok(c.clone()),
                Slot::Connecting(f) => f.clone(),
                Slot::Empty => {
                    let this = self.clone();
                    let task = tokio::spawn(async move {
                        tokio::time::timeout(CONNECT_TIMEOUT, this.open())
                            .await
                            .unwrap_or_else(|_| {
                                Err(format!(
                                    "no TLS connection to {} at {} within {} s",
                                    this.name.to_str(),
                                    this.addr,
                                    CONNECT_TIMEOUT.as_secs()
                                ))
                            })
                    });
                    let f: Connecting = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("TLS connect task: {e}")))
                    }
                    .boxed()
                    .shared();
                    *slot = Slot::Connecting(f.clone());
                    f
                }
            }
        };
        let result = pending.await;
        let mut slot = self.lock();
        match result {
            Ok(c) => {
                if matches!(&*slot, Slot::Connecting(_)) {
                    *slot = Slot::Ready(c.clone());
                }
                Ok(c)
            }
            Err(e) => {
                if matches!(&*slot, Slot::Connecting(_)) {
                    *slot = Slot::Empty;
                }
                Err(RedisError::from((redis::ErrorKind::Io, "TLS", e)))
            }
        }
    }

    async fn open(&self) -> Result<MultiplexedConnection, String> {
        let stream = self.setup.connect(self.addr, &self.name).await?;
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let (conn, driver) = MultiplexedConnection::new_with_config(&self.redis, stream, config)
            .await
            .map_err(|e| format!("redis at {} (TLS): {e}", self.addr))?;
        tokio::spawn(driver);
        Ok(conn)
    }

    /// After an error that broke the connection, the next call reconnects.
    fn check(&self, e: &RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            let mut slot = self.lock();
            if matches!(&*slot, Slot::Ready(_)) {
                *slot = Slot::Empty;
            }
        }
    }
}

impl ConnectionLike for TlsConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let mut c = self.get().await?;
            let r = c.req_packed_command(cmd).await;
            if let Err(e) = &r {
                self.check(e);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let mut c = self.get().await?;
            let r = c.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.check(e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.redis.db()
    }
}
