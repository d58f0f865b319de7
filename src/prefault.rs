//! Huge pages faulted in by a helper process, off the loop (issue 24).
//!
//! On a virtual machine whose host hands memory out lazily (a Firecracker
//! guest with free page reporting: free 8 MiB blocks are given back to the
//! host, which discards them), the first write to a fresh 2 MiB page makes
//! the host populate 512 of its own pages: 4–18 ms, where a 4 KiB fault
//! costs 1.5 µs and a huge page the kernel had just freed 0.2 ms
//! (`examples/fault_cost.rs`, BENCHMARKS.md). The loop would stall that
//! long on every fresh page of the tuple table, and the cost cannot be
//! split: a huge page is faulted whole.
//!
//! So a helper process, forked while the daemon is still small, faults the
//! pages the loop will need next: it writes one zero byte into each with
//! `process_vm_writev`, and the kernel maps the page into *our* page tables
//! in the helper's time. The loop finds it resident.
//!
//! The rules that keep it safe (the helper writes into our memory):
//! * one request at a time, for one byte: the caller asks only for a byte
//!   it holds no data in and does not write or free before the request is
//!   settled ([`settle_within`]; the allocator settles before it unmaps or
//!   moves a block, `crate::memory`);
//! * a helper that does not answer within [`PATIENCE`] is killed and waited
//!   for, so no write ever comes late;
//! * while it faults a page the helper holds our memory map's lock for
//!   reading; unmapping, `mremap` and fork take it for writing and would
//!   wait: callers do those when [`idle`] where they can choose.
//!
//! Without a helper (never started, refused by the kernel, dead) every
//! call answers [`Asked::NoHelper`] and callers fault pages themselves.
//! The process stays single-threaded: the helper is a process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use nix::libc;

/// The helper's process name (`ps`, `/proc/PID/comm`).
pub const HELPER_NAME: &std::ffi::CStr = c"greymilter-pf";

/// How long [`settle_within`] waits for the helper before killing it.
pub const PATIENCE: Duration = Duration::from_millis(200);

static PID: AtomicI32 = AtomicI32::new(0);
static REQUEST_FD: AtomicI32 = AtomicI32::new(-1);
static ANSWER_FD: AtomicI32 = AtomicI32::new(-1);
/// The byte the helper is writing, 0 when none.
static OUTSTANDING: AtomicUsize = AtomicUsize::new(0);
/// Requests are held back (see [`hold`]).
static HELD: AtomicBool = AtomicBool::new(false);

/// Holds requests back (`true`) until released (`false`): while the daemon
/// still runs as root and the helper already as the daemon's user, the
/// kernel would refuse the helper, which would then be stopped for good.
pub fn hold(on: bool) {
    HELD.store(on, Ordering::Relaxed);
}

/// Why the helper was stopped last (see [`stopped`]).
static STOPPED: AtomicUsize = AtomicUsize::new(0);

/// Why the helper stopped: 0 not stopped, 1 no answer within [`PATIENCE`],
/// 2 refused by the kernel, 3 gone (its pipe closed), 4 request not sent,
/// 5 stopped by the caller (or reaped).
pub fn stopped() -> usize {
    STOPPED.load(Ordering::Relaxed)
}

/// Requests sent since start (for tests and benchmarks).
static REQUESTS: AtomicUsize = AtomicUsize::new(0);
/// The kernel refused the helper access to us (not yet logged).
static REFUSED: AtomicBool = AtomicBool::new(false);

/// What [`request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The helper will fault the page in.
    Yes,
    /// The helper is faulting another page: ask again later.
    Busy,
    /// No helper: fault the page yourself.
    NoHelper,
}

/// Whether a helper is running.
pub fn running() -> bool {
    PID.load(Ordering::Relaxed) > 0
}

/// Forks the helper. Call while the process is small (the helper shares
/// the memory it had at fork time, copy-on-write) and single-threaded.
/// `child_setup` runs in the helper first (e.g. a privilege drop).
pub fn start(child_setup: impl FnOnce() -> bool) -> std::io::Result<()> {
    if running() {
        return Ok(());
    }
    let (req_r, req_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (ans_r, ans_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let parent = nix::unistd::getpid();
    // SAFETY: the caller keeps the process single-threaded, so the child
    // inherits no lock held by another thread; it only reads its pipe,
    // calls process_vm_writev and writes one byte per request.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(req_w);
            drop(ans_r);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::prctl::set_name(HELPER_NAME);
            let code = if child_setup() {
                serve(parent.as_raw(), &req_r, &ans_w)
            } else {
                1
            };
            // SAFETY: leaves without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(req_r);
            drop(ans_w);
            nix::fcntl::fcntl(
                &ans_r,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )?;
            // Yama's `ptrace_scope = 1` (Ubuntu's default) lets a process
            // reach only its descendants' memory; the helper is our child,
            // so name it our tracer. Fails harmlessly (EINVAL) without Yama.
            // SAFETY: prctl with integer arguments only.
            unsafe {
                libc::prctl(
                    libc::PR_SET_PTRACER,
                    child.as_raw() as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                )
            };
            REQUEST_FD.store(into_raw(req_w), Ordering::Relaxed);
            ANSWER_FD.store(into_raw(ans_r), Ordering::Relaxed);
            PID.store(child.as_raw(), Ordering::Relaxed);
            Ok(())
        }
    }
}

