//! `kumo dev`: the project served on this machine, by a Kumo server of
//! its own (the same gateway, runners, event contract and routes as a
//! real one, its data in `.kumo/dev`), redeployed when a file changes,
//! with every call's output printed as it happens. No server to set up.
//!
//! Functions run as plain processes unless `--sandbox` asks for the full
//! sandbox (which needs what `kumo serve` needs: Linux namespaces and
//! cgroups, as root). Variables come from `kumo.toml` and `.env`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use kumo_client::Client;
use kumo_types::LogsQuery;

use crate::manifest::Manifest;
use crate::output::{BAD, DIM, HEADING, NOTE, paint};

/// How `kumo dev` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The port to serve on, on 127.0.0.1 (0: any free one).
    pub port: u16,
    /// Run functions in the full sandbox rather than as plain processes.
    pub sandbox: bool,
    /// Redeploy when files change.
    pub watch: bool,
}

/// Serves the project at `manifest_path` until Ctrl-C.
pub async fn run(manifest_path: &Path, options: &Options) -> anyhow::Result<()> {
    let manifest = Manifest::read(manifest_path)?;
    let root = manifest.root.clone();
    let data_dir = root.join(".kumo").join("dev");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let token = dev_token(&data_dir)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{}", options.port))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let config = kumo_server::Config {
        data_dir: data_dir.clone(),
        bootstrap_token: Some(token.clone()),
        isolation: if options.sandbox {
            kumo_server::config::Isolation::Namespaces
        } else {
            kumo_server::config::Isolation::Process
        },
        executor: kumo_server::config::ExecutorSettings {
            prewarm: 1,
            ..Default::default()
        },
        quiet: true,
        // The developer's own pages, on a local server: served as they
        // will be on a functions origin, cookies and storage included.
        sandbox_function_pages: false,
        ..kumo_server::Config::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kumo_server::serve(config, listener, async move {
        let _ = stop_rx.await;
    }));
    let client = Client::new(&url, Some(token));
    wait_until_up(&client, &server).await?;
    anstream::println!(
        "{} {} on {url}{}",
        paint(HEADING, "kumo dev: serving"),
        manifest.name,
        if options.sandbox {
            String::new()
        } else {
            paint(
                DIM,
                "  (functions run as plain processes on this machine; --sandbox for the real sandbox)",
            )
        }
    );

    let mut followers = HashMap::new();
    deploy_once(&client, &manifest, &mut followers).await;
    anstream::println!(
        "{}",
        paint(
            DIM,
            if options.watch {
                "watching for changes; Ctrl-C stops"
            } else {
                "Ctrl-C stops"
            }
        )
    );

    let (changes_tx, mut changes_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let _watcher = if options.watch {
        Some(watch(&root, changes_tx)?)
    } else {
        None
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            changed = changes_rx.recv() => {
                if changed.is_none() {
                    break;
                }
                // Let a burst of saves settle.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while changes_rx.try_recv().is_ok() {}
                match Manifest::read(manifest_path) {
                    Ok(manifest) => {
                        anstream::println!("{}", paint(DIM, "change seen: deploying"));
                        deploy_once(&client, &manifest, &mut followers).await;
                    }
                    Err(e) => anstream::eprintln!("{} {e}", paint(BAD, "✗")),
                }
            }
        }
    }
    let _ = stop_tx.send(());
    for (_, f) in followers {
        f.abort();
    }
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) | Err(_) => Ok(()),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(e)) => Err(anyhow::anyhow!("the dev server failed: {e}")),
    }
}

/// The admin token of the dev server, made on first use (mode 0600).
fn dev_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("dev-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        return Ok(token.trim().to_string());
    }
    let bytes: [u8; 24] = rand::random();
    let token = format!("kumo_dev_{}", hex::encode(bytes));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    Ok(token)
}

async fn wait_until_up(
    client: &Client,
    server: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        if server.is_finished() {
            anyhow::bail!("the dev server stopped while starting (see the lines above)");
        }
        if client.me().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the dev server did not start within 30 s")
}

