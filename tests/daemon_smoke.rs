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
