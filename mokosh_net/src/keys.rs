//! Key files: [`KeyPair::load_or_generate`] keeps a server's static key pair
//! on disk, so clients can keep pinning the same public key across restarts.
//!
//! This is file IO, so it lives outside the sans-IO [`protocol`](crate::protocol)
//! core.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::protocol::KeyPair;

impl KeyPair {
    /// Loads the key pair whose private key is stored in `path` (64 hex digits,
    /// surrounding whitespace ignored), or, if there is no such file, generates
    /// one and saves it there (creating missing parent directories).
    ///
    /// The file is created with owner-only permissions (`0600`) on Unix, and
    /// never overwritten: if another process creates it first, that key is
    /// loaded.
    ///
    /// # Errors
    /// A file that cannot be read or written, or whose content is not a
    /// private key ([`io::ErrorKind::InvalidData`]).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("mokosh-doc-key-{}", std::process::id()));
    /// # let path = dir.join("server.key");
    /// use mokosh_net::protocol::KeyPair;
    ///
    /// let first = KeyPair::load_or_generate(&path)?;
    /// let again = KeyPair::load_or_generate(&path)?;
    /// assert_eq!(first.public(), again.public());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn load_or_generate(path: impl AsRef<Path>) -> io::Result<KeyPair> {
        let path = path.as_ref();
        match fs::read_to_string(path) {
            Ok(text) => return parse(path, &text),
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            Err(_) => {}
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let keypair = KeyPair::generate().map_err(io::Error::other)?;
        let mut file = match create_private(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                return parse(path, &fs::read_to_string(path)?);
            }
            Err(error) => return Err(error),
        };
        file.write_all(keypair.private_hex().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        Ok(keypair)
    }
}

fn parse(path: &Path, text: &str) -> io::Result<KeyPair> {
    KeyPair::from_private_hex(text).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold a private key: {error}", path.display()),
        )
    })
}

/// Creates `path` (failing if it exists) readable by its owner only.
fn create_private(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mokosh-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = scratch("roundtrip");
        let path = dir.join("nested").join("server.key");
        let first = KeyPair::load_or_generate(&path).unwrap();
        let again = KeyPair::load_or_generate(&path).unwrap();
        assert_eq!(first.public(), again.public());
        assert_eq!(
            fs::read_to_string(&path).unwrap().trim(),
            first.private_hex()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("mode");
        let path = dir.join("server.key");
        KeyPair::load_or_generate(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_is_left_alone() {
        let dir = scratch("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.key");
        fs::write(&path, "not a key").unwrap();
        let error = KeyPair::load_or_generate(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key");
        fs::remove_dir_all(&dir).unwrap();
    }
}
