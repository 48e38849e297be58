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

/// What identifies a file's content without reading it: a write changes the length or the
/// modification time (nanoseconds here), a replacement (`mv`, a ConfigMap's symlink swap) the
/// inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

/// The system files every probe run reads (resolv.conf, the hosts file), kept with their stamp.
/// Few paths exist (a reload may name new ones), so the table is small and bounded.
static SYSTEM_FILES: std::sync::Mutex<Vec<(PathBuf, Stamp, std::sync::Arc<str>)>> =
    std::sync::Mutex::new(Vec::new());
const SYSTEM_FILES_KEPT: usize = 16;

/// A system file's text as `read_limited` would give it (empty when unreadable), read again only
/// when its stamp changes: a run costs one `stat` instead of a trip to the blocking pool and a
/// read, while an edit is still seen by the next run, as libc sees it.
pub async fn read_system_file(path: &Path, max: u64) -> std::sync::Arc<str> {
    let stamp = std::fs::metadata(path).ok().map(|m| Stamp::of(&m));
    if let Some(stamp) = stamp {
        let hit = crate::lock(&SYSTEM_FILES)
            .iter()
            .find(|(p, s, _)| p == path && *s == stamp)
            .map(|(_, _, text)| text.clone());
        if let Some(text) = hit {
            return text;
        }
    }
    let text: std::sync::Arc<str> = read_limited_async(path, max)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
        .into();
    if let Some(stamp) = stamp {
        // Written between the stat and the read, the text is newer than the stamp: the next
        // run's stat differs and reads again, so nothing stale is kept.
        let mut kept = crate::lock(&SYSTEM_FILES);
        kept.retain(|(p, _, _)| p != path);
        if kept.len() >= SYSTEM_FILES_KEPT {
            kept.remove(0);
        }
        kept.push((path.to_path_buf(), stamp, text.clone()));
    }
    text
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

    #[tokio::test]
    async fn a_system_file_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "10.0.0.1 a.test\n").unwrap();
        assert_eq!(&*read_system_file(&hosts, 64).await, "10.0.0.1 a.test\n");
        // Same length, new content: the modification time tells.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&hosts, "10.0.0.2 a.test\n").unwrap();
        assert_eq!(&*read_system_file(&hosts, 64).await, "10.0.0.2 a.test\n");
        // Replaced by another file (a new inode), as `mv` or a ConfigMap update does.
        let next = dir.path().join("hosts.new");
        std::fs::write(&next, "10.0.0.3 a.test\n").unwrap();
        std::fs::rename(&next, &hosts).unwrap();
        assert_eq!(&*read_system_file(&hosts, 64).await, "10.0.0.3 a.test\n");
        std::fs::remove_file(&hosts).unwrap();
        assert_eq!(&*read_system_file(&hosts, 64).await, "");
        std::fs::write(&hosts, vec![b'x'; 100]).unwrap();
        assert_eq!(
            &*read_system_file(&hosts, 64).await,
            "",
            "over the cap reads as empty"
        );
    }
}
