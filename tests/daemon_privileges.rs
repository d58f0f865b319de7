//! Started as root with `[daemon] user`, the daemon drops to that user and
//! group for good, and still serves and writes its state. Needs root (CI
//! runs as root); skipped otherwise.
mod support;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use greymilter::milter::client::{ClientBuilder, ConnectAddr, Response};
use greymilter::milter::listener::ListenSpec;
use nix::sys::signal::Signal;
use nix::unistd::{Group, User};
use support::Daemon;

/// The `Uid:`/`Gid:` line of /proc/PID/status: real, effective, saved and
/// file-system ids.
fn ids(status: &str, key: &str) -> Vec<u32> {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// One greylisted recipient: proves the milter answers and changes the
/// table, so a checkpoint has something to write.
async fn greylist_one(addr: SocketAddr) {
    let mut c = ClientBuilder::new()
        .connect(&ListenSpec::Tcp(addr))
        .await
        .unwrap();
    c.negotiate().await.unwrap();
    let client = ConnectAddr::Ip("198.51.100.7".parse().unwrap(), 25);
    assert_eq!(
        c.connect("relay.example", &client).await.unwrap(),
        Response::Continue
    );
    assert_eq!(
        c.mail(&["<a@example.org>"]).await.unwrap(),
        Response::Continue
    );
    let reply = c.rcpt(&["<b@example.net>"]).await.unwrap();
    assert!(
        matches!(reply, Response::ReplyCode { code: 451, .. }),
        "{reply:?}"
    );
    c.quit().await.unwrap();
}

#[test]
fn drops_to_the_configured_user_and_still_serves_and_checkpoints() {
    if !support::require_root("dropping privileges") {
        return;
    }
    let user = User::from_name("nobody").unwrap().expect("user nobody");
    let group = Group::from_name("nogroup").unwrap().expect("group nogroup");
    let (uid, gid) = (user.uid.as_raw(), group.gid.as_raw());
    assert_ne!(uid, 0);

    let dir = tempfile::tempdir().unwrap();
    // The daemon creates state/ and hands it to nobody; nobody must be able
    // to reach it through the (root-owned, 0700) temp directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = Daemon::start_in(
        dir.path(),
        "[daemon]\nuser = \"nobody\"\ngroup = \"nogroup\"\n\
         [state]\nfile = \"{dir}/state/greymilter.state\"\ncheckpoint_interval = \"1s\"\n",
    );
    d.wait_for_log(|l| l.contains("dropped privileges"));

    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert_eq!(ids(&status, "Uid:"), [uid; 4], "{status}");
    assert_eq!(ids(&status, "Gid:"), [gid; 4], "{status}");
    assert_eq!(ids(&status, "Groups:"), [gid], "{status}");

    let state_dir = dir.path().join("state");
    let meta = std::fs::metadata(&state_dir).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, gid),
        "state directory owner"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(greylist_one(d.milter_addr()));

    // The forked checkpoint child runs as nobody too: the file it renames
    // into place is nobody's.
    d.wait_for_log(|l| l.contains("checkpoint written"));
    let state = std::fs::metadata(state_dir.join("greymilter.state")).unwrap();
    assert_eq!((state.uid(), state.gid()), (uid, gid), "state file owner");
    assert!(state.len() > 72, "the greylisted tuple is in the state");

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log_text());
}
