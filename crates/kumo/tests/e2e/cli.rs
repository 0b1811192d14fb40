//! The `kumo` command line, run as a real process against a real server:
//! login, init, dev, deploy, invoke, logs, rollback, pull, rm, and what
//! it says when something is wrong.
//!
//! Every test gets its own config directory (`KUMO_CONFIG_DIR`) and
//! project directory, and none of the caller's `KUMO_*` settings.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::support::{TOKEN, TestServer, clear_kumo_env, wait_for};

/// Any one command; a deploy with no dependencies takes well under this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A user of the command line: a config directory of their own.
struct User {
    config: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What a finished command did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts exit status 0; returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "the command failed: {self:#?}");
        &self.stdout
    }

    /// Asserts exit status 1 and that stderr says `what`; returns stderr.
    #[track_caller]
    fn fails_saying(&self, what: &str) -> &str {
        assert_eq!(self.code, Some(1), "expected exit status 1: {self:#?}");
        assert!(
            self.stderr.contains(what),
            "stderr does not say {what:?}: {self:#?}"
        );
        &self.stderr
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

impl User {
    fn new() -> User {
        User {
            config: tempfile::Builder::new()
                .prefix("kumo-cli-config-")
                .tempdir()
                .expect("a config directory"),
            env: Vec::new(),
        }
    }

    /// The same user with `KUMO_URL`/`KUMO_TOKEN`-style overrides.
    fn with_env(mut self, key: &str, value: &str) -> User {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kumo"));
        command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        clear_kumo_env(&mut command);
        command.env("KUMO_CONFIG_DIR", self.config.path());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    /// `kumo invoke hello` with `?name=NAME`: its output, as JSON.
    async fn greet(&self, dir: &Path, name: &str) -> Value {
        let event = serde_json::json!({"query": {"name": name}}).to_string();
        let ran = self.run(dir, &["invoke", "hello", "--data", &event]).await;
        serde_json::from_str(ran.ok())
            .unwrap_or_else(|e| panic!("the output is not JSON ({e}): {ran:#?}"))
    }

    async fn run(&self, dir: &Path, args: &[&str]) -> Ran {
        self.run_with_stdin(dir, args, None).await
    }

    async fn run_with_stdin(&self, dir: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut command = self.command(dir, args);
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawning kumo");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(text.as_bytes())
                .await
                .expect("writing to kumo's stdin");
            drop(pipe);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kumo {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
            .expect("waiting for kumo");
        Ran {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A long-running command (`kumo dev`, `kumo logs --follow`) whose stdout
/// lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(user: &User, dir: &Path, args: &[&str]) -> Running {
        let mut child = user.command(dir, args).spawn().expect("spawning kumo");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on for which `pick` gives something.
    async fn line<T>(&mut self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                let found = pick(&line);
                self.seen.push(line);
                if let Some(found) = found {
                    return Some(found);
                }
            }
            None
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, wait).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                let stderr = self.stderr().await;
                panic!(
                    "stdout ended before {what}; it said {:#?}; stderr: {stderr}",
                    self.seen
                )
            }
            Err(_) => panic!(
                "no {what} within {COMMAND_TIMEOUT:?}; stdout: {:#?}",
                self.seen
            ),
        }
    }

    async fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text),
            )
            .await;
        }
        text
    }

    /// Sends `signal` and waits for the exit status.
    async fn stop(mut self, signal: nix::sys::signal::Signal) -> Option<i32> {
        let pid = self.child.id().expect("still running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
        nix::sys::signal::kill(pid, signal).expect("signalling kumo");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("kumo exits after the signal")
            .expect("waiting for kumo");
        status.code()
    }
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("creating a directory");
    }
    std::fs::write(path, text).expect("writing a file");
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a directory")
}

