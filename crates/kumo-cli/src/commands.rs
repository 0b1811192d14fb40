//! The commands other than `deploy` and `dev`: each takes plain options
//! and prints for people, or JSON with `json: true`.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::Context;
use kumo_client::Client;
use kumo_types::LogsQuery;
use kumo_types::{CreateRoute, Deployment, FunctionSettings, LogLine};

use crate::config::{self, Credentials};
use crate::manifest::{FunctionSpec, Manifest};
use crate::output::{self, BAD, DIM, GOOD, NOTE, paint};
use crate::{Session, pack};
use kumo_types::templates;

// ---------------------------------------------------------------- login

/// How `kumo login` authenticates.
#[derive(Debug, Clone, Default)]
pub struct Login {
    pub url: Option<String>,
    pub token: Option<String>,
    pub username: Option<String>,
    /// Read the password (or with `token` unset and no user, the token)
    /// from standard input.
    pub password_stdin: bool,
}

pub async fn login(options: Login) -> anyhow::Result<()> {
    let url = options
        .url
        .or_else(|| std::env::var("KUMO_URL").ok())
        .or_else(|| config::load().ok().flatten().map(|c| c.url))
        .unwrap_or_else(|| config::DEFAULT_URL.to_string());
    let url = url.trim_end_matches('/').to_string();
    let token = match (options.token, options.username) {
        (Some(token), _) => token,
        (None, Some(user)) => {
            let password = if options.password_stdin {
                read_line_from_stdin()?
            } else if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("password of {user} at {url}: "))
                    .context("reading the password")?
            } else {
                anyhow::bail!("no password: pass --password-stdin and write it to standard input");
            };
            Client::new(&url, None)
                .login(&user, &password)
                .await
                .with_context(|| format!("logging in to {url} as {user}"))?
        }
        (None, None) => {
            if options.password_stdin || !std::io::stdin().is_terminal() {
                read_line_from_stdin()?
            } else {
                rpassword::prompt_password(format!("API token for {url} (or use --username): "))
                    .context("reading the token")?
            }
        }
    };
    let me = Client::new(&url, Some(token.clone()))
        .me()
        .await
        .with_context(|| format!("checking the token with {url}"))?;
    let path = config::save(&Credentials {
        url: url.clone(),
        token,
    })?;
    anstream::println!(
        "{} logged in to {url} as {}  {}",
        paint(GOOD, "✓"),
        me.username,
        paint(DIM, format!("(saved in {})", path.display()))
    );
    Ok(())
}

fn read_line_from_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading standard input")?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        anyhow::bail!("standard input is empty");
    }
    Ok(line)
}

pub fn logout() -> anyhow::Result<()> {
    if config::remove()? {
        anstream::println!("{} logged out", paint(GOOD, "✓"));
    } else {
        anstream::println!("not logged in");
    }
    Ok(())
}

pub async fn whoami(json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let me = session.client.me().await?;
    if json {
        return output::json(&serde_json::json!({
            "url": session.url, "username": me.username, "admin": me.is_admin
        }));
    }
    anstream::println!(
        "{} at {}{}",
        me.username,
        session.url,
        if me.is_admin { " (admin)" } else { "" }
    );
    Ok(())
}

// ---------------------------------------------------------------- init

/// Writes a project from a template into `dir`.
pub fn init(dir: &Path, template: &str, name: Option<&str>, force: bool) -> anyhow::Result<()> {
    let Some(t) = templates::find(template) else {
        let names: Vec<&str> = templates::TEMPLATES.iter().map(|t| t.name).collect();
        anyhow::bail!(
            "no template '{template}'{}; the templates are: {}",
            crate::manifest::did_you_mean(template, &names),
            names.join(", ")
        );
    };
    let dir = crate::absolute(dir)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => project_name_from(&dir),
    };
    kumo_types::validate_name("project", &name)
        .map_err(|e| anyhow::anyhow!("{e} (pass --name NAME)"))?;
    let manifest_path = dir.join(crate::manifest::FILE);
    if manifest_path.exists() && !force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            manifest_path.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = vec![crate::manifest::FILE.to_string()];
    std::fs::write(&manifest_path, t.manifest.replace("{project}", &name))
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    for (path, body) in t.files {
        let target = dir.join(path);
        if target.exists() && !force {
            anstream::println!("{} {path} exists; left as it is", paint(NOTE, "!"));
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, body.replace("{project}", &name))
            .with_context(|| format!("writing {}", target.display()))?;
        written.push(path.to_string());
    }
    anstream::println!(
        "{} project {name} from the {} template: {}",
        paint(GOOD, "✓"),
        t.name,
        written.join(", ")
    );
    anstream::println!(
        "{}",
        paint(
            DIM,
            "next: `kumo dev` to run it here, `kumo deploy` to put it live"
        )
    );
    Ok(())
}

