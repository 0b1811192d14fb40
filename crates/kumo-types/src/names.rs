//! Validation of names and paths that users choose, and the same rules
//! as JSON Schema for the API's document.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// The longest project or function name.
pub const NAME_MAX_LEN: usize = 63;

/// [`validate_name`] as a regular expression (ECMA-262, as JSON Schema's
/// `pattern`).
pub const NAME_PATTERN: &str = "^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$";

/// The longest environment variable name.
pub const ENV_KEY_MAX_LEN: usize = 128;

/// [`validate_env_key`] as a regular expression (ECMA-262; the reserved
/// names are refused with look-aheads).
pub const ENV_KEY_PATTERN: &str =
    "^(?!KUMO_)(?!(?:PATH|HOME|TMPDIR)$)[A-Za-z_][A-Za-z0-9_]{0,127}$";

/// The schema of a project or function name (`Name` in the document).
pub struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A project or function name: 1 to 63 characters of `a-z`, `0-9` and `-`, \
                 starting with a letter, not ending with `-`.",
            ))
            .min_length(Some(1))
            .max_length(Some(NAME_MAX_LEN))
            .pattern(Some(NAME_PATTERN))
            .examples(["hello"])
            .into()
    }
}

impl utoipa::ToSchema for Name {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Name")
    }
}

/// The schema of an environment variable's name (`EnvKey` in the document).
pub struct EnvKey;

impl utoipa::PartialSchema for EnvKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An environment variable's name: a letter or `_`, then letters, digits and `_`, \
                 at most 128 characters; not `KUMO_…`, `PATH`, `HOME` or `TMPDIR`, which Kumo sets.",
            ))
            .min_length(Some(1))
            .max_length(Some(ENV_KEY_MAX_LEN))
            .pattern(Some(ENV_KEY_PATTERN))
            .examples(["API_URL"])
            .into()
    }
}

impl utoipa::ToSchema for EnvKey {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EnvKey")
    }
}

/// Project and function names: DNS-label style, 1–63 characters of
/// `a-z`, `0-9` and `-`, starting with a letter, not ending with `-`.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid {kind} name '{}': {why}", preview(name)));
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > NAME_MAX_LEN {
        return bad("must be at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("use only lower-case letters, digits and '-'");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return bad("must start with a letter");
    }
    if name.ends_with('-') {
        return bad("must not end with '-'");
    }
    Ok(())
}

/// An environment variable's name: a letter or `_`, then letters,
/// digits and `_`, at most 128 bytes; not one Kumo sets itself (`KUMO_…`,
/// `PATH`, `HOME`, `TMPDIR`), nor one that changes how the runtime starts
/// (`LD_…`, `PYTHON…`, `NODE_OPTIONS`, …).
pub fn validate_env_key(key: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid variable name '{}': {why}", preview(key)));
    if key.is_empty() || key.len() > ENV_KEY_MAX_LEN {
        return bad("use 1 to 128 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return bad("use only letters, digits and '_'");
    }
    if key.as_bytes()[0].is_ascii_digit() {
        return bad("must not start with a digit");
    }
    if key.starts_with("KUMO_") || matches!(key, "PATH" | "HOME" | "TMPDIR") {
        return bad("Kumo sets this variable itself");
    }
    if let Some(why) = startup_variable(key) {
        return Err(format!(
            "variable '{key}' is not allowed: {why}; Kumo refuses variables that change how the runtime itself starts"
        ));
    }
    Ok(())
}

/// Why `key` is refused as a project variable when it changes how the
/// runner process starts or loads code, rather than being the function's
/// own setting: the dynamic loader's and glibc's variables (those glibc
/// drops for setuid programs, and its tunables), Python's (the runner runs
/// Python isolated, so they would be silently ignored) and Node's startup
/// options.
fn startup_variable(key: &str) -> Option<&'static str> {
    if key.starts_with("LD_") {
        return Some("LD_… variables change how every program is loaded and linked");
    }
    if key.starts_with("PYTHON") {
        return Some("the Python runner runs isolated (python -I) and ignores PYTHON… variables");
    }
    if key.starts_with("MALLOC_") || key == "GLIBC_TUNABLES" {
        return Some("it changes the C library's memory allocator");
    }
    if matches!(key, "NODE_OPTIONS" | "NODE_PATH") {
        return Some("it changes how Node.js starts and loads modules");
    }
    if matches!(
        key,
        "GCONV_PATH"
            | "GETCONF_DIR"
            | "HOSTALIASES"
            | "LOCALDOMAIN"
            | "LOCPATH"
            | "NIS_PATH"
            | "NLSPATH"
            | "RESOLV_HOST_CONF"
            | "RES_OPTIONS"
            | "TZDIR"
    ) {
        return Some("it makes the C library load files from another place");
    }
    None
}

