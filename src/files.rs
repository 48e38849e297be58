//! Files named in the configuration (secret keys, tokens, trust stores, pinned keys, system
//! files), read only when they are regular files and only up to a size limit: `/dev/zero`, a
//! FIFO or a huge file becomes an error, never an unbounded allocation or a blocked thread.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Reads `path` if it is a regular file of at most `max` bytes. Checking the type before
/// opening matters: opening a FIFO blocks until a writer appears.
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(buf)
}

/// `read_limited` on the blocking pool, for the probes' hot paths.
pub async fn read_limited_async(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_limited(&path, max))
        .await
        .unwrap_or_else(|e| Err(format!("reading a file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_big_files_are_refused() {
        assert!(
            read_limited(Path::new("/dev/zero"), 64)
                .unwrap_err()
                .contains("not a regular file")
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 100]).unwrap();
        assert!(
            read_limited(&big, 64)
                .unwrap_err()
                .contains("larger than 64")
        );
        assert_eq!(read_limited(&big, 100).unwrap().len(), 100);
    }
}