/// A project name from a directory's name: lower case, `-` for the rest.
fn project_name_from(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-').to_string();
    match name.chars().next() {
        Some(c) if c.is_ascii_lowercase() => name.chars().take(63).collect(),
        _ => format!("app-{name}")
            .trim_end_matches('-')
            .chars()
            .take(63)
            .collect(),
    }
}

pub fn list_templates() {
    let mut rows = vec![vec!["TEMPLATE".to_string(), "WHAT IT IS".to_string()]];
    for t in templates::TEMPLATES {
        rows.push(vec![t.name.to_string(), t.about.to_string()]);
    }
    output::table(&rows);
}

// ---------------------------------------------------------------- invoke

/// Calls a function through the API.
pub async fn invoke(
    project: &str,
    function: &str,
    data: Option<&str>,
    is_async: bool,
    verbose: bool,
    json: bool,
) -> anyhow::Result<bool> {
    let session = Session::open()?;
    let event: serde_json::Value = match data {
        Some(text) => serde_json::from_str(text).context("--data is not JSON")?,
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            if text.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&text).context("standard input is not JSON")?
            }
        }
        None => serde_json::json!({}),
    };
    if is_async {
        let accepted = session
            .client
            .invoke_async(project, function, &event)
            .await?;
        if json {
            output::json(&accepted)?;
        } else {
            anstream::println!(
                "{} queued as run {}  {}",
                paint(GOOD, "✓"),
                accepted.id,
                paint(DIM, format!("(kumo logs {function} --run {})", accepted.id))
            );
        }
        return Ok(true);
    }
    let run = session.client.invoke(project, function, &event).await?;
    let ok = run.status == kumo_types::RunStatus::Succeeded;
    if json {
        output::json(&run)?;
        return Ok(ok);
    }
    if verbose || !ok {
        if !run.logs.is_empty() {
            anstream::eprint!("{}", paint(DIM, output::untrusted(&run.logs)));
        }
        anstream::eprintln!(
            "{} run {} {} in {:.1} ms{}{}",
            if ok {
                paint(GOOD, "✓")
            } else {
                paint(BAD, "✗")
            },
            run.id,
            run.status.as_str(),
            run.duration_ms,
            if run.cold_start { ", cold start" } else { "" },
            run.version
                .map(|v| format!(", version {v}"))
                .unwrap_or_default()
        );
    }
    if let Some(error) = &run.error {
        anstream::eprintln!(
            "{}: {}",
            paint(BAD, output::untrusted(&error.kind)),
            output::untrusted(&error.message)
        );
        if !error.traceback.is_empty() {
            anstream::eprintln!("{}", output::untrusted(error.traceback.trim_end()));
        }
    }
    match &run.output {
        // As returned when written to a file or a pipe; escaped for a
        // terminal. (JSON escapes control characters itself.)
        Some(serde_json::Value::String(s)) if std::io::stdout().is_terminal() => {
            println!("{}", output::untrusted(s))
        }
        Some(serde_json::Value::String(s)) => println!("{s}"),
        Some(value) => println!("{}", serde_json::to_string_pretty(value)?),
        None => {}
    }
    Ok(ok)
}

// ---------------------------------------------------------------- logs