fn into_raw(fd: OwnedFd) -> i32 {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

/// The helper's loop: one address in, one byte written, one answer out (1
/// done, 0 refused). Ends when the parent closes the pipe or is gone.
fn serve(parent: i32, requests: &OwnedFd, answers: &OwnedFd) -> i32 {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(requests.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        if n != 8 || nix::unistd::getppid().as_raw() != parent {
            return 0;
        }
        let addr = usize::from_ne_bytes(buf);
        let zero = 0u8;
        let local = libc::iovec {
            iov_base: std::ptr::from_ref(&zero).cast_mut().cast(),
            iov_len: 1,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 1,
        };
        // SAFETY: the iovecs describe one byte each; the kernel checks
        // the remote one against the parent's mappings.
        let done = unsafe { libc::process_vm_writev(parent, &local, 1, &remote, 1, 0) } == 1;
        let answer = [u8::from(done)];
        // SAFETY: writes one byte from a buffer we own.
        if unsafe { libc::write(answers.as_raw_fd(), answer.as_ptr().cast(), 1) } != 1 || !done {
            return 1;
        }
    }
}

/// Asks the helper to write a zero byte at `addr`, which faults in the page
/// holding it. The caller holds no data at `addr` and neither writes nor
/// frees it before [`settle_within`] covers it (or [`idle`] says true).
pub fn request(addr: usize) -> Asked {
    if !running() {
        if REFUSED.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "huge pages are faulted in on the main loop: the kernel refused the prefault \
                 helper access to this process (process_vm_writev)"
            );
        }
        return Asked::NoHelper;
    }
    if HELD.load(Ordering::Relaxed) {
        return Asked::NoHelper;
    }
    if !idle() {
        return Asked::Busy;
    }
    let fd = REQUEST_FD.load(Ordering::Relaxed);
    let buf = addr.to_ne_bytes();
    // Records the request first: if the write fails half-way, `stop`
    // still knows a write might come and waits for the helper's end.
    OUTSTANDING.store(addr, Ordering::Relaxed);
    // SAFETY: writes 8 bytes from a buffer we own (atomic: < PIPE_BUF;
    // the pipe is empty, one request at a time).
    if unsafe { libc::write(fd, buf.as_ptr().cast(), 8) } != 8 {
        stop_for(4);
        return Asked::NoHelper;
    }
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    Asked::Yes
}

/// Requests the helper was sent since start.
pub fn requests() -> usize {
    REQUESTS.load(Ordering::Relaxed)
}

/// Whether no request is outstanding (reads the helper's answer if it came).
pub fn idle() -> bool {
    if OUTSTANDING.load(Ordering::Relaxed) == 0 {
        return true;
    }
    answer(0)
}

/// Waits for the outstanding request if it lies in `[start, start + len)`.
/// Cheap when it does not (the hot path calls it per insert).
#[inline]
pub fn settle_within(start: usize, len: usize) {
    let at = OUTSTANDING.load(Ordering::Relaxed);
    if at != 0 && at.wrapping_sub(start) < len {
        settle();
    }
}

/// Waits for the outstanding request, at most [`PATIENCE`]; then stops the
/// helper.
pub fn settle() {
    if OUTSTANDING.load(Ordering::Relaxed) != 0 && !answer(PATIENCE.as_millis() as i32) {
        stop_for(1);
    }
}

/// Reads the helper's answer, waiting up to `wait_ms`; true once nothing
/// is outstanding.
fn answer(wait_ms: i32) -> bool {
    let fd = ANSWER_FD.load(Ordering::Relaxed);
    if wait_ms > 0 {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        unsafe { libc::poll(&mut poll, 1, wait_ms) };
    }
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into a buffer we own (non-blocking fd).
    match unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) } {
        1 => {
            OUTSTANDING.store(0, Ordering::Relaxed);
            if byte[0] != 1 {
                // Logged by `request`, not here: this may run inside the
                // allocator.
                REFUSED.store(true, Ordering::Relaxed);
                stop_for(2);
            }
            true
        }
        // EOF: the helper is gone, nothing more can come.
        0 => {
            stop_for(3);
            true
        }
        _ => false,
    }
}

/// The daemon's reaper collected `pid`: if it was the helper, forget it
/// (it can write no more, and its pid may be reused: never signal it).
pub fn reaped(pid: i32) {
    if pid > 0
        && PID
            .compare_exchange(pid, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        STOPPED.store(3, Ordering::Relaxed);
        stop();
    }
}

/// In a forked child: forgets the parent's helper (closes our copies of
/// its pipes) without signalling it.
pub fn disown() {
    PID.store(0, Ordering::Relaxed);
    stop();
}

/// Kills the helper (if any), waits for it and forgets it: no write of it
/// can come after this returns.
pub fn stop() {
    stop_for(5);
}

fn stop_for(reason: usize) {
    if running() {
        STOPPED.store(reason, Ordering::Relaxed);
    }
    let pid = PID.swap(0, Ordering::Relaxed);
    for fd in [&REQUEST_FD, &ANSWER_FD] {
        let fd = fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the descriptor is ours and no longer stored anywhere.
            unsafe { libc::close(fd) };
        }
    }
    if pid > 0 {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        // The daemon's reaper may have reaped it already (ECHILD): then it
        // is gone too.
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
    }
    OUTSTANDING.store(0, Ordering::Relaxed);
}
