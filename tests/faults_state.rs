//! Bad state files at start-up: truncated, corrupt,
//! future-version, and paths that are no file at all. Each must be moved
//! aside as `FILE.bad-<stamp>` with its content intact and logged at
//! error; the daemon starts with an empty table, serves (a new tuple gets
//! 451), and writes a good state again on SIGUSR2.

mod support;

use std::fs;
use std::hash::Hasher;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::Path;

use greymilter::milter::client::{ConnectAddr, Response};
use nix::sys::signal::Signal;
use siphasher::sip::SipHasher13;
use support::Daemon;
use support::healthy::{is_greylisted, negotiated};
use support::state::{names_with_prefix, restored_count, tuples_in, write_state};

const CONFIG: &str = "[state]\nfile = \"{dir}/state\"\ncheckpoint_interval = \"1h\"\n";

/// Replaces the trailing checksum so that only the content is wrong.
fn reseal(bytes: &mut Vec<u8>) {
    let body = bytes.len() - 8;
    let mut h = SipHasher13::new_with_keys(0, 0);
    h.write(&bytes[..body]);
    bytes.truncate(body);
    bytes.extend_from_slice(&h.finish().to_le_bytes());
}

fn valid_state(dir: &Path) -> Vec<u8> {
    let path = dir.join("valid");
    write_state(&path, 1000);
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    bytes
}

/// The daemon started on a bad state: it logged the problem at error,
/// moved the file aside, serves, and checkpoints again.
fn assert_started_empty_and_serving(dir: &Path, what: &str, message: &str) -> (Daemon, String) {
    let d = Daemon::start_in(dir, CONFIG);
    assert_ne!(
        d.port,
        0,
        "{what}: the daemon did not start:\n{}",
        d.log_text()
    );
    let line = d.wait_for_log(|l| l.contains("moved the bad state file aside"));
    assert!(line.contains("ERROR"), "{what}: {line}");
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(" ERROR ") && l.contains(message)),
        "{what}: no error line with {message:?}:\n{log}"
    );
    assert!(
        !log.contains("restored state"),
        "{what}: restored a bad file"
    );
    let aside = names_with_prefix(dir, "state.bad-");
    assert_eq!(aside.len(), 1, "{what}: {aside:?}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = negotiated(d.milter_addr()).await;
        let ip = "192.0.2.9".parse().unwrap();
        let r = c.connect("mx", &ConnectAddr::Ip(ip, 25)).await.unwrap();
        assert_eq!(r, Response::Continue);
        assert_eq!(
            c.mail(&["<a@state.example>"]).await.unwrap(),
            Response::Continue
        );
        let r = c.rcpt(&["<b@state.example>"]).await.unwrap();
        assert!(is_greylisted(&r), "{what}: {r:?}");
        c.quit().await.unwrap();
    });
    let mark = d.log_len();
    d.signal(Signal::SIGUSR2);
    let line = d.wait_for_log_after(mark, |l| {
        l.contains("checkpoint written") || l.contains("checkpoint failed")
    });
    assert!(line.contains("checkpoint written"), "{what}: {line}");
    assert_eq!(tuples_in(&dir.join("state")), Ok(1), "{what}");
    let aside = dir.join(&names_with_prefix(dir, "state.bad-")[0]);
    (d, aside.display().to_string())
}