pub async fn logs(
    project: &str,
    function: &str,
    filter: LogsQuery,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let session = Session::open()?;
    let print = |line: &LogLine| {
        if json {
            if let Ok(text) = serde_json::to_string(line) {
                println!("{text}");
            }
            return;
        }
        let stream = if line.stream == "stderr" {
            paint(NOTE, "err")
        } else {
            paint(DIM, "out")
        };
        let short_run: String = line
            .run_id
            .chars()
            .rev()
            .take(6)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        anstream::println!(
            "{} {} {stream} {}",
            paint(DIM, output::time(line.time)),
            paint(DIM, short_run),
            output::untrusted(&line.line)
        );
    };
    if follow {
        session
            .client
            .follow_logs(project, function, &filter, |line| {
                print(&line);
                true
            })
            .await?;
        return Ok(());
    }
    let page = session.client.logs(project, function, &filter).await?;
    for line in &page.items {
        print(line);
    }
    Ok(())
}

// ---------------------------------------------------------------- ls

pub async fn ls(project: Option<&str>, json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let projects = match project {
        Some(p) => vec![p.to_string()],
        None => session
            .client
            .projects()
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect(),
    };
    let mut all = Vec::new();
    for p in &projects {
        all.extend(session.client.functions(p).await?);
    }
    if json {
        return output::json(&all);
    }
    if all.is_empty() {
        anstream::println!("no functions yet: `kumo init` then `kumo deploy`");
        return Ok(());
    }
    let mut rows = vec![
        [
            "PROJECT",
            "FUNCTION",
            "RUNTIME",
            "VERSION",
            "VISIBILITY",
            "URL",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for f in all {
        rows.push(vec![
            f.project,
            f.name,
            f.runtime,
            f.active_version.map_or("-".into(), |v| v.to_string()),
            f.settings.visibility.as_str().into(),
            f.url,
        ]);
    }
    output::table(&rows);
    Ok(())
}

// ---------------------------------------------------------------- status

pub async fn status(project: &str, function: &str, json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let client = &session.client;
    let f = client.function(project, function).await?;
    let versions = client.deployments(project, function).await?;
    let metrics = client.metrics(project, function, "1h").await?;
    let last = client.invocations(project, function, 1).await?;
    if json {
        return output::json(&serde_json::json!({
            "function": f, "versions": versions, "last_hour": metrics.totals,
            "last_call": last.first(),
        }));
    }
    let instances = f.instances.unwrap_or_default();
    // The API's words: `busy` (serving calls), `idle` (waiting for the
    // next); none at all is a function scaled to zero.
    let state = if instances.busy > 0 {
        paint(
            GOOD,
            format!("{} busy, {} idle", instances.busy, instances.idle),
        )
    } else if instances.idle > 0 {
        paint(GOOD, format!("{} idle", instances.idle))
    } else {
        paint(DIM, "none (scaled to zero)")
    };
    let t = &metrics.totals;
    anstream::println!(
        "{}  {}",
        paint(output::HEADING, format!("{project}/{function}")),
        f.url
    );
    anstream::println!(
        "  runtime      {} ({})",
        f.runtime,
        f.settings.visibility.as_str()
    );
    anstream::println!(
        "  version      {}{}",
        f.active_version.map_or("none".into(), |v| v.to_string()),
        if versions.len() > 1 {
            format!(" of {}", versions.len())
        } else {
            String::new()
        }
    );
    anstream::println!("  instances    {state}");
    anstream::println!(
        "  last call    {}",
        last.first()
            .map(|r| format!(
                "{} ({}, {:.1} ms)",
                output::ago(r.created_at),
                r.status.as_str(),
                r.duration_ms
            ))
            .unwrap_or_else(|| "never".into())
    );
    let rate = if t.calls > 0 {
        format!("{:.1}%", 100.0 * t.errors as f64 / t.calls as f64)
    } else {
        "-".into()
    };
    anstream::println!(
        "  last hour    {} calls, {} errors ({rate}), {} cold, p50 {} p99 {}",
        t.calls,
        t.errors,
        t.cold_starts,
        ms(t.duration_ms.p50),
        ms(t.duration_ms.p99)
    );
    anstream::println!(
        "  limits       {} MiB, {} ms timeout, concurrency {}",
        f.settings.memory_mb,
        f.settings.timeout_ms,
        f.settings.concurrency
    );
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

// ---------------------------------------------------------------- rm

pub async fn rm(project: &str, function: &str, yes: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    // A clear "not found" before asking anything.
    session.client.function(project, function).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "removing {project}/{function} deletes its versions and runs; pass --yes to confirm"
            );
        }
        anstream::print!("delete {project}/{function} with all its versions and runs? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anstream::println!("nothing deleted");
            return Ok(());
        }
    }
    session.client.delete_function(project, function).await?;
    anstream::println!("{} {project}/{function} deleted", paint(GOOD, "✓"));
    Ok(())
}

