//! Where greymilter listens: TCP (IPv4, IPv6) or a Unix stream socket, in
//! the spellings admins copy from their MTA's docs (docs/milter.md, "Sockets"):
//! Sendmail's `inet:PORT@HOST`, `inet6:PORT@HOST`, `local:/path`, and
//! Postfix's `inet:HOST:PORT`, `unix:/path`.
//!
//! Listeners are plain non-blocking std sockets, so they can be bound before
//! the runtime starts; [`crate::milter::server`] registers them with tokio.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Pending connections the kernel keeps for us. Past `max_connections` new
/// connections wait here.
const BACKLOG: i32 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Any,
    V4,
    V6,
}

impl FromStr for ListenSpec {
    type Err = String;

    /// `inet:PORT@HOST`, `inet6:PORT@HOST`, `inet:HOST:PORT`,
    /// `inet:[V6]:PORT`, `inet:PORT` (all addresses), `unix:/path`,
    /// `local:/path`. HOST is an IP literal or a name, resolved here
    /// synchronously (startup only).
    fn from_str(s: &str) -> Result<ListenSpec, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            if path.is_empty() {
                return Err(format!("{s:?}: the socket path is empty"));
            }
            return Ok(ListenSpec::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(ListenSpec::Unix(PathBuf::from(s)));
        }
        let (want, rest) = if let Some(r) = s.strip_prefix("inet6:") {
            (Want::V6, r)
        } else if let Some(r) = s.strip_prefix("inet:") {
            (Want::V4, r)
        } else {
            (Want::Any, s)
        };
        let (port, host) = split_host_port(rest).map_err(|e| format!("{s:?}: {e}"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: {port:?} is not a port number"))?;
        resolve(host, port, want)
            .map(ListenSpec::Tcp)
            .map_err(|e| format!("{s:?}: {e}"))
    }
}

/// Returns (port, host); host may be empty (all addresses).
fn split_host_port(rest: &str) -> Result<(&str, &str), String> {
    if let Some((port, host)) = rest.split_once('@') {
        return Ok((port, host));
    }
    if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((rest, ""));
    }
    if let Some(after) = rest.strip_prefix('[') {
        let (host, port) = after
            .split_once("]:")
            .ok_or_else(|| "expected [ADDRESS]:PORT".to_string())?;
        return Ok((port, host));
    }
    match rest.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err("an IPv6 address needs brackets ([::1]:10030) or the PORT@HOST form".to_string())
        }
        Some((host, port)) => Ok((port, host)),
        None => Err("expected HOST:PORT, PORT@HOST or unix:/path".to_string()),
    }
}

