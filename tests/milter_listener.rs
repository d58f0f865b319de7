//! Listeners (TCP, Unix socket files) and the accept loop: limits, graceful
//! shutdown, session reporting. Real sockets on loopback, paused clock.

#[path = "support/milter/mod.rs"]
mod milter_support;

use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::rc::Rc;
use std::time::Duration;

use greymilter::milter::client::{ClientBuilder, ClientIo, ConnectAddr, MilterClient, Response};
use greymilter::milter::listener::{ListenSpec, Listener, UnixSocketOptions};
use greymilter::milter::server::{Limits, ServeSummary, serve};
use milter_support::GreyFactory;
use tokio::sync::oneshot;
use tokio::task::LocalSet;

fn unix_spec(dir: &tempfile::TempDir, name: &str) -> ListenSpec {
    ListenSpec::Unix(dir.path().join(name))
}

#[test]
fn unix_socket_gets_its_mode_and_group() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o600, 0o660, 0o666] {
        let spec = unix_spec(&dir, &format!("m{mode:o}.sock"));
        let group = if nix::unistd::geteuid().is_root() {
            nix::unistd::Gid::from_raw(1)
        } else {
            nix::unistd::getegid()
        };
        let opts = UnixSocketOptions {
            mode,
            group: Some(group),
        };
        let listener = Listener::bind(&spec, &opts).unwrap();
        let path = listener.unix_path().unwrap().to_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode);
        assert_eq!(meta.gid(), group.as_raw());
        assert_eq!(listener.local_addr(), spec.to_string());
        assert_eq!(listener.tcp_port(), None);
        listener.remove_socket_file().unwrap();
        assert!(!path.exists());
    }
    assert_eq!(UnixSocketOptions::default().mode, 0o660);
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unix_spec(&dir, "g.sock");
    let ListenSpec::Unix(path) = &spec else {
        unreachable!()
    };
    // A socket file left behind by a dead process.
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(path.exists());
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    // It is ours now, and it accepts.
    std::os::unix::net::UnixStream::connect(path).unwrap();
    // A second instance must not steal it.
    let err = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    std::os::unix::net::UnixStream::connect(path).unwrap();
    listener.remove_socket_file().unwrap();
}

#[test]
fn a_regular_file_at_the_path_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unix_spec(&dir, "not-a-socket");
    let ListenSpec::Unix(path) = &spec else {
        unreachable!()
    };
    std::fs::write(path, b"precious").unwrap();
    let err = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap_err();
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(path).unwrap(), b"precious");
}

