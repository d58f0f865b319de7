//! The command-line side of the control socket (`greymilter check`,
//! `allow`, `forget`, `flush`, `stats`, `reload`): blocking, one request.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::handle::Reply;
use super::protocol::Command;

/// Largest answer read (a statistics report is about 1 KiB).
const MAX_ANSWER: u64 = 1 << 20;

/// Sends `command` and returns the daemon's reply.
pub fn request(socket: &Path, command: &Command, timeout: Duration) -> Result<Reply, String> {
    let mut line = command.to_line();
    line.push('\n');
    exchange(socket, &line, timeout)
}

/// Sends `text` (a command line and, for `import`, its entry lines, each
/// ending in a newline) and returns the daemon's reply.
pub fn exchange(socket: &Path, line: &str, timeout: Duration) -> Result<Reply, String> {
    let context = |e: std::io::Error| format!("control socket {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(context)?;
    stream.set_read_timeout(Some(timeout)).map_err(context)?;
    stream.set_write_timeout(Some(timeout)).map_err(context)?;
    // A refused client is answered and closed before its line is read:
    // the answer still waits to be read after a broken pipe.
    if let Err(e) = stream.write_all(line.as_bytes())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(context(e));
    }
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .map_err(context)?;
    let text = String::from_utf8_lossy(&answer);
    match text.split_once('\n') {
        Some(("ok", rest)) => Ok(Reply::ok(rest)),
        _ => match text.strip_prefix("error: ") {
            Some(e) => Ok(Reply::error(e.trim_end())),
            None => Err(format!(
                "control socket {}: unexpected answer {:?}",
                socket.display(),
                text.chars().take(200).collect::<String>()
            )),
        },
    }
}