/// The files under `dir` (relative path → contents), `kumo.toml` and
/// `.kumo/` aside.
fn files(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, at: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(at).expect("reading a directory") {
            let path = entry.expect("an entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            if rel == "kumo.toml" || rel == ".kumo" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push((rel, std::fs::read_to_string(&path).expect("a text file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `http://127.0.0.1:PORT` in `kumo dev`'s "serving" line.
fn dev_url(line: &str) -> Option<String> {
    if !line.contains("kumo dev: serving") {
        return None;
    }
    let at = line.find("http://")?;
    let url = line[at..].split_whitespace().next()?;
    Some(url.to_string())
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// The whole path a developer walks: init → dev (answered locally, an edit
/// picked up) → deploy → invoke → logs --follow → rollback → pull into an
/// empty directory → rm.
#[tokio::test]
async fn init_dev_deploy_invoke_logs_rollback_pull_rm() {
    let server = TestServer::start().await;
    let user = User::new();
    let home = temp_dir("kumo-cli-home-");
    let project = home.path().join("greeter");

    // Log in with the admin's user name and password.
    let password = format!("{}\n", server.admin_password);
    let login = user
        .run_with_stdin(
            home.path(),
            &[
                "login",
                "--url",
                &server.url(""),
                "--username",
                "admin",
                "--password-stdin",
            ],
            Some(&password),
        )
        .await;
    login.ok();
    let credentials = user.config.path().join("credentials.toml");
    let mode = std::fs::metadata(&credentials)
        .expect("login stored the credentials")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are the user's only");
    let me = user.run(home.path(), &["whoami", "--json"]).await.json();
    assert_eq!(me["username"], "admin", "{me}");

    // init: a project from the Python template.
    user.run(
        home.path(),
        &[
            "init",
            "greeter",
            "--template",
            "python",
            "--name",
            "greeter",
        ],
    )
    .await
    .ok();
    for file in ["kumo.toml", "main.py", ".kumoignore"] {
        assert!(project.join(file).is_file(), "init wrote {file}");
    }
    let manifest = std::fs::read_to_string(project.join("kumo.toml")).expect("kumo.toml");
    assert!(manifest.contains("name = \"greeter\""), "{manifest}");
    // A data file deployed with the code, and a file .kumoignore leaves out.
    write(&project.join("data/greeting.txt"), "hello");
    write(&project.join("debug.log"), "not deployed");
    write(&project.join(".env"), "# local only\nWHO=from-dotenv\n");
    let v1 = "import pathlib\n\n\
        GREETING = pathlib.Path(__file__).with_name('data').joinpath('greeting.txt').read_text()\n\n\
        def handler(event, context):\n\
        \x20   name = event.get('query', {}).get('name', 'world')\n\
        \x20   print(f'greeting {name}')\n\
        \x20   return {GREETING: name}\n";
    write(&project.join("main.py"), v1);
    // A second init would overwrite the project: refused without --force.
    user.run(&project, &["init"]).await.fails_saying("--force");

    // dev: served locally, no server needed; an edit is picked up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let mut dev = Running::start(&user, &project, &["dev", "--port", "0"]);
    let base = dev.line("the serving line", dev_url).await;
    dev.line("the dev deploy", |l| {
        l.contains("hello version 1 is live").then_some(())
    })
    .await;
    let url = format!("{base}/fn/greeter/hello?name=dev");
    let answer = wait_for("the dev server to answer", COMMAND_TIMEOUT, async || {
        get_json(&http, &url).await
    })
    .await;
    assert_eq!(answer, serde_json::json!({"hello": "dev"}));
    dev.line("the call's log line", |l| {
        (l.contains("[hello]") && l.contains("greeting dev")).then_some(())
    })
    .await;
    write(
        &project.join("main.py"),
        &v1.replace(
            "{GREETING: name}",
            "{GREETING: name, 'edited': True, 'who': __import__('os').environ.get('WHO')}",
        ),
    );
    let edited = wait_for("the edit to be served", COMMAND_TIMEOUT, async || {
        get_json(&http, &url)
            .await
            .filter(|v| v["edited"] == Value::Bool(true))
    })
    .await;
    assert_eq!(edited["hello"], "dev");
    assert_eq!(
        edited["who"], "from-dotenv",
        "dev takes variables from .env"
    );
    let code = dev.stop(nix::sys::signal::Signal::SIGINT).await;
    assert_eq!(code, Some(0), "kumo dev exits cleanly on Ctrl-C");
    assert!(
        project.join(".kumo/dev").is_dir(),
        "dev keeps its state in .kumo/dev"
    );
    write(&project.join("main.py"), v1);

    // deploy: version 1 goes live and the URL is printed; again is a no-op.
    let deployed = user.run(&project, &["deploy"]).await;
    let out = deployed.ok();
    assert!(out.contains("hello version 1 is live"), "{deployed:#?}");
    assert!(
        out.contains(&server.url("/fn/greeter/hello")),
        "the live URL is printed: {deployed:#?}"
    );
    let again = user.run(&project, &["deploy"]).await;
    assert!(
        again.ok().contains("unchanged"),
        "an unchanged deploy says so: {again:#?}"
    );

    // invoke: the output on stdout; --verbose adds the logs and the run.
    let output = user.greet(&project, "cli").await;
    assert_eq!(output, serde_json::json!({"hello": "cli"}));
    let verbose = user.run(&project, &["invoke", "hello", "--verbose"]).await;
    verbose.ok();
    assert!(
        verbose.stderr.contains("greeting world") && verbose.stderr.contains("succeeded"),
        "{verbose:#?}"
    );
    let piped = user
        .run_with_stdin(
            &project,
            &["invoke", "hello", "--json"],
            Some(r#"{"query": {"name": "stdin"}}"#),
        )
        .await
        .json();
    assert_eq!(piped["output"]["hello"], "stdin", "{piped}");
    assert_eq!(piped["status"], "succeeded", "{piped}");

    // logs --follow: a new call's line arrives while following.
    let mut follow = Running::start(&user, &project, &["logs", "hello", "--follow"]);
    // Lines already there come first; then the new call's.
    follow
        .line("an earlier line", |l| {
            l.contains("greeting cli").then_some(())
        })
        .await;
    user.greet(&project, "followed").await;
    follow
        .line("the followed call's line", |l| {
            l.contains("greeting followed").then_some(())
        })
        .await;
    follow.stop(nix::sys::signal::Signal::SIGTERM).await;
    let listed = user
        .run(&project, &["logs", "hello", "--since", "1h"])
        .await;
    assert!(listed.ok().contains("greeting followed"), "{listed:#?}");

    // A second version, then rollback to the first.
    write(
        &project.join("main.py"),
        &v1.replace("{GREETING: name}", "{'v2': name}"),
    );
    user.run(&project, &["deploy"]).await.ok();
    let v2 = user.greet(&project, "x").await;
    assert_eq!(v2, serde_json::json!({"v2": "x"}));
    let status = user
        .run(&project, &["status", "hello", "--json"])
        .await
        .json();
    assert_eq!(status["function"]["active_version"], 2, "{status}");
    assert_eq!(
        status["versions"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    user.run(&project, &["rollback", "hello"]).await.ok();
    let back = user.greet(&project, "x").await;
    assert_eq!(back, serde_json::json!({"hello": "x"}), "version 1 again");
    let versions = user
        .run(&project, &["versions", "hello", "--json"])
        .await
        .json();
    let active: Vec<i64> = versions
        .as_array()
        .expect("a list of versions")
        .iter()
        .filter(|v| v["active"] == Value::Bool(true))
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(active, vec![1], "{versions}");

    // pull into an empty directory: the live version's files, exactly.
    let pulled = home.path().join("pulled");
    std::fs::create_dir(&pulled).expect("an empty directory");
    user.run(
        &project,
        &["pull", "hello", pulled.to_str().expect("UTF-8")],
    )
    .await
    .ok();
    let mut expected = files(&project);
    expected.retain(|(path, _)| !["debug.log", ".kumoignore", ".env"].contains(&path.as_str()));
    for (path, text) in &mut expected {
        if path == "main.py" {
            *text = v1.to_string();
        }
    }
    assert_eq!(
        files(&pulled),
        expected,
        "pull reproduces version 1's files"
    );
    let redeploy = user.run(&pulled, &["deploy"]).await;
    assert!(
        redeploy.ok().contains("unchanged"),
        "the pulled kumo.toml and files deploy as the same code: {redeploy:#?}"
    );
    // Not into a directory that has files.
    user.run(
        &project,
        &["pull", "hello", pulled.to_str().expect("UTF-8")],
    )
    .await
    .fails_saying("not empty");

    // rm: asks first (and refuses without a terminal), --yes deletes.
    user.run(&project, &["rm", "hello"])
        .await
        .fails_saying("--yes");
    user.run(&project, &["rm", "hello", "--yes"]).await.ok();
    let api = kumo_client::Client::new(&server.url(""), Some(TOKEN.to_string()));
    let gone = api
        .function("greeter", "hello")
        .await
        .expect_err("the function is deleted");
    assert_eq!(gone.status(), Some(404), "{gone}");
    user.run(&project, &["invoke", "hello"])
        .await
        .fails_saying("hello");
    let ls = user.run(&project, &["ls", "--json"]).await.json();
    assert_eq!(ls.as_array().map(Vec::len), Some(0), "{ls}");

    // logout: the other commands then say how to log in.
    user.run(&project, &["logout"]).await.ok();
    assert!(!credentials.exists(), "logout removes the credentials");
    user.run(&project, &["ls"])
        .await
        .fails_saying("not logged in — run `kumo login`");
}

/// No server, a bad token, a bad kumo.toml, unknown functions, bad input:
/// each fails with exit status 1 and says what to do.
#[tokio::test]
async fn errors_say_what_is_wrong_and_how_to_fix_it() {
    let server = TestServer::start().await;
    let dir = temp_dir("kumo-cli-errors-");
    let here = dir.path();

    // Not logged in.
    User::new()
        .run(here, &["whoami"])
        .await
        .fails_saying("not logged in — run `kumo login`");

    // No server there.
    let nobody = User::new()
        .with_env("KUMO_URL", "http://127.0.0.1:1")
        .with_env("KUMO_TOKEN", TOKEN);
    nobody
        .run(here, &["ls"])
        .await
        .fails_saying("cannot reach the Kumo server at http://127.0.0.1:1");

    // A token the server does not know.
    let bad_token = User::new()
        .with_env("KUMO_URL", &server.url(""))
        .with_env("KUMO_TOKEN", "kumo_not_a_real_token_0000000000000000");
    bad_token
        .run(here, &["whoami"])
        .await
        .fails_saying("run `kumo login` again");

    // A wrong password stores nothing.
    let user = User::new();
    user.run_with_stdin(
        here,
        &[
            "login",
            "--url",
            &server.url(""),
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("wrong password\n"),
    )
    .await
    .fails_saying("error:");
    assert!(!user.config.path().join("credentials.toml").exists());

    // KUMO_URL and KUMO_TOKEN are enough (CI).
    let ci = User::new()
        .with_env("KUMO_URL", &server.url(""))
        .with_env("KUMO_TOKEN", TOKEN);
    ci.run(here, &["whoami"]).await.ok();

    // A misspelt runtime, with its line and a suggestion.
    write(
        &here.join("kumo.toml"),
        "name = \"broken\"\n\n[functions.hello]\nruntime = \"pyton\"\nentrypoint = \"main.py\"\n",
    );
    write(
        &here.join("main.py"),
        "def handler(event, context):\n    return 1\n",
    );
    for args in [&["deploy"][..], &["dev", "--port", "0"]] {
        ci.run(here, args)
            .await
            .fails_saying("kumo.toml line 4: unknown runtime 'pyton' (did you mean 'python'?)");
    }
    // An unknown key, and TOML that does not parse.
    write(
        &here.join("kumo.toml"),
        "name = \"broken\"\n\n[functions.hello]\nruntime = \"python\"\nentrypont = \"main.py\"\n",
    );
    ci.run(here, &["deploy"]).await.fails_saying("line 5");
    write(&here.join("kumo.toml"), "name = \"broken\n");
    ci.run(here, &["deploy"]).await.fails_saying("kumo.toml");
    // A secret's value never lives in kumo.toml.
    write(
        &here.join("kumo.toml"),
        "name = \"broken\"\nsecrets = [\"API_KEY\"]\n[env]\nAPI_KEY = \"sk-123\"\n[functions.hello]\nruntime = \"python\"\nentrypoint = \"main.py\"\n",
    );
    ci.run(here, &["deploy"])
        .await
        .fails_saying("a secret's value never goes in kumo.toml");
    // No kumo.toml at all.
    let empty = temp_dir("kumo-cli-empty-");
    ci.run(empty.path(), &["deploy"])
        .await
        .fails_saying("kumo init");
    // A template that does not exist.
    ci.run(empty.path(), &["init", "--template", "pythn"])
        .await
        .fails_saying("python");

    // A project with a function that fails.
    server
        .deploy(
            "default",
            "boom",
            &[(
                "main.py",
                "def handler(event, context):\n    raise ValueError('kaboom')\n",
            )],
            serde_json::json!({}),
        )
        .await;
    // Unknown functions and projects.
    for args in [
        &["invoke", "nope", "--project", "default"][..],
        &["logs", "nope", "--project", "default"],
        &["status", "nope", "--project", "default"],
        &["versions", "nope", "--project", "default"],
        &["rollback", "nope", "--project", "default"],
    ] {
        ci.run(here, args).await.fails_saying("nope");
    }
    ci.run(here, &["invoke", "nope", "--project", "no-such-project"])
        .await
        .fails_saying("no-such-project");

    // A function that fails exits 1 with its error; bad --data is refused.
    let boom = ci
        .run(here, &["invoke", "boom", "--project", "default"])
        .await;
    boom.fails_saying("kaboom");
    ci.run(
        here,
        &[
            "invoke",
            "boom",
            "--project",
            "default",
            "--data",
            "{not json",
        ],
    )
    .await
    .fails_saying("--data is not JSON");
    ci.run(
        here,
        &["logs", "boom", "--project", "default", "--since", "soon"],
    )
    .await
    .fails_saying("invalid duration 'soon'");
}

/// Shell completions name the commands.
#[tokio::test]
async fn completions() {
    let dir = temp_dir("kumo-cli-completions-");
    for shell in ["bash", "zsh", "fish"] {
        let script = User::new().run(dir.path(), &["completions", shell]).await;
        let text = script.ok();
        for verb in ["deploy", "invoke", "rollback"] {
            assert!(text.contains(verb), "{shell} completion lacks {verb}");
        }
    }
    let unknown = User::new().run(dir.path(), &["completions", "tcsh"]).await;
    assert_eq!(
        unknown.code,
        Some(2),
        "a shell clap does not know: {unknown:#?}"
    );
}

/// `kumo deploy` of a project with routes, variables and a secret: the
/// secret's value from standard input only, the routes answered at
/// `/p/…`, and routes and variables removed from kumo.toml follow.
#[tokio::test]
async fn deploy_syncs_routes_variables_and_secrets() {
    let server = TestServer::start().await;
    let user = User::new()
        .with_env("KUMO_URL", &server.url(""))
        .with_env("KUMO_TOKEN", TOKEN);
    let home = temp_dir("kumo-cli-api-");
    let project = home.path().join("shop");
    user.run(home.path(), &["init", "shop", "--template", "python-api"])
        .await
        .ok();
    let manifest = std::fs::read_to_string(project.join("kumo.toml")).expect("kumo.toml");
    assert!(
        manifest.contains("name = \"shop\""),
        "named after the directory: {manifest}"
    );
    let manifest = manifest.replacen(
        "\n[functions.items]",
        "secrets = [\"API_KEY\"]\n\n[env]\nMODE = \"prod\"\n\n[functions.items]",
        1,
    );
    write(&project.join("kumo.toml"), &manifest);
    let code = std::fs::read_to_string(project.join("api.py")).expect("api.py");
    write(
        &project.join("api.py"),
        &format!(
            "import os\n{code}\n\ndef whoami():\n    return os.environ['MODE'], os.environ['API_KEY']\n"
        ),
    );

    // No value for the secret, and no terminal to ask on: refused, says
    // how, and changes nothing.
    user.run(&project, &["deploy"])
        .await
        .fails_saying("kumo env set API_KEY --secret");
    let env = user.run(&project, &["env", "ls", "--json"]).await.json();
    assert_eq!(env, serde_json::json!([]), "a refused deploy sets nothing");
    let deployed = user
        .run_with_stdin(
            &project,
            &["deploy", "--secrets-from-stdin"],
            Some("API_KEY=sk-live-0123456789\n"),
        )
        .await;
    let out = deployed.ok();
    assert!(out.contains("secret API_KEY set"), "{deployed:#?}");
    assert!(out.contains("MODE set"), "{deployed:#?}");
    assert!(out.contains("items version 1 is live"), "{deployed:#?}");
    assert!(
        out.contains(&server.url("/p/shop/items/:id")),
        "route URLs are printed: {deployed:#?}"
    );
    assert!(
        !out.contains("sk-live") && !deployed.stderr.contains("sk-live"),
        "a secret is never printed: {deployed:#?}"
    );

    // The routes answer.
    let http = reqwest::Client::new();
    let item: Value = http
        .get(server.url("/p/shop/items/1"))
        .send()
        .await
        .expect("GET /p/shop/items/1")
        .json()
        .await
        .expect("an item");
    assert_eq!(item, serde_json::json!({"id": "1", "name": "first"}));

    // env ls shows the secret as *** only.
    let env = user.run(&project, &["env", "ls", "--json"]).await.json();
    let vars = env.as_array().expect("a list");
    let by_key = |key: &str| {
        vars.iter()
            .find(|v| v["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {env}"))
    };
    assert_eq!(by_key("MODE")["value"], "prod");
    assert_eq!(by_key("API_KEY")["secret"], true);
    assert!(!env.to_string().contains("sk-live"), "{env}");
    let table = user.run(&project, &["env", "ls"]).await;
    assert!(
        table.ok().contains("API_KEY") && !table.stdout.contains("sk-live"),
        "{table:#?}"
    );
    let routes = user.run(&project, &["routes", "ls", "--json"]).await.json();
    assert_eq!(routes.as_array().map(Vec::len), Some(3), "{routes}");

    // Without the POST route in kumo.toml, a deploy removes it.
    let fewer = manifest.replacen(
        "[[routes]]\nmethod = \"POST\"\npath = \"/items\"\nfunction = \"items\"\n\n",
        "",
        1,
    );
    assert_ne!(fewer, manifest, "the template has a POST route");
    write(&project.join("kumo.toml"), &fewer);
    let again = user.run(&project, &["deploy"]).await;
    let out = again.ok();
    assert!(out.contains("unchanged"), "{again:#?}");
    assert!(out.contains("route POST /items removed"), "{again:#?}");
    let routes = user.run(&project, &["routes", "ls", "--json"]).await.json();
    assert_eq!(routes.as_array().map(Vec::len), Some(2), "{routes}");
    let posted = http
        .post(server.url("/p/shop/items"))
        .body("{}")
        .send()
        .await
        .expect("POST /p/shop/items");
    assert_eq!(
        posted.status(),
        405,
        "the removed route no longer matches (GET /items still does)"
    );

    // routes add / rm from the command line.
    user.run(&project, &["routes", "add", "GET", "/all", "items"])
        .await
        .ok();
    let all = http
        .get(server.url("/p/shop/all"))
        .send()
        .await
        .expect("GET /p/shop/all");
    assert_eq!(all.status(), 200);
    let routes = user.run(&project, &["routes", "ls", "--json"]).await.json();
    let id = routes
        .as_array()
        .expect("a list")
        .iter()
        .find(|r| r["path"] == "/all")
        .and_then(|r| r["id"].as_str())
        .expect("the new route")
        .to_string();
    user.run(&project, &["routes", "rm", &id]).await.ok();
    user.run(&project, &["routes", "add", "FETCH", "/x", "items"])
        .await
        .fails_saying("FETCH");
    user.run(&project, &["env", "rm", "MODE"]).await.ok();
    user.run(&project, &["env", "rm", "MODE"])
        .await
        .fails_saying("MODE");
}

/// `kumo dev` serves a project's routes at `/p/…`, with no server at all
/// (no credentials, no KUMO_URL).
#[tokio::test]
async fn dev_serves_routes_without_a_server() {
    let user = User::new();
    let home = temp_dir("kumo-cli-dev-routes-");
    let project = home.path().join("shop");
    user.run(home.path(), &["init", "shop", "--template", "python-api"])
        .await
        .ok();
    let mut dev = Running::start(&user, &project, &["dev", "--port", "0"]);
    let base = dev.line("the serving line", dev_url).await;
    dev.line("the routes", |l| {
        l.contains("route ANY /items/:id").then_some(())
    })
    .await;
    let http = reqwest::Client::new();
    let item = get_json(&http, &format!("{base}/p/shop/items/1")).await;
    assert_eq!(item, Some(serde_json::json!({"id": "1", "name": "first"})));
    let created = http
        .post(format!("{base}/p/shop/items"))
        .body(r#"{"name": "second"}"#)
        .send()
        .await
        .expect("POST /p/shop/items");
    assert_eq!(created.status(), 201);
    let missing = http
        .get(format!("{base}/p/shop/nothing-here"))
        .send()
        .await
        .expect("GET an unrouted path");
    assert_eq!(missing.status(), 404);
    assert_eq!(dev.stop(nix::sys::signal::Signal::SIGTERM).await, Some(0));
}

/// What a function prints reaches a terminal as text, never as control
/// sequences: `kumo logs` and `kumo invoke --verbose` show the clipboard
/// write (OSC 52) a function printed as a visible `\x1b]52;…`, with no
/// escape byte in the output.
#[tokio::test]
async fn a_functions_control_characters_are_shown_as_escapes() {
    let server = TestServer::start().await;
    let hostile = r#"
def handler(event):
    print("copy \x1b]52;c;aGVsbG8=\x07 me")
    return 1
"#;
    server
        .deploy(
            "default",
            "hostile",
            &[("main.py", hostile)],
            serde_json::json!({}),
        )
        .await;
    let user = User::new()
        .with_env("KUMO_URL", &server.url(""))
        .with_env("KUMO_TOKEN", TOKEN);
    let dir = temp_dir("kumo-cli-escapes-");
    let shown = r"copy \x1b]52;c;aGVsbG8=\x07 me";
    let invoked = user
        .run(
            dir.path(),
            &["invoke", "hostile", "--project", "default", "--verbose"],
        )
        .await;
    invoked.ok();
    assert!(
        !invoked.stderr.contains('\x1b') && invoked.stderr.contains(shown),
        "kumo invoke --verbose escapes the run's logs: {invoked:#?}"
    );
    let listed = wait_for(
        "the printed line in kumo logs",
        COMMAND_TIMEOUT,
        async || {
            let ran = user
                .run(
                    dir.path(),
                    &["logs", "hostile", "--project", "default", "--since", "1h"],
                )
                .await;
            ran.ok().contains("copy ").then_some(ran)
        },
    )
    .await;
    assert!(
        !listed.stdout.contains('\x1b') && !listed.stdout.contains('\x07'),
        "no escape byte reaches the terminal: {listed:#?}"
    );
    assert!(
        listed.stdout.contains(shown),
        "the sequence is shown escaped: {listed:#?}"
    );
}