#[test]
fn only_a_stale_socket_is_ever_replaced_and_symlinks_are_not_followed() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    // Things a symlink at the socket path may point to. Following the link
    // to the stale socket would remove it; chmod through it would change
    // the file's mode.
    drop(std::os::unix::net::UnixListener::bind(at("stale.sock")).unwrap());
    std::fs::write(at("file"), b"precious").unwrap();
    std::fs::set_permissions(at("file"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(at("dir")).unwrap();
    std::fs::write(at("dir/inside"), b"kept").unwrap();
    nix::unistd::mkfifo(&at("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for target in ["stale.sock", "file", "dir", "missing"] {
        std::os::unix::fs::symlink(at(target), at(&format!("link-to-{target}"))).unwrap();
    }
    let opts = UnixSocketOptions {
        mode: 0o666,
        group: None,
    };
    for name in [
        "dir",
        "fifo",
        "link-to-stale.sock",
        "link-to-file",
        "link-to-dir",
        "link-to-missing",
    ] {
        let before = std::fs::symlink_metadata(at(name)).unwrap();
        let err = Listener::bind(&ListenSpec::Unix(at(name)), &opts).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::AlreadyExists,
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
        let after = std::fs::symlink_metadata(at(name)).unwrap();
        assert_eq!(
            (after.file_type(), after.ino(), after.mode()),
            (before.file_type(), before.ino(), before.mode()),
            "{name} was changed"
        );
    }
    let stale = std::fs::symlink_metadata(at("stale.sock")).unwrap();
    assert!(stale.file_type().is_socket());
    assert_eq!(std::fs::read(at("file")).unwrap(), b"precious");
    let file_mode = std::fs::metadata(at("file")).unwrap().permissions().mode();
    assert_eq!(file_mode & 0o777, 0o600);
    assert_eq!(std::fs::read(at("dir/inside")).unwrap(), b"kept");
    assert!(!at("missing").exists());
}

#[test]
fn the_socket_is_set_up_aside_and_linked_into_place() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unix_spec(&dir, "g.sock");
    let ListenSpec::Unix(path) = &spec else {
        unreachable!()
    };
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    // Only the socket, under its one name: the staging directory is gone.
    assert_eq!(names(), ["g.sock"]);
    assert_eq!(std::fs::symlink_metadata(path).unwrap().nlink(), 1);
    std::os::unix::net::UnixStream::connect(path).unwrap();
    listener.remove_socket_file().unwrap();
    assert!(names().is_empty());

    // A failure after staging leaves nothing behind either: here the
    // staged name does not fit in sun_path (108 bytes) although the path
    // itself would.
    let deep = dir
        .path()
        .join("d".repeat(100 - dir.path().as_os_str().len() - 1));
    std::fs::create_dir(&deep).unwrap();
    let short = ListenSpec::Unix(deep.join("s"));
    assert!(Listener::bind(&short, &UnixSocketOptions::default()).is_err());
    assert_eq!(std::fs::read_dir(&deep).unwrap().count(), 0);
}

#[test]
fn remove_socket_file_leaves_a_replaced_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unix_spec(&dir, "g.sock");
    let ListenSpec::Unix(path) = &spec else {
        unreachable!()
    };
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    std::fs::remove_file(path).unwrap();
    std::fs::write(path, b"someone else's").unwrap();
    listener.remove_socket_file().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"someone else's");
}

