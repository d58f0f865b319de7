//! The pidfile `greymilter stats` and init scripts use to find the daemon.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub struct Pidfile {
    path: PathBuf,
    pid: u32,
}

impl Pidfile {
    /// Writes our pid (atomically, so a reader never sees a partial number).
    pub fn create(path: &Path) -> io::Result<Pidfile> {
        let pid = std::process::id();
        crate::files::atomic::write_atomically(path, false, |w| writeln!(w, "{pid}"))
            .map_err(|e| io::Error::new(e.source.kind(), e.to_string()))?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            pid,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it still names us (a second instance may have
    /// replaced it).
    pub fn remove(&self) {
        if read(&self.path).ok() == Some(self.pid as i32) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Reads a pid from a pidfile.
pub fn read(path: &Path) -> io::Result<i32> {
    let text = fs::read_to_string(path)?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a pid: {:?}", path.display(), text.trim()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_removes_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.pid");
        let pf = Pidfile::create(&path).unwrap();
        assert_eq!(read(&path).unwrap(), std::process::id() as i32);
        fs::write(&path, "1\n").unwrap();
        pf.remove();
        assert!(path.exists(), "another instance's pidfile must stay");
        let pf = Pidfile::create(&path).unwrap();
        pf.remove();
        assert!(!path.exists());
        fs::write(&path, "junk").unwrap();
        assert!(read(&path).is_err());
    }
}
