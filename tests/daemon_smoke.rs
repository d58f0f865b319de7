//! The binary starts on a config, listens where its log says, and stops on SIGTERM.
mod support;

use nix::sys::signal::Signal;
use support::Daemon;

#[test]
fn starts_listens_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), "[greylist]\ndelay = \"1s\"\n");
    assert_ne!(d.port, 0, "{}", d.log_text());
    std::net::TcpStream::connect(d.milter_addr()).unwrap();
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
    assert!(d.log_text().contains("greymilter stopped"));
}

/// A malformed `listen` is a configuration error with its position, and
/// `check-config` and `run` agree on it (same message, same exit status).
#[test]
fn check_config_and_run_report_a_bad_listen_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("greylist.toml");
    for bad in ["inet:99999@127.0.0.1", "inet6:10030@192.0.2.1"] {
        std::fs::write(&config, format!("[milter]\nlisten = \"{bad}\"\n")).unwrap();
        let outcome = |verb: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_greymilter"))
                .arg("--config")
                .arg(&config)
                .arg(verb)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (check_code, check_err) = outcome("check-config");
        let (run_code, run_err) = outcome("run");
        let at = format!("{}:2:10: ", config.display());
        assert!(check_err.starts_with(&at), "check-config: {check_err}");
        assert!(run_err.starts_with(&at), "run: {run_err}");
        assert_eq!(check_code, Some(1), "{check_err}");
        assert_eq!(run_code, check_code, "{run_err}");
    }
}
