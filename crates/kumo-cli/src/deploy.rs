//! `kumo deploy`: a project directory to a server, in this order:
//! the project (made if new), its variables and secrets (so the code's
//! load check at deploy sees them), each function (packed, uploaded, its
//! dependency build followed), then its routes (when `kumo.toml` declares
//! any, they are the project's routes: others are removed).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kumo_client::{Client, ClientError};
use kumo_types::CreateRoute;

use crate::manifest::Manifest;
use crate::output::{BAD, DIM, GOOD, NOTE, paint, untrusted};
use crate::pack;

/// How a deploy behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Deploy this function only.
    pub only: Option<String>,
    /// Read secret values as `NAME=value` lines from standard input.
    pub secrets_from_stdin: bool,
    /// Ask for the values of secrets the server already has, to replace them.
    pub update_secrets: bool,
}

/// What a deploy did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Functions that did not go live (a refused deploy or a failed build).
    pub failed: Vec<String>,
    /// Functions whose code is new.
    pub deployed: Vec<String>,
    /// Functions whose code was already live.
    pub unchanged: Vec<String>,
}

fn spinner(message: String) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(message);
    bar
}

/// Deploys `manifest`'s project.
pub async fn run(
    client: &Client,
    manifest: &Manifest,
    options: &Options,
) -> anyhow::Result<Summary> {
    let project = &manifest.name;
    if let Some(only) = &options.only
        && !manifest.functions.contains_key(only)
    {
        let known: Vec<&str> = manifest.functions.keys().map(String::as_str).collect();
        anyhow::bail!(
            "{} has no function '{only}'{}",
            crate::manifest::FILE,
            crate::manifest::did_you_mean(only, &known)
        );
    }
    if manifest.functions.is_empty() {
        anyhow::bail!(
            "{} declares no function; add one like [functions.hello] with runtime = \"python\"",
            manifest.root.join(crate::manifest::FILE).display()
        );
    }
    ensure_project(client, project).await?;
    sync_env(client, manifest, options).await?;

    let mut summary = Summary::default();
    for (name, spec) in &manifest.functions {
        if options.only.as_ref().is_some_and(|o| o != name) {
            continue;
        }
        let dir = spec.dir(&manifest.root);
        let files = pack::collect(&manifest.root, &dir)
            .with_context(|| format!("collecting the files of {name} in {}", dir.display()))?;
        if files.is_empty() {
            anstream::eprintln!(
                "{} {name}: no files in {} (after .kumoignore)",
                paint(BAD, "✗"),
                dir.display()
            );
            summary.failed.push(name.clone());
            continue;
        }
        let archive = pack::tar_gz(&files)?;
        let bar = spinner(format!(
            "uploading {name} ({} files, {})",
            files.len(),
            size(archive.len())
        ));
        let answer = client
            .deploy_archive(project, name, archive, &spec.query())
            .await;
        bar.finish_and_clear();
        let deployed = match answer {
            Ok(d) => d,
            Err(e @ ClientError::Unreachable { .. })
            | Err(e @ ClientError::Unauthorized { .. }) => {
                return Err(e.into());
            }
            Err(e) => {
                // The server's answer may quote the function's code.
                let why = e.to_string();
                anstream::eprintln!("{} {name}: {}", paint(BAD, "✗"), untrusted(&why));
                summary.failed.push(name.clone());
                continue;
            }
        };
        match deployed.status {
            kumo_types::DeployStatus::Unchanged => {
                anstream::println!(
                    "{} {name} is unchanged (version {}), nothing to deploy  {}",
                    paint(DIM, "="),
                    deployed.version,
                    deployed.url
                );
                summary.unchanged.push(name.clone());
            }
            kumo_types::DeployStatus::Building => {
                let bar = spinner(format!(
                    "{name} version {}: installing its dependencies",
                    deployed.version
                ));
                let result = wait_for_build(client, project, name, deployed.version).await;
                bar.finish_and_clear();
                match result? {
                    Ok(active) => {
                        anstream::println!(
                            "{} {name} version {} {}  {}",
                            paint(GOOD, "✓"),
                            deployed.version,
                            if active {
                                "is live (dependencies installed)"
                            } else {
                                "is built (a newer version is live)"
                            },
                            deployed.url
                        );
                        summary.deployed.push(name.clone());
                    }
                    Err(why) => {
                        anstream::eprintln!(
                            "{} {name} version {}: the build failed; the previous version keeps serving\n{}",
                            paint(BAD, "✗"),
                            deployed.version,
                            indent(&untrusted(&why))
                        );
                        summary.failed.push(name.clone());
                    }
                }
            }
            kumo_types::DeployStatus::Active => {
                anstream::println!(
                    "{} {name} version {} is live  {}",
                    paint(GOOD, "✓"),
                    deployed.version,
                    deployed.url
                );
                summary.deployed.push(name.clone());
            }
        }
    }
    if options.only.is_none() && !manifest.routes.is_empty() {
        sync_routes(client, manifest).await?;
    }
    Ok(summary)
}