#[test]
fn tcp_bind_reports_the_port_and_names_the_address_on_error() {
    let spec: ListenSpec = "inet:0@127.0.0.1".parse().unwrap();
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    let port = listener.tcp_port().unwrap();
    assert_ne!(port, 0);
    assert_eq!(listener.local_addr(), format!("inet:127.0.0.1:{port}"));
    let taken: ListenSpec = format!("inet:127.0.0.1:{port}").parse().unwrap();
    let err = Listener::bind(&taken, &UnixSocketOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

/// Runs `script` while `serve` runs; the script's sender stops the server.
async fn serving<T, Fut>(
    listener: &Listener,
    factory: Rc<GreyFactory>,
    limits: Limits,
    drain: Duration,
    script: impl FnOnce(oneshot::Sender<()>) -> Fut,
) -> (ServeSummary, T)
where
    Fut: Future<Output = T>,
{
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    LocalSet::new()
        .run_until(async {
            tokio::join!(
                serve(listener, factory, limits, shutdown, drain),
                script(tx)
            )
        })
        .await
}

async fn open(spec: &ListenSpec) -> MilterClient<Box<dyn ClientIo>> {
    let mut c = ClientBuilder::new().connect(spec).await.unwrap();
    c.negotiate().await.unwrap();
    c
}

async fn greylist_cycle(spec: &ListenSpec, ip: &str) {
    for expect_pass in [false, true] {
        let mut c = open(spec).await;
        let addr = ConnectAddr::Ip(ip.parse().unwrap(), 4000);
        assert_eq!(
            c.connect("client", &addr).await.unwrap(),
            Response::Continue
        );
        assert_eq!(
            c.mail(&["<a@example.org>"]).await.unwrap(),
            Response::Continue
        );
        let r = c.rcpt(&["<b@example.net>"]).await.unwrap();
        if expect_pass {
            assert_eq!(r, Response::Continue);
        } else {
            assert!(matches!(r, Response::ReplyCode { code: 451, .. }), "{r:?}");
        }
        c.quit().await.unwrap();
        assert!(c.closed().await.unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn serves_tcp_v4_v6_and_unix_and_reports_each_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut specs = vec![
        "inet:127.0.0.1:0".to_string(),
        format!("unix:{}/g.sock", dir.path().display()),
    ];
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        specs.push("inet6:0@::1".to_string());
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have the IPv6 loopback ::1"
        );
        eprintln!("no ::1 on this host: the IPv6 listener is not exercised");
    }
    for text in specs {
        let spec: ListenSpec = text.parse().unwrap();
        let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
        let connect_to = match (&spec, listener.tcp_port()) {
            (ListenSpec::Tcp(a), Some(port)) => {
                ListenSpec::Tcp(std::net::SocketAddr::new(a.ip(), port))
            }
            (other, _) => other.clone(),
        };
        let factory = Rc::new(GreyFactory::new());
        let (summary, ()) = serving(
            &listener,
            Rc::clone(&factory),
            Limits::default(),
            Duration::from_secs(5),
            |stop| async move {
                greylist_cycle(&connect_to, "2001:db8::7").await;
                stop.send(()).unwrap();
            },
        )
        .await;
        assert_eq!(summary.accepted, 2, "{text}");
        assert_eq!((summary.drained, summary.abandoned), (0, 0));
        let seen = factory.seen.borrow();
        assert_eq!(seen.summaries.len(), 2, "{text}");
        assert!(
            seen.summaries
                .iter()
                .all(|s| !s.protocol_error && !s.timed_out)
        );
        listener.remove_socket_file().unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn past_max_connections_new_ones_wait_in_the_backlog() {
    let spec: ListenSpec = "inet:127.0.0.1:0".parse().unwrap();
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    let to: ListenSpec = format!("inet:127.0.0.1:{}", listener.tcp_port().unwrap())
        .parse()
        .unwrap();
    let factory = Rc::new(GreyFactory::new());
    let limits = Limits { max_connections: 2 };
    let (summary, ()) = serving(
        &listener,
        factory,
        limits,
        Duration::from_secs(5),
        |stop| async move {
            let mut first = open(&to).await;
            let _second = open(&to).await;
            // The third connects (kernel backlog) but is not served...
            let mut third = ClientBuilder::new()
                .timeout(Duration::from_secs(5))
                .connect(&to)
                .await
                .unwrap();
            let err = third.negotiate().await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
            // ...until a session ends; then its waiting OPTNEG is answered.
            first.quit().await.unwrap();
            assert!(matches!(
                third.read_response().await.unwrap(),
                Response::OptNeg(_)
            ));
            stop.send(()).unwrap();
        },
    )
    .await;
    assert_eq!(summary.accepted, 3);
    assert!(summary.limit_reached >= 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_idle_sessions_and_drops_stuck_ones_after_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let spec = unix_spec(&dir, "g.sock");
    let listener = Listener::bind(&spec, &UnixSocketOptions::default()).unwrap();
    let factory = Rc::new(GreyFactory::new());
    let drain = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    let (summary, ()) = serving(
        &listener,
        Rc::clone(&factory),
        Limits::default(),
        drain,
        |stop| async move {
            let mut idle = open(&spec).await;
            let mut stuck = open(&spec).await;
            // Half a packet: this session has a command in flight.
            stuck.write_raw(&[0, 0, 0, 9, b'R', b'<']).await.unwrap();
            tokio::task::yield_now().await;
            stop.send(()).unwrap();
            // The idle session is closed at once, without waiting for the drain.
            assert!(idle.closed().await.unwrap());
            assert!(tokio::time::Instant::now() - started < drain);
            // New connections are no longer accepted.
            let mut late = ClientBuilder::new()
                .timeout(Duration::from_secs(60))
                .connect(&spec)
                .await;
            if let Ok(late) = late.as_mut() {
                assert!(late.negotiate().await.is_err());
            }
            assert!(stuck.closed().await.unwrap());
        },
    )
    .await;
    assert_eq!(
        (summary.accepted, summary.drained, summary.abandoned),
        (2, 1, 1)
    );
    // The stuck session was dropped, so only the idle one reported.
    assert_eq!(factory.seen.borrow().summaries.len(), 1);
    listener.remove_socket_file().unwrap();
}
