//! The `kumo` command line's commands, over the typed API client.
//!
//! - [`manifest`]: `kumo.toml`, checked with the line of every mistake;
//! - [`pack`]: a function's files (honouring `.kumoignore`) as a `.tar.gz`;
//! - [`deploy`]: functions, variables, secrets and routes to a server;
//! - [`dev`]: a local server that serves the project and reloads on edits;
//! - [`commands`]: everything else (login, invoke, logs, status, pull…);
//! - [`config`], [`output`]: credentials, and output for people and scripts.
//!
//! The argument parsing is the binary's (`crates/kumo`); this crate takes
//! plain options and returns errors that say how to fix them.

pub mod commands;
pub mod config;
pub mod deploy;
pub mod dev;
pub mod manifest;
pub mod output;
pub mod pack;

use std::path::{Path, PathBuf};

use anyhow::Context;
use kumo_client::Client;

use crate::manifest::Manifest;

/// What every command that talks to a server starts from.
pub struct Session {
    pub client: Client,
    pub url: String,
}

impl Session {
    /// The server and token of the environment or of `kumo login`.
    pub fn open() -> anyhow::Result<Session> {
        let credentials = config::current()?;
        Ok(Session {
            client: Client::new(&credentials.url, Some(credentials.token)),
            url: credentials.url,
        })
    }
}

/// The project directory's manifest, if the current directory is in one.
pub fn manifest_here() -> anyhow::Result<Option<Manifest>> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(Manifest::find(&cwd)?)
}

/// The project a command is about: `--project`, else `kumo.toml`'s name.
pub fn project(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    match manifest_here()? {
        Some(m) => Ok(m.name),
        None => anyhow::bail!(
            "which project? run this in a directory with {} (see `kumo init`), or pass --project NAME",
            manifest::FILE
        ),
    }
}

/// `dir` made absolute against the current directory.
pub fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(dir))
}
