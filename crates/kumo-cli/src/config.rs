//! Where the command line finds its server: `KUMO_URL` and `KUMO_TOKEN`
//! (for CI), else the credentials `kumo login` stored in the user's
//! config directory (`credentials.toml`, mode 0600).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The server URL when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What `kumo login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub token: String,
}

/// The config directory: `KUMO_CONFIG_DIR`, else the platform's (on Linux
/// `$XDG_CONFIG_HOME/kumo` or `~/.config/kumo`).
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KUMO_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "kumo")
        .map(|d| d.config_dir().to_path_buf())
        .context("finding the config directory (set HOME or KUMO_CONFIG_DIR)")
}

fn file() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("credentials.toml"))
}

/// The stored credentials, if any.
pub fn load() -> anyhow::Result<Option<Credentials>> {
    let path = file()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .map(Some)
            .with_context(|| format!("reading {} (run `kumo login` again)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Stores credentials, readable by the user only.
pub fn save(credentials: &Credentials) -> anyhow::Result<PathBuf> {
    let path = file()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let text = toml::to_string(credentials)?;
    let tmp = path.with_extension("toml.tmp");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Forgets the stored credentials; `false` when there were none.
pub fn remove() -> anyhow::Result<bool> {
    let path = file()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The server and token to use: the environment's, else the stored ones.
pub fn current() -> anyhow::Result<Credentials> {
    let url = std::env::var("KUMO_URL").ok().filter(|u| !u.is_empty());
    let token = std::env::var("KUMO_TOKEN").ok().filter(|t| !t.is_empty());
    if let Some(token) = token {
        let stored_url = load().ok().flatten().map(|c| c.url);
        return Ok(Credentials {
            url: url
                .or(stored_url)
                .unwrap_or_else(|| DEFAULT_URL.to_string()),
            token,
        });
    }
    match load()? {
        Some(mut stored) => {
            if let Some(url) = url {
                stored.url = url;
            }
            Ok(stored)
        }
        None => anyhow::bail!("not logged in — run `kumo login` (or set KUMO_URL and KUMO_TOKEN)"),
    }
}