// ---------------------------------------------------------------- pull

/// Writes a function's active version and a `kumo.toml` for it into `dir`.
pub async fn pull(project: &str, function: &str, dir: &Path) -> anyhow::Result<()> {
    let session = Session::open()?;
    let client = &session.client;
    let f = client.function(project, function).await?;
    let Some(version) = f.active_version else {
        anyhow::bail!("{project}/{function} has no active version to pull");
    };
    let deployment = client.deployment(project, function, version).await?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        anyhow::bail!(
            "{} is not empty; pull into a new or empty directory",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let archive = client.deployment_files(project, function, version).await?;
    let written = pack::unpack(&archive, dir)?;
    let spec = FunctionSpec {
        runtime: deployment.runtime.clone(),
        entrypoint: Some(deployment.entrypoint.clone()),
        handler: (deployment.handler != "handler").then(|| deployment.handler.clone()),
        dir: None,
        settings: f.settings.given(),
    };
    let manifest = Manifest {
        root: dir.to_path_buf(),
        name: project.to_string(),
        functions: [(function.to_string(), spec)].into_iter().collect(),
        routes: Vec::new(),
        env: Default::default(),
        secrets: Vec::new(),
    };
    let manifest_path = dir.join(crate::manifest::FILE);
    if !written.iter().any(|p| p == crate::manifest::FILE) {
        std::fs::write(&manifest_path, manifest.to_toml())
            .with_context(|| format!("writing {}", manifest_path.display()))?;
    }
    anstream::println!(
        "{} {project}/{function} version {version}: {} files in {}",
        paint(GOOD, "✓"),
        written.len(),
        dir.display()
    );
    Ok(())
}

// ---------------------------------------------------------------- versions

pub async fn versions(project: &str, function: &str, json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let versions = session.client.deployments(project, function).await?;
    if json {
        return output::json(&versions);
    }
    let mut rows = vec![
        ["VERSION", "STATUS", "RUNTIME", "FILES", "DEPLOYED", "HASH"]
            .map(String::from)
            .to_vec(),
    ];
    for d in &versions {
        rows.push(vec![
            format!("{}{}", d.version, if d.active { " *" } else { "" }),
            d.status.as_str().to_string(),
            d.runtime.clone(),
            d.file_count.to_string(),
            output::time(d.created_at),
            d.content_hash.chars().take(12).collect(),
        ]);
    }
    output::table(&rows);
    Ok(())
}

// ---------------------------------------------------------------- rollback

/// Activates `version`, or the newest good version before the active one.
pub async fn rollback(project: &str, function: &str, version: Option<i64>) -> anyhow::Result<()> {
    let session = Session::open()?;
    let client = &session.client;
    let f = client.function(project, function).await?;
    let versions = client.deployments(project, function).await?;
    let target = match version {
        Some(v) => v,
        None => previous(&versions, f.active_version).ok_or_else(|| {
            anyhow::anyhow!("{project}/{function} has no earlier version to roll back to")
        })?,
    };
    if Some(target) == f.active_version {
        anstream::println!("version {target} is already active");
        return Ok(());
    }
    if client.activate(project, function, target).await? {
        anstream::println!(
            "{} {project}/{function} is at version {target}",
            paint(GOOD, "✓")
        );
    } else {
        anstream::println!(
            "{} version {target}'s dependencies are being installed again; it goes live when they are",
            paint(NOTE, "…")
        );
    }
    Ok(())
}

/// The newest ready version older than `active`.
fn previous(versions: &[Deployment], active: Option<i64>) -> Option<i64> {
    versions
        .iter()
        .filter(|d| {
            d.status == kumo_types::DeploymentStatus::Ready && active.is_none_or(|a| d.version < a)
        })
        .map(|d| d.version)
        .max()
}

// ---------------------------------------------------------------- env

pub async fn env_set(
    project: &str,
    key: &str,
    value: Option<&str>,
    secret: bool,
) -> anyhow::Result<()> {
    let session = Session::open()?;
    let value = match value {
        Some(v) => v.to_string(),
        None if std::io::stdin().is_terminal() => rpassword::prompt_password(format!(
            "value of {key}{}: ",
            if secret { " (not shown)" } else { "" }
        ))
        .context("reading the value")?,
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.strip_suffix('\n').unwrap_or(&text).to_string()
        }
    };
    let var = session.client.set_env(project, key, &value, secret).await?;
    anstream::println!(
        "{} {}{} set for {project}",
        paint(GOOD, "✓"),
        var.key,
        if var.secret { " (secret)" } else { "" }
    );
    Ok(())
}

