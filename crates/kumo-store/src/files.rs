//! Content-addressed function files.
//!
//! Every file is stored once under `blobs/<sha256[..2]>/<sha256>`, however
//! many deployments hold it. A deployment's manifest lists its paths and
//! hashes; [`FileStore::materialize`] lays a deployment out read-only under
//! `deployments/<id>/` for instances to use. Nothing here is ever inside an
//! instance's writable area.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub hash: String,
    pub size: u64,
    #[serde(default)]
    pub executable: bool,
}

/// The files of a deployment, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// A hash over every path, file hash and mode plus `extra` (the code
    /// settings), so equal deployments hash equal.
    pub fn content_hash(&self, extra: &[&str]) -> String {
        let mut hasher = Sha256::new();
        for part in extra {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for file in &self.files {
            hasher.update(file.path.as_bytes());
            hasher.update([0]);
            hasher.update(file.hash.as_bytes());
            hasher.update([u8::from(file.executable)]);
        }
        hex::encode(hasher.finalize())
    }
}

/// The on-disk file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    blobs: PathBuf,
    deployments: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    pub fn open(data_dir: &Path) -> Result<FileStore> {
        let blobs = data_dir.join("blobs");
        let deployments = data_dir.join("deployments");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        fs::create_dir_all(&deployments).map_err(io_err(&deployments))?;
        Ok(FileStore { blobs, deployments })
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.blobs.join(&hash[..2]).join(hash)
    }

    /// Stores `bytes` (once) and returns their SHA-256.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let hash = hex::encode(Sha256::digest(bytes));
        let path = self.blob_path(&hash);
        if path.exists() {
            return Ok(hash);
        }
        let dir = path.parent().unwrap_or(&self.blobs);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = dir.join(format!(".{}.{}", hash, crate::new_id()));
        let mut file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(hash)
    }

    /// Reads a stored file back.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Corrupt(format!("bad file hash '{hash}'")));
        }
        let path = self.blob_path(hash);
        fs::read(&path).map_err(io_err(&path))
    }

    /// The read-only directory holding a deployment's files (keyed by its
    /// content hash, so equal deployments share it), laid out on first use. Safe to call concurrently: the tree is built aside and
    /// renamed into place.
    pub fn materialize(&self, key: &str, manifest: &Manifest) -> Result<PathBuf> {
        let dir = self.deployments.join(key);
        if dir.exists() {
            return Ok(dir);
        }
        let tmp = self.deployments.join(format!(".{key}.{}", crate::new_id()));
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let result = (|| {
            for file in &manifest.files {
                let target = tmp.join(&file.path);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let bytes = self.get(&file.hash)?;
                fs::write(&target, bytes).map_err(io_err(&target))?;
                let mode = if file.executable { 0o555 } else { 0o444 };
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(io_err(&target))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(dir),
            // Another caller won the race; its tree is identical.
            Err(_) if dir.exists() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(dir)
            }
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Removes half-built trees left by a crash.
    pub fn clean_partial(&self) {
        if let Ok(entries) = fs::read_dir(&self.deployments) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedups_and_materializes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).expect("open");
        let a = store.put(b"print(1)\n").expect("put");
        let b = store.put(b"print(1)\n").expect("put");
        assert_eq!(a, b);
        assert_eq!(store.get(&a).expect("get"), b"print(1)\n");
        let manifest = Manifest {
            files: vec![
                FileEntry {
                    path: "main.py".into(),
                    hash: a.clone(),
                    size: 9,
                    executable: false,
                },
                FileEntry {
                    path: "lib/util.py".into(),
                    hash: a,
                    size: 9,
                    executable: true,
                },
            ],
        };
        let out = store.materialize("d1", &manifest).expect("materialize");
        assert_eq!(
            fs::read(out.join("lib/util.py")).expect("read"),
            b"print(1)\n"
        );
        let mode = fs::metadata(out.join("main.py"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        assert!(manifest.content_hash(&["python"]) != manifest.content_hash(&["node"]));
        assert!(store.get("../../etc/passwd").is_err());
    }
}