fn resolve(host: &str, port: u16, want: Want) -> Result<SocketAddr, String> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = match host.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => host.get(5..).unwrap_or_default(),
        _ => host,
    };
    if host.is_empty() || host == "*" {
        let any = match want {
            Want::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            Want::V4 | Want::Any => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        return Ok(SocketAddr::new(any, port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if want == Want::V6 && ip.is_ipv4() {
            return Err(format!("{host} is not an IPv6 address (use inet:)"));
        }
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .collect();
    let pick = |v6: bool| addrs.iter().find(|a| a.is_ipv6() == v6).copied();
    let found = match want {
        Want::V6 => pick(true),
        Want::V4 => pick(false).or_else(|| pick(true)),
        Want::Any => addrs.first().copied(),
    };
    found.ok_or_else(|| format!("{host:?} has no usable address"))
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenSpec::Tcp(SocketAddr::V4(a)) => write!(f, "inet:{}:{}", a.ip(), a.port()),
            ListenSpec::Tcp(SocketAddr::V6(a)) => write!(f, "inet6:[{}]:{}", a.ip(), a.port()),
            ListenSpec::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How a Unix socket is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixSocketOptions {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Group owner of the socket file (the MTA's group), if set.
    pub group: Option<nix::unistd::Gid>,
}

impl Default for UnixSocketOptions {
    fn default() -> Self {
        UnixSocketOptions {
            mode: 0o660,
            group: None,
        }
    }
}

/// A bound, listening socket.
#[derive(Debug)]
pub struct Listener {
    kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Tcp(std::net::TcpListener),
    Unix {
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
        /// (device, inode) of the socket file we created.
        identity: (u64, u64),
    },
}

impl Listener {
    /// Binds and listens. A stale Unix socket at the path (nobody accepts
    /// on it) is removed first; any other file there is an error, and so is
    /// one that appears while the socket is set up (in a private directory
    /// next to the path, then linked into place). The directory path plus
    /// 12 bytes must fit in a socket address (107 bytes).
    pub fn bind(spec: &ListenSpec, unix: &UnixSocketOptions) -> io::Result<Listener> {
        match spec {
            ListenSpec::Tcp(addr) => bind_tcp(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {spec}: {e}"))),
            ListenSpec::Unix(path) => bind_unix(path, unix).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}", path.display()),
                )
            }),
        }
    }

    /// The address actually bound, for logs (`inet:127.0.0.1:40123`).
    pub fn local_addr(&self) -> String {
        match &self.kind {
            Kind::Tcp(l) => match l.local_addr() {
                Ok(a) => ListenSpec::Tcp(a).to_string(),
                Err(e) => format!("inet:?({e})"),
            },
            Kind::Unix { path, .. } => ListenSpec::Unix(path.clone()).to_string(),
        }
    }

    /// The bound TCP port (useful after binding port 0).
    pub fn tcp_port(&self) -> Option<u16> {
        match &self.kind {
            Kind::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            Kind::Unix { .. } => None,
        }
    }

    /// The Unix socket path, if this is a Unix listener.
    pub fn unix_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Unix { path, .. } => Some(path),
            Kind::Tcp(_) => None,
        }
    }

    /// Removes the Unix socket file at shutdown, if it is still the one we
    /// created (another instance may have replaced it). Not done on drop:
    /// forked children must never remove the parent's socket.
    pub fn remove_socket_file(&self) -> io::Result<()> {
        let Kind::Unix { path, identity, .. } = &self.kind else {
            return Ok(());
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == *identity => {
                std::fs::remove_file(path)
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(Listener {
        kind: Kind::Tcp(socket.into()),
    })
}

fn bind_unix(path: &Path, options: &UnixSocketOptions) -> io::Result<Listener> {
    remove_stale_socket(path)?;
    // The socket is set up in a fresh directory only we can write to, then
    // linked into place. So chmod and chown never act on a name someone
    // could swap for a symlink meanwhile (as root, that would hand them any
    // file), the socket is not reachable before it has its mode and group,
    // and link(2) fails rather than replace whatever appeared at the path
    // since the check above.
    let staging = Staging::create(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(&staging.socket)?)?;
    std::fs::set_permissions(
        &staging.socket,
        std::fs::Permissions::from_mode(options.mode),
    )?;
    if let Some(gid) = options.group {
        nix::unistd::chown(&staging.socket, None, Some(gid)).map_err(io::Error::from)?;
    }
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    let meta = std::fs::symlink_metadata(&staging.socket)?;
    std::fs::hard_link(&staging.socket, path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            io::Error::new(
                e.kind(),
                "a file appeared at that path while the socket was set up; not replacing it",
            )
        } else {
            e
        }
    })?;
    Ok(Listener {
        kind: Kind::Unix {
            listener: socket.into(),
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
        },
    })
}

/// A private (0700) directory next to the socket path where the socket is
/// bound and set up; removed, with the staged name, when dropped.
struct Staging {
    dir: PathBuf,
    socket: PathBuf,
}

impl Staging {
    fn create(path: &Path) -> io::Result<Staging> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Short names: the staged path must fit in sun_path (108 bytes) too.
        let dir = nix::unistd::mkdtemp(&parent.join(".gmXXXXXX")).map_err(io::Error::from)?;
        Ok(Staging {
            socket: dir.join("s"),
            dir,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes a socket file nobody listens on. Refuses to touch anything that
/// is not a socket, and a socket a live process accepts on.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket exists at that path; not removing it",
        ));
    }
    // A non-blocking connect cannot hang on a live listener's full backlog.
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(e) => Err(e),
    }
}

