//! The README's shell examples, run as written against a real server.
//!
//! Every ```` ```sh ```` block of README.md runs, in order, except one
//! right after a `<!-- readme-test: skip (why) -->` line (the quickstart,
//! which builds and starts a server of its own; commands that run until
//! Ctrl-C; packages from PyPI, which the tests do without). The blocks of
//! one `## ` section run in one `bash -euo pipefail` session that starts
//! at the repository's root, as a reader pasting them into a terminal
//! would; the session's standard input holds the server's token (what
//! `kumo login` asks for). Before it runs, the text changes in four ways
//! only:
//!
//! - `http://127.0.0.1:8080` becomes the test server's URL;
//! - `TOKEN=...` becomes `TOKEN=` and the test server's token;
//! - `curl -s ` becomes `curl -sSf `: an answer other than 2xx fails;
//! - `$PWD/target/release` becomes the directory of the `kumo` under test.
//!
//! A `# …` line right after a command is the output the README promises:
//! what the commands since the previous such line printed must end with it
//! (`...` and `…` stand for anything). When every block has run, every run
//! the examples made must have succeeded (a call that fails inside the
//! function still answers 2xx).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::support::{TOKEN, TestServer, clear_kumo_env, wait_for};

/// All the README's examples, builds of a C program and of a function's
/// files included.
const SESSION_TIMEOUT: Duration = Duration::from_secs(600);

const SKIP: &str = "<!-- readme-test: skip";

/// A `## ` section's runnable shell blocks.
struct Section {
    title: String,
    blocks: Vec<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository's root")
}

/// The ```sh blocks of `markdown` by `## ` section, the skipped ones left out.
fn sections(markdown: &str) -> Vec<Section> {
    let mut sections = vec![Section {
        title: String::new(),
        blocks: Vec::new(),
    }];
    let mut previous = "";
    let mut block: Option<(String, bool)> = None;
    for line in markdown.lines() {
        if let Some((text, skip)) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                if !*skip {
                    let text = std::mem::take(text);
                    sections.last_mut().expect("a section").blocks.push(text);
                }
                block = None;
            } else {
                text.push_str(line);
                text.push('\n');
            }
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            sections.push(Section {
                title: title.to_string(),
                blocks: Vec::new(),
            });
        } else if line.trim() == "```sh" {
            block = Some((String::new(), previous.trim_start().starts_with(SKIP)));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    assert!(block.is_none(), "README.md ends inside a code block");
    sections.retain(|s| !s.blocks.is_empty());
    sections
}

/// A block cut where the README says what was printed: each part's
/// commands, and the output they promise (if any).
fn segments(block: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut commands = String::new();
    let mut after_command = false;
    for line in block.lines() {
        let trimmed = line.trim_start();
        if after_command && let Some(expected) = trimmed.strip_prefix("# ") {
            out.push((std::mem::take(&mut commands), Some(expected.to_string())));
            after_command = false;
            continue;
        }
        after_command = !trimmed.is_empty() && !trimmed.starts_with('#');
        commands.push_str(line);
        commands.push('\n');
    }
    out.push((commands, None));
    out
}

/// Whether `output` ends with `expected`, where `...` and `…` in
/// `expected` stand for any text.
fn ends_like(output: &str, expected: &str) -> bool {
    let output = output.trim_end();
    let parts: Vec<&str> = expected
        .trim()
        .split("...")
        .flat_map(|p| p.split('…'))
        .collect();
    let (last, rest) = parts.split_last().expect("split gives one part at least");
    let mut at = 0;
    for (i, part) in rest.iter().enumerate() {
        // The first part may start anywhere: earlier commands printed too.
        match output[at..].find(part) {
            Some(found) if i > 0 || !part.is_empty() => at += found + part.len(),
            Some(_) => {}
            None => return false,
        }
    }
    output.ends_with(last) && output.len() - last.len() >= at
}

