//! Test certificates (a CA made by the test with rcgen) and a redis-server
//! with a TLS port beside its plain one (the plain port stays for the
//! test's own commands).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use super::{Redis, free_port};

/// A CA: its certificate's PEM and what signs with it.
pub struct Ca {
    pub pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// A certificate and key for `names` (DNS names or IP literals);
    /// `expired`: valid in 2020 only.
    pub fn issue(&self, names: &[&str], expired: bool) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gm test");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `dir/NAME.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}.pem"));
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// Writes a certificate and key pair as `dir/NAME.crt` and `dir/NAME.key`.
pub fn write_pair(dir: &Path, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, &pair.0).unwrap();
    std::fs::write(&key, &pair.1).unwrap();
    (cert, key)
}

/// redis-server's arguments for a TLS port serving `server` (signed by
/// `ca`; the files written in `dir`), `clients`: `--tls-auth-clients`.
pub fn server_args(
    dir: &Path,
    ca: &Ca,
    server: &(String, String),
    tls_port: u16,
    clients: &str,
) -> Vec<String> {
    let ca_path = ca.write(dir, "ca");
    let (cert, key) = write_pair(dir, "server", server);
    let p = |p: &PathBuf| p.display().to_string();
    vec![
        "--tls-port".to_string(),
        tls_port.to_string(),
        "--tls-cert-file".to_string(),
        p(&cert),
        "--tls-key-file".to_string(),
        p(&key),
        "--tls-ca-cert-file".to_string(),
        p(&ca_path),
        "--tls-auth-clients".to_string(),
        clients.to_string(),
    ]
}

/// A redis-server whose TLS port serves `server` (signed by `ca`);
/// `clients`: `--tls-auth-clients` (`no`, `optional`, `yes`).
pub struct TlsRedis {
    pub redis: Redis,
    pub tls_port: u16,
    /// The certificates, kept for a restart.
    pub files: tempfile::TempDir,
}

impl TlsRedis {
    pub fn start(ca: &Ca, server: &(String, String), clients: &str) -> TlsRedis {
        let files = tempfile::tempdir().unwrap();
        let tls_port = free_port();
        let args = server_args(files.path(), ca, server, tls_port, clients);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let redis = Redis::start(&args);
        TlsRedis {
            redis,
            tls_port,
            files,
        }
    }

    /// `rediss://HOST:TLS_PORT/0`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}/0", self.tls_port)
    }
}

/// A redis-sentinel watching a [`TlsRedis`] over TLS (`tls-replication`),
/// serving clients on a TLS port (plain port kept for the test).
pub struct TlsSentinel {
    pub dir: tempfile::TempDir,
    pub tls_port: u16,
    child: std::process::Child,
}

impl TlsSentinel {
    pub fn start(master: &TlsRedis, ca: &Ca, server: &(String, String)) -> TlsSentinel {
        let dir = tempfile::tempdir().unwrap();
        let ca_path = ca.write(dir.path(), "ca");
        let (cert, key) = write_pair(dir.path(), "sentinel", server);
        let (port, tls_port) = (free_port(), free_port());
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\ntls-port {tls_port}\n\
                 tls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n\
                 sentinel monitor gm 127.0.0.1 {} 1\n",
                dir.path().display(),
                cert.display(),
                key.display(),
                ca_path.display(),
                master.tls_port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("sentinel.log")).unwrap();
        let child = std::process::Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap();
        let s = TlsSentinel {
            dir,
            tls_port,
            child,
        };
        // Ready once it names the primary (asked on its plain port).
        let deadline = std::time::Instant::now() + super::PATIENCE;
        loop {
            let named = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                .ok()
                .and_then(|c| {
                    c.get_connection_with_timeout(std::time::Duration::from_millis(500))
                        .ok()
                })
                .and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg("gm")
                        .query::<Vec<String>>(&mut c)
                        .ok()
                });
            if named.is_some_and(|v| v.len() == 2) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sentinel not ready: {}",
                std::fs::read_to_string(s.dir.path().join("sentinel.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `rediss+sentinel://127.0.0.1:TLS_PORT/gm/0`.
    pub fn url(&self) -> String {
        format!("rediss+sentinel://127.0.0.1:{}/gm/0", self.tls_port)
    }
}

impl Drop for TlsSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
