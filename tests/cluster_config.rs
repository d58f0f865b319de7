//! `check-config` with a `[cluster]` section: the secret file is read and
//! checked too (by `run` as well, before anything starts); nothing is
//! resolved or connected.

use std::fs;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_greymilter");

#[test]
fn check_config_validates_the_cluster_section_and_its_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let conf = dir.path().join("good.toml");
    fs::write(
        &conf,
        format!(
            "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nsecret_file = \"{}\"\ntimeout = \"80ms\"\n",
            key.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("[cluster]"), "{printed}");
    assert!(printed.contains("timeout = \"80ms\""), "{printed}");

    // A secret too short: `check-config` and `run` say the same, at the
    // `secret_file` line, with the same exit status; nothing listens.
    fs::write(&key, b"too short").unwrap();
    let check = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let run = Command::new(BIN)
        .arg("--config")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    for out in [&check, &run] {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{}:3:1: cluster secret_file ", conf.display()))
                && first.contains("at least 16"),
            "{stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }

    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        "[cluster]\nredis = \"http://x\"\nsecret_file = \"k\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}:2:9: ", bad.display())),
        "{stderr}"
    );
}

/// TLS files are read by `check-config` (and `run`) too; a bad one is
/// reported at its key's line.
#[test]
fn check_config_reads_the_tls_files_and_points_at_the_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cluster.key");
    fs::write(&key, [7u8; 32]).unwrap();
    let ca = dir.path().join("ca.pem");
    fs::write(&ca, "not a certificate\n").unwrap();
    let conf = dir.path().join("tls.toml");
    fs::write(
        &conf,
        format!(
            "[cluster]\nredis = \"rediss://redis.example.net:6380/0\"\nsecret_file = \"{}\"\n\
             ca_file = \"{}\"\n",
            key.display(),
            ca.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:4:1: cluster ca_file ", conf.display()))
            && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}
