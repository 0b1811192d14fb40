//! The answer of a deploy-time checker (one per runtime, each run in a
//! sandbox over the deployment's files): one JSON object on its stdout.

use serde::Deserialize;

/// Where a source file fails to compile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SyntaxIssue {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
    #[serde(default)]
    pub text: Option<String>,
}

impl std::fmt::Display for SyntaxIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(text) = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Syntax(SyntaxIssue),
    /// The files could not be checked within the check's limits.
    #[error("{0}")]
    Refused(String),
    #[error("the syntax check could not run: {0}")]
    Failed(String),
}

#[derive(Deserialize)]
struct CheckReply {
    ok: bool,
    #[serde(flatten)]
    issue: Option<SyntaxIssue>,
}

/// Reads the checker's answer (one JSON object on its stdout).
pub fn parse_check_output(stdout: &[u8]) -> Result<(), CheckError> {
    let reply: CheckReply = serde_json::from_slice(stdout)
        .map_err(|e| CheckError::Failed(format!("unreadable checker output: {e}")))?;
    match (reply.ok, reply.issue) {
        (true, _) => Ok(()),
        (false, Some(issue)) => Err(CheckError::Syntax(issue)),
        (false, None) => Err(CheckError::Failed(
            "checker reported an error without details".into(),
        )),
    }
}