/// Makes the project if the server has none by that name.
async fn ensure_project(client: &Client, project: &str) -> anyhow::Result<()> {
    match client.project(project).await {
        Ok(_) => Ok(()),
        Err(e) if e.status() == Some(404) => match client.create_project(project).await {
            Ok(_) => Ok(()),
            // Made meanwhile by another deploy.
            Err(e) if e.status() == Some(409) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Sets the variables of `[env]` that differ, and the secrets the server
/// lacks (their values from the prompt or standard input). Every secret's
/// value is in hand before anything changes, so a deploy refused for a
/// missing secret has changed nothing.
async fn sync_env(client: &Client, manifest: &Manifest, options: &Options) -> anyhow::Result<()> {
    let project = &manifest.name;
    let existing = client.env(project).await?;
    let wanted: Vec<&String> = manifest
        .secrets
        .iter()
        .filter(|s| options.update_secrets || !existing.iter().any(|v| &v.key == *s))
        .collect();
    let from_stdin = if options.secrets_from_stdin && !wanted.is_empty() {
        read_secrets(std::io::stdin().lock())?
    } else {
        BTreeMap::new()
    };
    let mut secrets = Vec::with_capacity(wanted.len());
    for name in wanted {
        let value = match from_stdin.get(name.as_str()) {
            Some(v) => v.clone(),
            None if !options.secrets_from_stdin && std::io::stdin().is_terminal() => {
                rpassword::prompt_password(format!("value of the secret {name} (not shown): "))
                    .context("reading a secret")?
            }
            None => anyhow::bail!(
                "the secret {name} has no value on the server: give it with `kumo env set {name} --secret`, or deploy with --secrets-from-stdin and a line {name}=VALUE"
            ),
        };
        secrets.push((name, value));
    }
    for (key, value) in &manifest.env {
        let same = existing
            .iter()
            .any(|v| &v.key == key && !v.secret && &v.value == value);
        if !same {
            client.set_env(project, key, value, false).await?;
            anstream::println!("{} {key} set", paint(GOOD, "✓"));
        }
    }
    for (name, value) in secrets {
        client.set_env(project, name, &value, true).await?;
        anstream::println!("{} secret {name} set", paint(GOOD, "✓"));
    }
    Ok(())
}

/// `NAME=value` lines.
fn read_secrets(input: impl BufRead) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for line in input.lines() {
        let line = line.context("reading secrets from standard input")?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            anyhow::bail!("standard input: '{line}' is not NAME=value");
        };
        out.insert(name.trim().to_string(), value.to_string());
    }
    Ok(out)
}

/// Waits for a version's build: `Ok(active)`, or `Err` with the reason.
async fn wait_for_build(
    client: &Client,
    project: &str,
    function: &str,
    version: i64,
) -> anyhow::Result<Result<bool, String>> {
    loop {
        let d = client.deployment(project, function, version).await?;
        match d.status {
            kumo_types::DeploymentStatus::Building => {
                tokio::time::sleep(Duration::from_millis(400)).await
            }
            kumo_types::DeploymentStatus::Failed => {
                return Ok(Err(d.error.unwrap_or_else(|| "no reason given".into())));
            }
            _ => return Ok(Ok(d.active)),
        }
    }
}

/// Makes the server's routes those of the manifest.
async fn sync_routes(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    let project = &manifest.name;
    let existing = client.routes(project).await?;
    let wanted = |r: &kumo_types::Route| {
        manifest
            .routes
            .iter()
            .any(|m| m.method == r.method && m.path == r.path && m.function == r.function)
    };
    for route in existing.iter().filter(|r| !wanted(r)) {
        client.delete_route(project, &route.id).await?;
        anstream::println!(
            "{} route {} {} removed (not in {})",
            paint(NOTE, "-"),
            route.method,
            route.path,
            crate::manifest::FILE
        );
    }
    for route in &manifest.routes {
        let there = existing.iter().any(|r| {
            r.method == route.method && r.path == route.path && r.function == route.function
        });
        if there {
            continue;
        }
        let made = client
            .add_route(
                project,
                &CreateRoute {
                    method: route.method.clone(),
                    path: route.path.clone(),
                    function: route.function.clone(),
                },
            )
            .await
            .with_context(|| format!("adding the route {} {}", route.method, route.path))?;
        anstream::println!(
            "{} route {} {} → {}  {}",
            paint(GOOD, "✓"),
            made.method,
            made.path,
            made.function,
            made.url
        );
    }
    Ok(())
}

fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_input() {
        let got = read_secrets("# comment\nA=1\n\nB=x=y\r\n".as_bytes()).expect("valid");
        assert_eq!(got["A"], "1");
        assert_eq!(got["B"], "x=y");
        assert!(read_secrets("nonsense\n".as_bytes()).is_err());
    }
}
