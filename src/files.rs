//! Files that hold mail, keys or passwords: private to the user from the first byte. One home for
//! the config (`config::edit`), the store (`store`), the local certificate (`net::tls`) and the
//! fetch locks (`fetch::lock`): directories we create are 0700, files 0600, and a store or key
//! others can read is refused with the command that fixes it.
//!
//! Below every module that writes such files (it depends on `error` only).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorClass, Result};

/// `mkdir -p` with mode 0700 for directories we create (an existing directory is left as it is).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::config(format!("cannot create directory {}: {e}", dir.display())))
}

/// Refuses a directory or file holding mail or keys that other local users can open: the store
/// and its directory, the certificate key. The message says what to run. A path that does not
/// exist (yet) passes.
pub fn check_private(path: &Path) -> Result<()> {
    let Ok(md) = std::fs::metadata(path) else { return Ok(()) };
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let want = if md.is_dir() { "700" } else { "600" };
    Err(Error::config(format!(
        "{} is open to other users of this machine (mode {mode:o}); it holds your mail or keys, so popbridge refuses to use it: run `chmod {want} {}`",
        path.display(),
        path.display()
    )))
}

/// Creates `path` (refusing to overwrite a file) with mode 0600 from the first byte, writes `data`
/// and fsyncs it. A failure has the caller's `class`: a config file that cannot be written is a
/// config error (exit 2), a key file is not.
pub fn write_new_private(path: &Path, data: &[u8], class: ErrorClass) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::new(class, format!("cannot create {}: {e}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::new(class, format!("cannot write {}: {e}", path.display())))
}

/// Replaces `path` with `data` atomically, mode 0600: the data goes to a temporary file beside it
/// (private from the first byte), is fsynced, renamed over `path`, and the directory is fsynced so
/// the rename itself survives a crash. Readers see the old content or the new, never a part.
pub fn replace_private(path: &Path, data: &[u8], class: ErrorClass) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::new(class, format!("cannot write {}: {e}", tmp.display())));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::new(class, format!("cannot replace {}: {e}", path.display())));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::new(class, format!("cannot sync the directory {}: {e}", dir.display())))
}

/// A temporary directory a store may live in (0700: the store refuses one others can read).
#[cfg(test)]
pub(crate) fn private_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("create a temporary directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dirs_are_0700_and_existing_ones_are_left_alone() {
        let dir = private_tempdir();
        let deep = dir.path().join("a/b");
        create_private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o750, "an existing directory keeps its mode");
        create_private_dir(Path::new("")).unwrap();
    }

    #[test]
    fn check_private_refuses_what_others_can_open() {
        let dir = private_tempdir();
        check_private(dir.path()).unwrap();
        check_private(&dir.path().join("missing")).unwrap();
        let f = dir.path().join("key.pem");
        std::fs::write(&f, b"k").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = check_private(&f).unwrap_err();
        assert_eq!(e.class, ErrorClass::Config);
        assert!(e.message.contains("chmod 600"), "{}", e.message);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_private(dir.path()).unwrap_err().message.contains("chmod 700"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn new_private_files_are_0600_and_never_overwrite() {
        let dir = private_tempdir();
        let f = dir.path().join("new");
        write_new_private(&f, b"secret", ErrorClass::Other).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
        let e = write_new_private(&f, b"other", ErrorClass::Config).unwrap_err();
        assert_eq!(e.class, ErrorClass::Config, "the caller's class");
        assert_eq!(std::fs::read(&f).unwrap(), b"secret", "an existing file is never replaced");
    }
}