/// Sets `.env`'s variables, deploys, and follows the logs of functions
/// not followed yet.
async fn deploy_once(
    client: &Client,
    manifest: &Manifest,
    followers: &mut HashMap<String, tokio::task::JoinHandle<()>>,
) {
    if let Err(e) = apply_dotenv(client, manifest).await {
        anstream::eprintln!("{} {e:#}", paint(BAD, "✗"));
        return;
    }
    let options = crate::deploy::Options {
        only: None,
        secrets_from_stdin: false,
        update_secrets: false,
    };
    let mut dev_manifest = manifest.clone();
    // Secrets without a value in .env are left out here, with a note.
    dev_manifest.secrets.clear();
    match crate::deploy::run(client, &dev_manifest, &options).await {
        Ok(summary) => {
            for name in summary.deployed.iter().chain(&summary.unchanged) {
                if !followers.contains_key(name) {
                    let task = follow(client.clone(), manifest.name.clone(), name.clone());
                    followers.insert(name.clone(), task);
                }
            }
        }
        Err(e) => anstream::eprintln!("{} {e:#}", paint(BAD, "✗")),
    }
}

/// Prints a function's lines as its calls print them.
fn follow(client: Client, project: String, function: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let filter = LogsQuery {
            since: Some("0s".into()),
            ..LogsQuery::default()
        };
        let _ = client
            .follow_logs(&project, &function, &filter, |line| {
                anstream::println!(
                    "{} {}",
                    paint(NOTE, format!("[{function}]")),
                    crate::output::untrusted(&line.line)
                );
                true
            })
            .await;
    })
}

/// Variables of `kumo.toml` and `.env` (which wins), and secrets with a
/// value in `.env`.
async fn apply_dotenv(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    let dotenv = read_dotenv(&manifest.root.join(".env"))?;
    let existing = client.env(&manifest.name).await.unwrap_or_default();
    let mut wanted: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    for (k, v) in &manifest.env {
        wanted.insert(k, (v, false));
    }
    for (k, v) in &dotenv {
        let secret = manifest.secrets.contains(k);
        wanted.insert(k, (v, secret));
    }
    for secret in &manifest.secrets {
        if !dotenv.contains_key(secret) && !existing.iter().any(|v| &v.key == secret) {
            anstream::eprintln!(
                "{} the secret {secret} has no value: add {secret}=… to .env",
                paint(NOTE, "!")
            );
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    if client.project(&manifest.name).await.is_err() {
        client.create_project(&manifest.name).await?;
    }
    for (key, (value, secret)) in wanted {
        let same = existing
            .iter()
            .any(|v| v.key == key && !v.secret && !secret && v.value == value);
        if !same {
            client.set_env(&manifest.name, key, value, secret).await?;
        }
    }
    Ok(())
}

/// `KEY=value` lines (blank lines and `#` comments skipped, quotes around
/// a value removed, `export ` allowed).
pub fn read_dotenv(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            anyhow::bail!("{} line {}: expected KEY=value", path.display(), n + 1);
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.insert(key.trim().to_string(), value.to_string());
    }
    Ok(out)
}

/// Watches the project's files (not `.kumo`) and says when one is made,
/// changed or removed (reads are not changes: deploying reads every file).
fn watch(
    root: &Path,
    changes: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, Watcher};
    let ignored: PathBuf = root.join(".kumo");
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        let changed = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) && !matches!(
            event.kind,
            EventKind::Modify(notify::event::ModifyKind::Metadata(_))
        );
        if changed && event.paths.iter().any(|p| !p.starts_with(&ignored)) {
            let _ = changes.send(());
        }
    })
    .context("watching the project's files")?;
    watcher
        .watch(root, notify::RecursiveMode::Recursive)
        .with_context(|| format!("watching {}", root.display()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join(".env");
        std::fs::write(&path, "# local\nA=1\nexport B=\"two words\"\nC='x=y'\n\n").expect("write");
        let env = read_dotenv(&path).expect("valid");
        assert_eq!(env["A"], "1");
        assert_eq!(env["B"], "two words");
        assert_eq!(env["C"], "x=y");
        std::fs::write(&path, "nonsense\n").expect("write");
        assert!(
            read_dotenv(&path)
                .expect_err("invalid")
                .to_string()
                .contains("line 1")
        );
        assert!(
            read_dotenv(&dir.path().join("none"))
                .expect("absent")
                .is_empty()
        );
    }
}
