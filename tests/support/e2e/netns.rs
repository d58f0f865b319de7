//! A private network namespace for one test: Sendmail has no XCLIENT, and the host's only
//! IPv6 loopback address is ::1, so a test that must connect from other IPv6 addresses runs
//! in a namespace of its own whose loopback also carries them. The host's network is never
//! touched; the namespace goes away with the last process in it.

use std::net::Ipv6Addr;
use std::process::Command;

pub const IP: &str = "/usr/sbin/ip";

/// Linux's `CLONE_NEWNET` (include/uapi/linux/sched.h).
const CLONE_NEWNET: std::ffi::c_int = 0x4000_0000;

unsafe extern "C" {
    /// unshare(2) from the C library std already links.
    fn unshare(flags: std::ffi::c_int) -> std::ffi::c_int;
}

/// Runs `body` on a thread of its own in a new network namespace with loopback up (127.0.0.1,
/// ::1) and `extra` IPv6 addresses on it. Namespaces belong to threads: everything `body`
/// starts (greymilter, an MTA, its catcher threads) and every socket it opens lives there.
/// A panic in `body` is passed on.
pub fn in_private_network<T: Send>(extra: &[Ipv6Addr], body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            // SAFETY: unshare takes a flag word and only changes this thread's namespaces.
            let status = unsafe { unshare(CLONE_NEWNET) };
            assert_eq!(
                status,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            ip(&["link", "set", "lo", "up"]);
            for address in extra {
                ip(&["-6", "addr", "add", &format!("{address}/128"), "dev", "lo"]);
            }
            body()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn ip(args: &[&str]) {
    let output = Command::new(IP)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {IP}: {e}"));
    assert!(
        output.status.success(),
        "{IP} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}
