//! What the repository ships to admins works as shipped: the example
//! configuration passes its own check from the repository root and in the
//! layout the Debian package installs (Cargo.toml's assets), the list
//! files it names load there, and the MTA snippets are safe to append.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use greymilter::config::Config;
use greymilter::greylist::lists::{ListName, Lists};
use greymilter::greylist::settings::ListAction;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn greymilter(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_greymilter"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn the_example_passes_check_config_from_the_repository_root() {
    let out = greymilter(
        root(),
        &["check-config", "--config", "greylist.toml.example"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("# greylist.toml.example: OK\n"),
        "{stdout}"
    );
}

/// `(source in the repository, destination)` of every asset the package
/// installs under /etc/greymilter, read from Cargo.toml.
fn etc_assets() -> Vec<(PathBuf, String)> {
    let manifest: toml::Table = fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    assets
        .iter()
        .filter_map(|a| {
            let a = a.as_array()?;
            let dest = a.get(1)?.as_str()?.strip_prefix("etc/greymilter/")?;
            Some((root().join(a.first()?.as_str()?), dest.to_string()))
        })
        .collect()
}

#[test]
fn the_packaged_layout_loads_the_shipped_lists() {
    let dir = tempfile::tempdir().unwrap();
    let assets = etc_assets();
    let dests: Vec<&str> = assets.iter().map(|(_, d)| d.as_str()).collect();
    for want in ["greylist.toml", "large-senders", "whitelist_recipients"] {
        assert!(dests.contains(&want), "Cargo.toml installs no {want}");
    }
    for (source, dest) in &assets {
        fs::copy(source, dir.path().join(dest)).unwrap();
    }
    let config = dir.path().join("greylist.toml");

    // As installed: the large senders are read, the admin's own file is
    // optional; the package's check passes.
    let out = greymilter(
        Path::new("/"),
        &["check-config", "--config", config.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("# list files: 1 read,"), "{stdout}");
    assert!(
        stdout.contains("whitelist_clients.local: missing, optional"),
        "{stdout}"
    );

    // With the commented accept_recipients line switched on, the
    // whitelist_recipients file beside it is read too.
    let text = fs::read_to_string(&config).unwrap();
    let line = "# accept_recipients = [\"whitelist_recipients\"]";
    assert!(
        text.contains(line),
        "the example names whitelist_recipients"
    );
    fs::write(&config, text.replace(line, &line[2..])).unwrap();
    let c = Config::load(&config).unwrap();
    let lists = Lists::compile(&c.settings().lists, true);
    let accept = Some((ListName::Recipients, ListAction::Accept));
    for rcpt in ["postmaster@example.com", "abuse@example.org"] {
        assert_eq!(lists.lookup_recipient(rcpt.as_bytes()), accept, "{rcpt}");
    }
    assert_eq!(lists.lookup_recipient(b"alice@example.com"), None);
    assert_eq!(
        lists.client_name(b"mail-wr1-f54.google.com"),
        Some(ListAction::Accept)
    );
}

/// Appended to an existing main.cf, the snippet must not reset a setting
/// the site already has: `non_smtpd_milters =` would wipe OpenDKIM's.
#[test]
fn the_postfix_snippet_sets_nothing_but_smtpd_milters() {
    let text = fs::read_to_string(root().join("contrib/postfix-main.cf")).unwrap();
    let settings: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .collect();
    assert_eq!(settings, ["smtpd_milters"], "{text}");
}

/// With the shipped example as /etc/greymilter/greylist.toml, `greymilter
/// stats`, `check`, `allow`, `forget` and `reload` reach the daemon: the
/// example opens the control socket they use (in the directory the systemd
/// unit creates).
#[test]
fn the_example_opens_the_control_socket_of_the_admin_verbs() {
    let text = include_str!("../greylist.toml.example");
    let config = greymilter::config::Config::parse(text, "greylist.toml.example")
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(
        config.control.socket.as_deref(),
        Some(std::path::Path::new("/run/greymilter/control.sock"))
    );
    let unit = include_str!("../contrib/greymilter.service");
    assert!(
        unit.lines().any(|l| l == "RuntimeDirectory=greymilter"),
        "the unit must create /run/greymilter"
    );
}