/// A file path inside a deployment: relative, `/`-separated, no `..`,
/// no empty or `.` segments, no control characters, at most 255 bytes.
pub fn validate_relative_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid file path '{}': {why}", preview(path)));
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.len() > 255 {
        return bad("must be at most 255 bytes");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return bad("must not contain control characters or '\\'");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("must not contain empty segments"),
            "." | ".." => return bad("must not contain '.' or '..' segments"),
            _ => {}
        }
    }
    Ok(())
}

/// An entrypoint: a relative path to a source file of the runtime; for
/// the custom runtime a command line, checked where it is parsed
/// (`kumo_runtimes::custom`).
pub fn validate_entrypoint(runtime: &str, entrypoint: &str) -> Result<(), String> {
    if runtime == "custom" {
        return Ok(());
    }
    validate_relative_path(entrypoint)?;
    if runtime == "python" && !entrypoint.ends_with(".py") {
        return Err(format!(
            "entrypoint '{}' must be a .py file",
            preview(entrypoint)
        ));
    }
    if runtime == "node"
        && ![".js", ".mjs", ".cjs"]
            .iter()
            .any(|x| entrypoint.ends_with(x))
    {
        return Err(format!(
            "entrypoint '{}' must be a .js, .mjs or .cjs file",
            preview(entrypoint)
        ));
    }
    Ok(())
}

/// A handler name: a dotted Python identifier such as `handler` or `app.handle`.
pub fn validate_handler(handler: &str) -> Result<(), String> {
    let ok = !handler.is_empty()
        && handler.len() <= 128
        && handler.split('.').all(|part| {
            let mut chars = part.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid handler '{}': use an identifier such as 'handler'",
            preview(handler)
        ))
    }
}

fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_variables_are_refused() {
        for key in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONSTARTUP",
            "PYTHONINSPECT",
            "NODE_OPTIONS",
            "NODE_PATH",
            "GCONV_PATH",
            "GLIBC_TUNABLES",
            "MALLOC_ARENA_MAX",
        ] {
            let message = validate_env_key(key).expect_err(key);
            assert!(message.contains(key), "{message}");
            assert!(
                message.contains("how the runtime itself starts"),
                "{message}"
            );
        }
        for key in [
            "LD",
            "OLD_PRELOAD",
            "NODE_ENV",
            "MY_PYTHONPATH",
            "TZ",
            "LANG",
        ] {
            assert!(validate_env_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("project", "hello-world1").is_ok());
        for bad in ["", "Hello", "1abc", "abc-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate_name("project", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(validate_relative_path("main.py").is_ok());
        assert!(validate_relative_path("pkg/mod.py").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\0b",
            "a\\b",
        ] {
            assert!(validate_relative_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn handlers() {
        assert!(validate_handler("handler").is_ok());
        assert!(validate_handler("app.handle").is_ok());
        for bad in ["", "1x", "a-b", "a..b", "a b"] {
            assert!(validate_handler(bad).is_err(), "{bad}");
        }
    }
}
