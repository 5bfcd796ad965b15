//! One fetch per account at a time, across processes: an advisory lock on a file per account in the
//! data directory. The kernel drops the lock when the process dies (even by kill -9), so a crash
//! never leaves an account locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, ErrorClass, Result};

pub struct AccountLock {
    _file: File,
}

impl AccountLock {
    pub fn acquire(dir: &Path, account: &str) -> Result<AccountLock> {
        crate::files::create_private_dir(dir)?;
        // Hex of the name: any account name makes a safe, unique file name.
        let hex: String = account.bytes().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{hex}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::other(format!("cannot open the lock file {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Error::new(
                    ErrorClass::Temporary,
                    format!(
                        "account \"{account}\" is already being fetched by another popbridge process{}; this fetch was skipped",
                        if pid.is_empty() { String::new() } else { format!(" (pid {pid})") }
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::other(format!("cannot lock {}: {e}", path.display())));
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(AccountLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_released() {
        let dir = crate::files::private_tempdir();
        let a = AccountLock::acquire(dir.path(), "Work").unwrap();
        let e = AccountLock::acquire(dir.path(), "Work").err().unwrap();
        assert_eq!(e.class, ErrorClass::Temporary);
        assert!(e.message.contains("already being fetched"), "{}", e.message);
        AccountLock::acquire(dir.path(), "Home").unwrap();
        drop(a);
        AccountLock::acquire(dir.path(), "Work").unwrap();
    }
}