/// Regular files with bad content: moved aside byte for byte.
#[test]
fn truncated_corrupt_and_future_version_files_are_moved_aside() {
    let scratch = tempfile::tempdir().unwrap();
    let valid = valid_state(scratch.path());
    let half = valid[..valid.len() / 2].to_vec();
    let mut flipped = valid.clone();
    flipped[valid.len() / 2] ^= 0x40;
    let mut future = valid.clone();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut future);
    let mut overcounted = valid.clone();
    // The pending count claims one tuple more than the file holds.
    let pending = u64::from_le_bytes(overcounted[40..48].try_into().unwrap());
    overcounted[40..48].copy_from_slice(&(pending + 1).to_le_bytes());
    reseal(&mut overcounted);
    let mut bad_magic = valid.clone();
    bad_magic[..8].copy_from_slice(b"NOTGREYM");
    let cases: [(&str, Vec<u8>, &str); 7] = [
        ("empty", Vec::new(), "too short"),
        ("ten bytes", valid[..10].to_vec(), "too short"),
        ("truncated in the middle", half, "checksum mismatch"),
        ("one bit flipped", flipped, "checksum mismatch"),
        ("future version", future, "version 2 is not supported"),
        (
            "counts beyond the data, checksum right",
            overcounted,
            "cut short",
        ),
        ("bad magic", bad_magic, "bad magic"),
    ];
    for (what, bytes, message) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("state"), &bytes).unwrap();
        let (_d, aside) = assert_started_empty_and_serving(dir.path(), what, message);
        assert_eq!(
            fs::read(&aside).unwrap(),
            bytes,
            "{what}: the file moved aside changed"
        );
    }
}

/// A good file still restores (the cases above are not refused for
/// something every file has).
#[test]
fn a_good_file_restores() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("state"), valid_state(dir.path())).unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    let line = d.wait_for_log(|l| l.contains("restored state"));
    assert_eq!(restored_count(&line), 1000);
    assert!(names_with_prefix(dir.path(), "state.bad-").is_empty());
}

/// Paths that are no regular file: a directory, a FIFO (opening it for
/// reading would block the start until a writer came), a symlink to
/// /dev/zero (reading it would never end). Each is moved aside as it is.
#[test]
fn a_state_path_that_is_no_file_is_moved_aside() {
    type Make = fn(&Path);
    type IsKind = fn(&fs::FileType) -> bool;
    let cases: [(&str, Make, IsKind); 3] = [
        ("directory", |p| fs::create_dir(p).unwrap(), |t| t.is_dir()),
        (
            "FIFO",
            |p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap(),
            |t| t.is_fifo(),
        ),
        (
            "link to /dev/zero",
            |p| symlink("/dev/zero", p).unwrap(),
            |t| t.is_symlink(),
        ),
    ];
    for (what, make, is_kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        make(&dir.path().join("state"));
        let (_d, aside) = assert_started_empty_and_serving(dir.path(), what, "not a regular file");
        let kind = fs::symlink_metadata(&aside).unwrap().file_type();
        assert!(is_kind(&kind), "{what}: moved aside as {kind:?}");
    }
}

/// A second bad file within the same second (a crash loop, an admin
/// retrying) must not replace the first one moved aside: that is the
/// evidence. Names for the next seconds are taken in advance.
#[test]
fn moving_aside_never_replaces_an_earlier_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now();
    let mut taken = Vec::new();
    for s in 0..20 {
        let stamp: String =
            humantime::format_rfc3339_seconds(now + std::time::Duration::from_secs(s))
                .to_string()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
        let path = dir.path().join(format!("state.bad-{stamp}"));
        fs::write(&path, format!("earlier evidence {s}")).unwrap();
        taken.push(path);
    }
    fs::write(dir.path().join("state"), b"not a state").unwrap();
    let d = Daemon::start_in(dir.path(), CONFIG);
    let line = d.wait_for_log(|l| l.contains("moved the bad state file aside"));
    for (s, path) in taken.iter().enumerate() {
        assert_eq!(
            fs::read_to_string(path).unwrap(),
            format!("earlier evidence {s}"),
            "{line}"
        );
    }
    let aside = names_with_prefix(dir.path(), "state.bad-");
    assert_eq!(aside.len(), taken.len() + 1, "{aside:?}");
    let new: Vec<_> = aside
        .iter()
        .filter(|n| fs::read(dir.path().join(n)).unwrap() == b"not a state")
        .collect();
    assert_eq!(new.len(), 1, "{aside:?}\n{line}");
}
