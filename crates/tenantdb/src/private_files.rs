//! Owner-only files and directories, for SQLite databases and what sits
//! beside them. Tenant data and the catalog (token hashes, server URLs) are
//! for the service's own user alone: on Unix, files this module makes are
//! 0600 and directories 0700, set explicitly so that no umask widens them.
//!
//! SQLite gives a database's `-wal` and `-shm` files the mode of the
//! database file, so a database file made here before SQLite opens it
//! covers those too; a file SQLite creates itself would get 0644.
//!
//! What already exists is left as it is: an operator may have chosen a
//! directory's mode on purpose.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents, each owner-only.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(dir) {
        Ok(()) => restrict(dir, true),
        // Made meanwhile by another process: theirs to set.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Creates an empty owner-only file unless `path` exists; true if it did.
pub(crate) fn create_file(path: &Path) -> io::Result<bool> {
    match owner_only(OpenOptions::new().write(true).create_new(true)).open(path) {
        Ok(_) => restrict(path, false).map(|()| true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// Creates (or empties) an owner-only file for writing.
pub(crate) fn create_private(path: &Path) -> io::Result<File> {
    let file = owner_only(OpenOptions::new().write(true).create(true).truncate(true)).open(path)?;
    restrict(path, false)?;
    Ok(file)
}

/// Copies `from` to an owner-only `to` (replacing it), whatever the mode
/// of `from`.
pub(crate) fn copy(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = owner_only(OpenOptions::new().write(true).create(true).truncate(true)).open(to)?;
    restrict(to, false)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()
}

/// Opens (creating it owner-only if missing) a file used only for its lock.
pub(crate) fn lock_file(path: &Path) -> io::Result<File> {
    owner_only(OpenOptions::new().create(true).truncate(false).write(true)).open(path)
}

fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, FILE_MODE);
    options
}

/// The exact mode, past the umask.
#[cfg(unix)]
fn restrict(path: &Path, dir: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if dir { DIR_MODE } else { FILE_MODE };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: bool) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_files_and_directories_are_owner_only_and_existing_ones_are_kept() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let nested = root.path().join("a/b");
        create_dir_all(&nested).unwrap();
        assert_eq!((mode(&root.path().join("a")), mode(&nested)), (0o700, 0o700));
        assert_eq!(mode(root.path()), 0o755, "an existing directory keeps its mode");

        let file = nested.join("x.db");
        assert!(create_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"kept").unwrap();
        assert!(!create_file(&file).unwrap(), "an existing file is not made again");
        assert_eq!(std::fs::read(&file).unwrap(), b"kept");

        let open = root.path().join("open.db");
        std::fs::write(&open, b"data").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let copied = nested.join("copy.db");
        copy(&open, &copied).unwrap();
        assert_eq!(
            (mode(&copied), std::fs::read(&copied).unwrap()),
            (0o600, b"data".to_vec())
        );

        let lock = nested.join("x.lock");
        drop(lock_file(&lock).unwrap());
        assert_eq!(mode(&lock), 0o600);
    }
}
