//! Encryption of secret environment variables at rest.
//!
//! Secrets are sealed with XChaCha20-Poly1305 under one server key, with
//! a random 24-byte nonce per value (safe at random for this nonce size)
//! and the project id and variable name as associated data, so a sealed
//! value moved to another row or project does not open. The key never
//! lives in the database: it comes from `KUMO_SECRET_KEY` (base64 of 32
//! bytes) or from `secret.key` in the data directory, created at first
//! start with mode 0600.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngExt;

/// Where the key is kept when the environment does not give one.
pub(crate) const KEY_FILE: &str = "secret.key";
/// What marks a sealed value (and its format version).
const PREFIX: &str = "kumo1:";

pub(crate) struct Secrets {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(…)")
    }
}

impl Secrets {
    /// The key from `from_env` (base64) if given, else the data dir's key
    /// file, made on first use.
    pub(crate) fn load(data_dir: &Path, from_env: Option<&str>) -> anyhow::Result<Secrets> {
        let key: [u8; 32] = match from_env {
            Some(text) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .context("KUMO_SECRET_KEY is not base64")?;
                bytes.try_into().map_err(|_| {
                    anyhow::anyhow!("KUMO_SECRET_KEY must be 32 bytes (base64 of 32 random bytes)")
                })?
            }
            None => key_file(&data_dir.join(KEY_FILE))?,
        };
        Ok(Secrets {
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }

    /// `plain` sealed for `project_id`'s variable `name`.
    pub(crate) fn seal(&self, project_id: &str, name: &str, plain: &str) -> anyhow::Result<String> {
        let nonce: [u8; 24] = rand::rng().random();
        let aad = associated_data(project_id, name);
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting a secret failed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
        ))
    }

    /// The clear value of a sealed one.
    pub(crate) fn open(
        &self,
        project_id: &str,
        name: &str,
        sealed: &str,
    ) -> anyhow::Result<String> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(b)
                    .ok()
            })
            .filter(|b| b.len() >= 24 + 16)
            .ok_or_else(|| anyhow::anyhow!("secret {name} is not a sealed value"))?;
        let (nonce, body) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().expect("split at 24 bytes");
        let aad = associated_data(project_id, name);
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret {name} does not open with this server's key (was the key changed?)"
                )
            })?;
        String::from_utf8(plain).context("a secret is not UTF-8")
    }
}

fn associated_data(project_id: &str, name: &str) -> Vec<u8> {
    format!("kumo-env\0{project_id}\0{name}").into_bytes()
}

/// Reads the key file, or makes one (0600) if there is none.
fn key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the secret key file is readable by others; making it 0600");
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::rng().random();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(&key)?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created the key that encrypts secrets; back it up with the database");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let dir = tempfile::tempdir().expect("a directory");
        let secrets = Secrets::load(dir.path(), None).expect("a key");
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("the key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let sealed = secrets.seal("p1", "API_KEY", "hunter2").expect("sealed");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            secrets.seal("p1", "API_KEY", "hunter2").expect("sealed")
        );
        assert_eq!(
            secrets.open("p1", "API_KEY", &sealed).expect("opens"),
            "hunter2"
        );
        // Bound to its row: another name or project does not open it.
        assert!(secrets.open("p1", "OTHER", &sealed).is_err());
        assert!(secrets.open("p2", "API_KEY", &sealed).is_err());
        // The same key file opens it again; another key does not.
        let again = Secrets::load(dir.path(), None).expect("the same key");
        assert_eq!(
            again.open("p1", "API_KEY", &sealed).expect("opens"),
            "hunter2"
        );
        let other = Secrets::load(
            dir.path(),
            Some(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
        )
        .expect("a key from the environment");
        assert!(other.open("p1", "API_KEY", &sealed).is_err());
        assert!(Secrets::load(dir.path(), Some("c2hvcnQ=")).is_err());
    }
}
