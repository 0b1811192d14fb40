//! Custom runtimes: programs of the deployment that speak the runner
//! protocol, a compiled one (C, built here with the shipped header) and
//! scripts, inside the same sandbox as every function.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestServer, py, tar_entry, tar_gz};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compiles `examples/custom-c/main.c` against `sdk/c/kumo_function.h`.
fn compile_c_example(out: &Path) -> Vec<u8> {
    let root = repo_root();
    let status = std::process::Command::new("cc")
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("sdk/c"))
        .arg("-o")
        .arg(out)
        .arg(root.join("examples/custom-c/main.c"))
        .status()
        .expect("running cc (scripts/setup installs gcc)");
    assert!(status.success(), "compiling the C example failed");
    std::fs::read(out).expect("reading the compiled program")
}

/// The compiled example answers over HTTP with what it was asked, prints
/// to its logs, and fails cleanly (the instance keeps serving) when its
/// handler reports an error.
#[tokio::test]
async fn a_compiled_c_function_serves_http() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let binary = compile_c_example(&dir.path().join("bootstrap"));
    let archive = tar_gz(|b| tar_entry(b, "bootstrap", &binary, 0o755));
    let resp = server
        .deploy_tar_gz("native", "hello", archive, "runtime=custom")
        .await;
    let body = resp.expect_status(201);
    assert_eq!(body["status"], "active", "{body}");

    let resp = server
        .send(server.public(Method::GET, "/fn/native/hello/greet?name=Ada"))
        .await;
    assert_eq!(resp.expect_ok_text(), "hello, Ada");
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/plain"),
        "the program's own header"
    );
    let run_id = resp.header("x-kumo-invocation-id").expect("a run id");
    let run = server
        .run_record(&run_id, std::time::Duration::from_secs(10))
        .await;
    assert!(
        run["logs"]
            .as_str()
            .is_some_and(|l| l.contains("greeting \"Ada\"")),
        "stdout is the run's logs: {run}"
    );

    // Not an HTTP event: the handler's error is a failed run, and the same
    // instance answers the next call.
    let failed = server.invoke("native", "hello", json!({"x": 1})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("call me over HTTP")),
        "{failed}"
    );
    let again = server
        .send(server.public(Method::GET, "/fn/native/hello"))
        .await;
    assert_eq!(again.expect_ok_text(), "hello, world");
}

/// A Node.js script that implements the protocol itself (the shipped
/// example) is a function, with `node` named in its entrypoint.
#[tokio::test]
async fn a_node_script_speaking_the_protocol_is_a_function() {
    let server = TestServer::start().await;
    let script = std::fs::read_to_string(repo_root().join("examples/custom-node/bootstrap.mjs"))
        .expect("the example script");
    let resp = server
        .try_deploy(
            "scripts",
            "greet",
            &[("bootstrap.mjs", &script)],
            json!({"runtime": "custom", "entrypoint": "node bootstrap.mjs"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let resp = server
        .send(server.public(Method::GET, "/fn/scripts/greet?name=Grace"))
        .await;
    assert_eq!(resp.expect_ok_text(), "hello, Grace from a script");
}

/// A custom program runs in the same sandbox as the embedded runners:
/// seccomp, no privileges, its own uid, no network, a read-only root with
/// only what it needs.
#[tokio::test]
async fn a_custom_program_is_sandboxed() {
    let server = TestServer::start().await;
    let program = py(r#"
        import json, os, socket, struct

        def send(obj):
            data = json.dumps(obj).encode()
            os.write(3, struct.pack(">I", len(data)) + data)

        def recv():
            head = b""
            while len(head) < 4:
                chunk = os.read(3, 4 - len(head))
                if not chunk:
                    raise SystemExit(0)
                head += chunk
            size = struct.unpack(">I", head)[0]
            body = b""
            while len(body) < size:
                body += os.read(3, size - len(body))
            return json.loads(body)

        def probe():
            status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
            try:
                socket.create_connection(("127.0.0.1", PROBE_PORT), timeout=1)
                reached = True
            except OSError:
                reached = False
            try:
                open("/code/x", "w")
                wrote = True
            except OSError:
                wrote = False
            return {
                "seccomp": status["Seccomp"].strip(),
                "nnp": status["NoNewPrivs"].strip(),
                "cap_eff": status["CapEff"].strip(),
                "uid": os.getuid(),
                "pid": os.getpid(),
                "root": sorted(os.listdir("/")),
                "interfaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else [],
                "reached_host": reached,
                "wrote_code": wrote,
            }

        send({"type": "hello", "protocol": 1, "runtime": "probe", "runtime_version": "1"})
        while True:
            message = recv()
            if message["type"] == "load":
                send({"type": "loaded"})
            else:
                send({"type": "result", "id": message["id"], "ok": True, "output": probe()})
    "#);
    let port = server
        .url("")
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the server's port");
    let program = program.replace("PROBE_PORT", &port.to_string());
    let resp = server
        .try_deploy(
            "probe",
            "inside",
            &[("probe.py", &program)],
            json!({"runtime": "custom", "entrypoint": "python3 probe.py"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let run = server.invoke("probe", "inside", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = &run["output"];
    assert_eq!(out["seccomp"], "2", "{out}");
    assert_eq!(out["nnp"], "1", "{out}");
    assert_eq!(out["cap_eff"], "0000000000000000", "{out}");
    assert_eq!(out["uid"], 1000, "{out}");
    assert!(out["pid"].as_u64().is_some_and(|p| p < 10), "{out}");
    assert_eq!(
        out["reached_host"], false,
        "the API port is unreachable: {out}"
    );
    assert_eq!(out["wrote_code"], false, "the code is read-only: {out}");
    let root: Vec<&str> = out["root"]
        .as_array()
        .expect("a listing")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(root.contains(&"code") && root.contains(&"tmp"), "{root:?}");
    for host_only in ["root", "home", "var", "srv", "opt", "kumo", "work"] {
        assert!(
            !root.contains(&host_only),
            "/{host_only} is visible: {root:?}"
        );
    }
}

/// Mistakes are refused at deploy: a program that is not among the files,
/// an entrypoint that is not a command, and a program that exits instead
/// of speaking the protocol (the active version keeps serving).
#[tokio::test]
async fn broken_custom_deployments_are_refused() {
    let server = TestServer::start().await;
    let resp = server
        .try_deploy(
            "bad",
            "missing",
            &[("other", "x")],
            json!({"runtime": "custom", "entrypoint": "bootstrap"}),
        )
        .await;
    let message = resp.expect_error(400, "invalid_files");
    assert!(message.contains("'bootstrap'"), "{message}");

    let resp = server
        .try_deploy(
            "bad",
            "escape",
            &[("x", "x")],
            json!({"runtime": "custom", "entrypoint": "/bin/sh -c id"}),
        )
        .await;
    let message = resp.expect_error(400, "bad_request");
    assert!(message.contains("file of the deployment"), "{message}");

    let resp = server
        .try_deploy(
            "bad",
            "quits",
            &[("main.mjs", "process.exit(3)\n")],
            json!({"runtime": "custom", "entrypoint": "node main.mjs"}),
        )
        .await;
    let message = resp.expect_error(400, "load_error");
    assert!(message.contains("code 3"), "{message}");
}