/// A TCP connection that forces out the ACK of received bytes we will not
/// answer (Linux TCP_QUICKACK). Sendmail writes a MACRO packet and its
/// command separately; the MACRO gets no reply, so with delayed ACKs its
/// Nagle-held command would wait ~40 ms at every milter step.
///
/// The ACK is forced only when it is needed: when a read is about to wait
/// for more input and bytes received since our last write are still
/// unacknowledged. A reply written first carries the ACK by itself, so the
/// usual conversation (Postfix: MACRO and command in one write, each
/// command answered) costs no extra system call and no extra ACK segment.
pub struct QuickAckStream {
    inner: TcpStream,
    /// Bytes were read since the last write.
    unanswered: bool,
}

impl QuickAckStream {
    /// Sets TCP_NODELAY (replies are small and must leave at once).
    pub fn new(inner: TcpStream) -> QuickAckStream {
        let _ = inner.set_nodelay(true);
        QuickAckStream {
            inner,
            unanswered: false,
        }
    }

    /// Sends a pending delayed ACK now (setting TCP_QUICKACK pushes it).
    fn push_ack(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = SockRef::from(&self.inner).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        match poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.unanswered = true,
            Poll::Pending if this.unanswered => {
                this.unanswered = false;
                this.push_ack();
            }
            _ => {}
        }
        poll
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            // Our segment carries the ACK of everything read so far.
            this.unanswered = false;
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_mta_spellings() {
        let cases = [
            ("inet:10030@127.0.0.1", "127.0.0.1:10030"),
            ("inet:127.0.0.1:10030", "127.0.0.1:10030"),
            ("inet6:10030@::1", "[::1]:10030"),
            ("inet6:10030@[::1]", "[::1]:10030"),
            ("inet6:10030@IPv6:::1", "[::1]:10030"),
            ("inet:[::1]:10030", "[::1]:10030"),
            ("inet6:[2001:db8::1]:25", "[2001:db8::1]:25"),
            ("[::1]:10030", "[::1]:10030"),
            ("127.0.0.1:10030", "127.0.0.1:10030"),
            ("inet:10030", "0.0.0.0:10030"),
            ("inet6:10030", "[::]:10030"),
            ("inet:10030@localhost", "127.0.0.1:10030"),
            ("inet:localhost:10030", "127.0.0.1:10030"),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<ListenSpec>(),
                Ok(ListenSpec::Tcp(tcp(want))),
                "{text}"
            );
        }
        assert_eq!(
            "unix:/run/g.sock".parse::<ListenSpec>(),
            Ok(ListenSpec::Unix("/run/g.sock".into()))
        );
        assert_eq!(
            "local:/run/g.sock".parse::<ListenSpec>(),
            Ok(ListenSpec::Unix("/run/g.sock".into()))
        );
    }

    #[test]
    fn bad_specs_say_why() {
        for bad in [
            "unix:",
            "inet:",
            "inet:99999@127.0.0.1",
            "inet:::1:10030",
            "inet6:10030@127.0.0.1",
            "inet:[::1]10030",
            "tcp",
            "inet:port@127.0.0.1",
        ] {
            let err = bad.parse::<ListenSpec>().unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn display_parses_back() {
        for s in [
            "inet:127.0.0.1:10030",
            "inet6:[::1]:10030",
            "unix:/run/x.sock",
        ] {
            let spec: ListenSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            assert_eq!(spec.to_string().parse::<ListenSpec>().unwrap(), spec);
        }
    }
}
