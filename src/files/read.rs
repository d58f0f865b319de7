//! Reading the files an admin points greymilter at (configuration, state)
//! without trusting what is at the path.
//!
//! `fs::read` on a FIFO blocks until a writer appears, and on `/dev/zero`
//! never ends: either would stall or exhaust the daemon's only thread. So
//! the file is opened non-blocking, must be a regular file, and is read up
//! to a limit.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::pace::Pacer;

/// Bytes read between two looks at a paced read's clock (~0.1 ms).
const CHUNK: u64 = 256 << 10;

/// Reads the whole of `path`, which must be a regular file (symlinks to one
/// are fine) of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    crate::pace::run_now(read_regular_paced(path, limit, &mut Pacer::unpaced()))
}

/// [`read_regular`] in chunks, one costly step of `pacer` each (a reload
/// reads list files of up to 32 MiB on the loop: ~0.5 ms per MiB).
pub async fn read_regular_paced(
    path: &Path,
    limit: u64,
    pacer: &mut Pacer<'_>,
) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file ({})", kind(&meta.file_type())),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read.
    let mut file = file.take(limit.saturating_add(1));
    while (&mut file).take(CHUNK).read_to_end(&mut bytes)? > 0 {
        pacer.step_costly().await;
    }
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {limit} bytes"),
    )
}

fn kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_and_refuses_what_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(read_regular(&file, 3).unwrap(), b"abc");
        assert!(
            read_regular(&file, 2)
                .unwrap_err()
                .to_string()
                .contains("larger than 2")
        );
        let err = read_regular(dir.path(), 100).unwrap_err().to_string();
        assert_eq!(err, "not a regular file (a directory)");
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(
            read_regular(&fifo, 100).unwrap_err().to_string(),
            "not a regular file (a FIFO)"
        );
        assert_eq!(
            read_regular(Path::new("/dev/zero"), 100)
                .unwrap_err()
                .to_string(),
            "not a regular file (a character device)"
        );
    }

    /// A paced read takes one step per chunk and returns the whole file.
    #[test]
    fn a_paced_read_steps_once_per_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let content: Vec<u8> = (0..3 * CHUNK + 1).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let mut pacer = Pacer::new(1000, || std::future::ready(()));
        let read = crate::pace::run_now(read_regular_paced(&file, u64::MAX, &mut pacer));
        assert!(read.unwrap() == content);
        assert_eq!(pacer.pauses(), 4);
        let limit = 3 * CHUNK;
        let read = crate::pace::run_now(read_regular_paced(&file, limit, &mut pacer));
        assert!(read.unwrap_err().to_string().contains("larger than"));
    }
}