/// The README's shell examples, run in order against a real server, do
/// what it says: every command succeeds, every answer is 2xx, each output
/// it shows is what comes out, and every run they make succeeds.
#[tokio::test]
async fn the_readme_examples_run_as_written() {
    let server = TestServer::start().await;
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("reading README.md");
    let sections = sections(&readme);
    assert!(
        sections.len() >= 2,
        "the README has runnable shell blocks in its sections: {:?}",
        sections.iter().map(|s| &s.title).collect::<Vec<_>>()
    );
    let scratch = tempfile::Builder::new()
        .prefix("kumo-readme-")
        .tempdir()
        .expect("a scratch directory");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kumo"))
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let base = server.url("");
    let adapt = |text: &str| {
        text.replace("http://127.0.0.1:8080", &base)
            .replace("TOKEN=...", &format!("TOKEN={TOKEN}"))
            .replace("curl -s ", "curl -sSf ")
            .replace("$PWD/target/release", &bin_dir.display().to_string())
    };
    let mut checks = Vec::new();
    for (s, section) in sections.iter().enumerate() {
        let mut script = String::new();
        for block in &section.blocks {
            for (commands, expected) in segments(block) {
                let out = scratch.path().join(format!("out-{}", checks.len()));
                // `true`: a group may hold comments only.
                script.push_str(&format!(
                    "{{\ntrue\n{}\n}} > '{}'\n",
                    adapt(&commands),
                    out.display()
                ));
                script.push_str(&format!("cat '{}'; echo\n", out.display()));
                checks.push((
                    section.title.clone(),
                    commands,
                    expected.map(|e| adapt(&e)),
                    out,
                ));
            }
        }
        let script_path = scratch.path().join(format!("section-{s}.sh"));
        std::fs::write(&script_path, &script).expect("writing the script");
        let tmp = scratch.path().join(format!("tmp-{s}"));
        std::fs::create_dir_all(&tmp).expect("a TMPDIR");
        let mut command = Command::new("bash");
        command
            .args(["-euo", "pipefail"])
            .arg(&script_path)
            .current_dir(&root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        clear_kumo_env(&mut command);
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .env("PATH", format!("{}:{path}", bin_dir.display()))
            .env("KUMO_CONFIG_DIR", scratch.path().join("config"))
            .env("TMPDIR", &tmp);
        let mut child = command.spawn().expect("spawning bash");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(format!("{TOKEN}\n").as_bytes())
            .await
            .expect("writing the token to the session");
        drop(stdin);
        let output = tokio::time::timeout(SESSION_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "section {:?} still running after {SESSION_TIMEOUT:?}",
                    section.title
                )
            })
            .expect("waiting for bash");
        let said = format!(
            "section {:?}:\n--- script ---\n{script}--- stdout ---\n{}--- stderr ---\n{}",
            section.title,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "a README example failed ({}); {said}",
            output.status
        );
    }
    for (title, commands, expected, out) in &checks {
        let Some(expected) = expected else { continue };
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        assert!(
            ends_like(&printed, expected),
            "in {title:?}, the README promises {expected:?} from\n{commands}but it printed {printed:?}"
        );
    }
    // Every run the examples made (async ones included) succeeded.
    let projects = server.get("/api/v1/projects").await.expect_status(200);
    for project in projects["items"].as_array().expect("a list of projects") {
        let project = project["name"].as_str().expect("a project name");
        let functions = server
            .get(&format!("/api/v1/projects/{project}/functions"))
            .await
            .expect_status(200);
        for function in functions["items"].as_array().expect("a list of functions") {
            let function = function["name"].as_str().expect("a function name");
            let path = format!("/api/v1/projects/{project}/functions/{function}/invocations");
            let runs: Vec<Value> = wait_for(
                &format!("the runs of {project}/{function} to end"),
                Duration::from_secs(60),
                async || {
                    let runs = server.get(&path).await.expect_status(200)["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    runs.iter()
                        .all(|r| r["status"] != "queued" && r["status"] != "running")
                        .then_some(runs)
                },
            )
            .await;
            for run in runs {
                assert_eq!(
                    run["status"], "succeeded",
                    "a run of {project}/{function} the README made failed: {run}"
                );
            }
        }
    }
}

#[test]
fn expected_output_matches_with_wildcards() {
    assert!(ends_like("{\"hi\":\"kumo\"}", "{\"hi\":\"kumo\"}"));
    assert!(ends_like(
        "earlier\n{\"a\":1,\"b\":2,\"c\":3}\n",
        "{\"a\":1,...,\"c\":3}"
    ));
    assert!(ends_like("x{\"a\":1,\"c\":3}", "{\"a\":1,…\"c\":3}"));
    assert!(!ends_like("{\"a\":1,\"b\":2}", "{\"a\":1,...,\"c\":3}"));
    assert!(!ends_like("{\"a\":1} and more", "{\"a\":1}"));
}

#[test]
fn blocks_split_where_the_output_is_shown() {
    let parts = segments("# a comment\ncurl a \\\n  -d x\n# {\"ok\":true}\n\n# another\ncurl b\n");
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0].1.as_deref(), Some("{\"ok\":true}"));
    assert!(parts[0].0.contains("curl a") && parts[1].0.contains("curl b"));
    let md = "## A\n<!-- readme-test: skip (why) -->\n```sh\nskipped\n```\n```sh\nrun\n```\n## B\n```toml\nx\n```\n";
    let found = sections(md);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].blocks, vec!["run\n".to_string()]);
}
