//! Checks of a deployment's code in a sandbox before anything refers to
//! it: the syntax of its sources, and loading it once as its first call
//! would. A failure names the file and line.

use kumo_runtimes::Runtime;
use kumo_types::ErrorCode;

use crate::environment::ProjectEnv;
use crate::error::{ApiError, ApiResult};
use crate::state::State;

/// Syntax-checks the sources (in a sandbox); a failure names the file and
/// line.
pub(crate) async fn check_sources(
    state: &State,
    runtime: Runtime,
    code_dir: &std::path::Path,
) -> ApiResult<()> {
    match state.executor().check_syntax(runtime, code_dir).await {
        Ok(()) => Ok(()),
        Err(kumo_executor::CheckError::Syntax(issue)) => {
            let location = issue.line.map(|line| kumo_types::SourceLocation {
                file: issue.file.clone(),
                line,
                column: issue.column,
            });
            Err(
                ApiError::new(ErrorCode::SyntaxError, format!("syntax error in {issue}"))
                    .at(location),
            )
        }
        Err(kumo_executor::CheckError::Refused(why)) => {
            Err(ApiError::new(ErrorCode::InvalidFiles, why))
        }
        Err(e @ kumo_executor::CheckError::Failed(_)) => {
            Err(ApiError::internal("checking the syntax", e))
        }
    }
}

/// What [`check_load`] loads.
pub(crate) struct LoadTarget<'a> {
    pub(crate) owner: &'a str,
    pub(crate) function: &'a str,
    pub(crate) runtime: Runtime,
    pub(crate) code_dir: &'a std::path::Path,
    /// The built dependency layer, if the code has dependencies.
    pub(crate) layer: Option<&'a std::path::Path>,
    pub(crate) entrypoint: &'a str,
    pub(crate) handler: &'a str,
    pub(crate) settings: &'a kumo_types::Settings,
    pub(crate) content_hash: &'a str,
    /// The project's environment, as calls will see it.
    pub(crate) env: &'a ProjectEnv,
}

/// Loads the code once in a sandbox, as its first call would: an import
/// that fails, a missing handler or entrypoint is refused now, with the
/// error and where it happened, and the active version keeps serving.
pub(crate) async fn check_load(state: &State, target: LoadTarget<'_>) -> ApiResult<()> {
    let s = target.settings;
    let spec = std::sync::Arc::new(kumo_executor::DeploymentSpec {
        // Its own pool and no history: nothing of it outlives the check.
        key: format!("check:{}", target.content_hash),
        function_id: format!("check:{}", target.content_hash),
        tenant: target.owner.to_string(),
        function_name: target.function.to_string(),
        version: 0,
        runtime: target.runtime,
        code_dir: target.code_dir.to_path_buf(),
        layer: target.layer.map(std::path::Path::to_path_buf),
        entrypoint: target.entrypoint.to_string(),
        handler: target.handler.to_string(),
        timeout: std::time::Duration::from_millis(s.timeout_ms),
        memory_mb: s.memory_mb,
        cpu_millicores: s.cpu_millicores,
        pids: s.pids,
        tmp_bytes: s.tmp_mb * 1024 * 1024,
        concurrency: 1,
        env: target.env.vars.clone(),
        redact: target.env.secrets.clone(),
    });
    match state.executor().check_load(&spec).await {
        Ok(()) => Ok(()),
        Err(kumo_executor::LoadCheckError::Failed { status, error, .. }) => {
            let location = error_place(&error.traceback);
            let place = location
                .as_ref()
                .map(|l| format!(" (at {}, line {})", l.file, l.line))
                .unwrap_or_default();
            let what = match status {
                kumo_types::RunStatus::TimedOut => {
                    "the code did not finish loading in time".to_string()
                }
                kumo_types::RunStatus::OutOfMemory => {
                    "the code ran out of memory while loading".to_string()
                }
                _ => "the code failed to load".to_string(),
            };
            Err(ApiError::new(
                ErrorCode::LoadError,
                format!("{what}: {}: {}{place}", error.kind, error.message),
            )
            .at(location))
        }
        Err(e @ kumo_executor::LoadCheckError::Platform(_)) => {
            Err(ApiError::internal("loading the code to check it", e))
        }
    }
}

/// The last place in the deployment's files that a traceback or stack
/// names.
fn error_place(traceback: &str) -> Option<kumo_types::SourceLocation> {
    traceback.lines().rev().find_map(|line| {
        let at = line.find("/code/")?;
        let rest = &line[at + "/code/".len()..];
        let number = |text: &str| -> Option<u64> {
            let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        // Python: `File "/code/main.py", line 3, in <module>`.
        if let Some((file, tail)) = rest.split_once("\", line ") {
            return Some(kumo_types::SourceLocation {
                file: file.to_string(),
                line: number(tail)?,
                column: None,
            });
        }
        // Node: `at f (/code/index.js:3:9)` or `/code/index.js:3`.
        let end = rest.find([')', ' ']).unwrap_or(rest.len());
        let mut parts = rest[..end].split(':');
        let file = parts.next()?;
        let line = parts
            .next()
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))?;
        Some(kumo_types::SourceLocation {
            file: file.to_string(),
            line: number(line)?,
            column: parts.next().and_then(number),
        })
    })
}
