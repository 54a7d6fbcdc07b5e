//! An exclusive lock on a file, for work that processes sharing a disk do
//! one at a time (catalog migrations on SQLite, SQLite template builds).
//! The operating system drops the lock when its holder dies.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::private_files;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    /// Opens `path` (made owner-only if missing) and waits for its
    /// exclusive lock, on a blocking thread rather than the runtime's.
    pub(crate) async fn acquire(path: &Path) -> Result<Self> {
        let file = private_files::lock_file(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|err| Error::Task(err.to_string()))?
            .map_err(Error::io(format!("cannot lock {}", path.display())))?;
        Ok(Self { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.lock");
        let first = FileLock::acquire(&path).await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(200), FileLock::acquire(&path)).await;
        assert!(second.is_err(), "the lock is held");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), FileLock::acquire(&path)).await;
        assert!(third.is_ok_and(|lock| lock.is_ok()), "the lock is free again");
    }
}