pub async fn env_ls(project: &str, json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let vars = session.client.env(project).await?;
    if json {
        return output::json(&vars);
    }
    let mut rows = vec![["KEY", "VALUE", "SECRET"].map(String::from).to_vec()];
    for v in vars {
        rows.push(vec![
            v.key,
            v.value,
            if v.secret {
                "yes".into()
            } else {
                String::new()
            },
        ]);
    }
    output::table(&rows);
    Ok(())
}

pub async fn env_rm(project: &str, key: &str) -> anyhow::Result<()> {
    let session = Session::open()?;
    session.client.delete_env(project, key).await?;
    anstream::println!("{} {key} removed from {project}", paint(GOOD, "✓"));
    Ok(())
}

// ---------------------------------------------------------------- routes

pub async fn routes_ls(project: &str, json: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let routes = session.client.routes(project).await?;
    if json {
        return output::json(&routes);
    }
    let mut rows = vec![
        ["ID", "METHOD", "PATH", "FUNCTION", "URL"]
            .map(String::from)
            .to_vec(),
    ];
    for r in routes {
        rows.push(vec![r.id, r.method, r.path, r.function, r.url]);
    }
    output::table(&rows);
    Ok(())
}

pub async fn routes_add(
    project: &str,
    method: &str,
    path: &str,
    function: &str,
) -> anyhow::Result<()> {
    let session = Session::open()?;
    let route = session
        .client
        .add_route(
            project,
            &CreateRoute {
                method: method.to_string(),
                path: path.to_string(),
                function: function.to_string(),
            },
        )
        .await?;
    anstream::println!(
        "{} {} {} → {}  {}  {}",
        paint(GOOD, "✓"),
        route.method,
        route.path,
        route.function,
        route.url,
        paint(DIM, format!("(id {})", route.id))
    );
    Ok(())
}

pub async fn routes_rm(project: &str, id: &str) -> anyhow::Result<()> {
    let session = Session::open()?;
    session.client.delete_route(project, id).await?;
    anstream::println!("{} route {id} removed", paint(GOOD, "✓"));
    Ok(())
}

// ---------------------------------------------------------------- open

/// Prints a function's URL and opens it in a browser (unless `print_only`).
pub async fn open(project: &str, function: &str, print_only: bool) -> anyhow::Result<()> {
    let session = Session::open()?;
    let f = session.client.function(project, function).await?;
    println!("{}", f.url);
    if !print_only {
        for opener in ["xdg-open", "open"] {
            if std::process::Command::new(opener)
                .arg(&f.url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
    }
    Ok(())
}

/// Settings changes (`kumo status` shows them; `kumo.toml` sets them).
pub async fn set(project: &str, function: &str, settings: &FunctionSettings) -> anyhow::Result<()> {
    let session = Session::open()?;
    session
        .client
        .update_function(project, function, settings)
        .await?;
    anstream::println!("{} {project}/{function} updated", paint(GOOD, "✓"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_directories() {
        assert_eq!(project_name_from(Path::new("/x/My Shop_2")), "my-shop-2");
        assert_eq!(project_name_from(Path::new("/x/2fast")), "app-2fast");
        assert_eq!(project_name_from(Path::new("/")), "app");
    }
}
