//! A deployment's dependencies: found among its files, checked, and
//! normalized, so that equal dependencies give equal layers.
//!
//! Only what a package index serves is accepted: package names with
//! version ranges. Anything that would make the package manager fetch
//! from elsewhere or run something (pip options such as `--index-url`
//! or `-e`, direct URLs and local paths; npm `git:`, `file:`, `http:`
//! and GitHub specs) is refused with the line that holds it. The index
//! itself is the server's choice.

use kumo_runtimes::Runtime;

/// The largest dependency manifest read.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// The most packages a manifest may list.
const MAX_PACKAGES: usize = 500;

/// The file that lists a runtime's dependencies.
pub fn manifest_file(runtime: Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Python => Some("requirements.txt"),
        Runtime::Node => Some("package.json"),
        Runtime::Custom => None,
    }
}

/// Dependencies to install, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deps {
    pub runtime: Runtime,
    /// Python: one requirement per line, sorted. Node.js: the
    /// `dependencies` object as compact JSON, sorted by name.
    pub normalized: String,
}

/// Why a dependency manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct DepsError {
    pub file: &'static str,
    pub line: Option<usize>,
    pub message: String,
}

impl Deps {
    /// The dependencies of a deployment of `runtime` with `files` (path,
    /// contents); `None` when there is nothing to install.
    pub fn of(runtime: Runtime, files: &[(&str, &[u8])]) -> Result<Option<Deps>, DepsError> {
        let Some(name) = manifest_file(runtime) else {
            return Ok(None);
        };
        let Some(bytes) = files.iter().find(|(p, _)| *p == name).map(|(_, b)| *b) else {
            return Ok(None);
        };
        let error = |line: Option<usize>, message: String| DepsError {
            file: name,
            line,
            message,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(error(
                None,
                format!("is over {} KiB", MAX_MANIFEST_BYTES / 1024),
            ));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| error(None, "is not UTF-8 text".into()))?;
        let normalized = match runtime {
            Runtime::Python => python_requirements(text).map_err(|(l, m)| error(Some(l), m))?,
            Runtime::Node => {
                // A deployment that brings its own node_modules is used as it is.
                if files.iter().any(|(p, _)| p.starts_with("node_modules/")) {
                    return Ok(None);
                }
                node_dependencies(text).map_err(|m| error(None, m))?
            }
            Runtime::Custom => return Ok(None),
        };
        Ok((!normalized.is_empty()).then_some(Deps {
            runtime,
            normalized,
        }))
    }

    /// Dependencies as [`Deps::normalized`] gave them (stored, and read
    /// back to build again).
    pub fn from_normalized(runtime: Runtime, normalized: String) -> Deps {
        Deps {
            runtime,
            normalized,
        }
    }

    /// The file the package manager is given.
    pub fn manifest(&self) -> String {
        match self.runtime {
            Runtime::Node => format!(
                "{{\"name\":\"kumo-layer\",\"version\":\"0.0.0\",\"private\":true,\"dependencies\":{}}}\n",
                self.normalized
            ),
            Runtime::Python | Runtime::Custom => format!("{}\n", self.normalized),
        }
    }
}

/// Checks and normalizes a `requirements.txt`: (line number, message) on
/// the first line refused.
fn python_requirements(text: &str) -> Result<String, (usize, String)> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        // A comment starts at '#' at the start or after whitespace.
        let line = match raw.find(" #").or_else(|| raw.find("\t#")) {
            Some(at) => &raw[..at],
            None if raw.trim_start().starts_with('#') => "",
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('-') {
            return Err((
                n,
                format!(
                    "'{}': options are not supported here; list packages only (the server chooses the package index)",
                    short(line)
                ),
            ));
        }
        // pip takes a word that looks like an archive as a local path.
        const ARCHIVES: &[&str] = &[
            ".whl",
            ".zip",
            ".tar",
            ".tar.gz",
            ".tgz",
            ".tar.bz2",
            ".tbz",
            ".tar.xz",
            ".txz",
            ".tar.lz",
            ".tlz",
            ".tar.lzma",
        ];
        let lower = line.to_ascii_lowercase();
        if line.contains("://")
            || line.contains('@')
            || line.starts_with(['.', '/', '~'])
            || ARCHIVES.iter().any(|a| {
                lower
                    .split([' ', ';'])
                    .next()
                    .is_some_and(|w| w.ends_with(a))
            })
        {
            return Err((
                n,
                format!(
                    "'{}': direct references (URLs, paths, '@') are not supported; name a package and a version range",
                    short(line)
                ),
            ));
        }
        // pip reads words starting with '-' anywhere on a line as options;
        // only hashes are taken (hash-checking mode), nothing that could
        // name another index or change how packages are built.
        let mut words = Vec::new();
        for word in line.split_whitespace() {
            if word.starts_with('-') && !valid_hash(word) {
                return Err((
                    n,
                    format!(
                        "'{}': options are not supported here (only --hash=sha256:…); list packages only",
                        short(word)
                    ),
                ));
            }
            words.push(word);
        }
        let hashes: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| w.starts_with('-'))
            .collect();
        let line = words
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect::<Vec<_>>()
            .join(" ");
        let line = line.as_str();
        let (requirement, marker) = match line.split_once(';') {
            Some((r, m)) => (r.trim(), Some(m.trim())),
            None => (line, None),
        };
        let name_end = requirement
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(requirement.len());
        let name = &requirement[..name_end];
        let rest = &requirement[name_end..];
        let valid_name = !name.is_empty()
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        let valid_rest = rest.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '[' | ']'
                        | ','
                        | '<'
                        | '>'
                        | '='
                        | '!'
                        | '~'
                        | '.'
                        | '*'
                        | '+'
                        | '-'
                        | '_'
                        | ' '
                )
        });
        let valid_marker = marker.is_none_or(|m| {
            !m.is_empty()
                && m.chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '\\' | '`' | '$') || c == ' ')
        });
        if !(valid_name && valid_rest && valid_marker) {
            return Err((
                n,
                format!(
                    "'{}' is not a requirement such as 'requests>=2.31' or 'fastapi[standard]==0.115.*'",
                    short(line)
                ),
            ));
        }
        let mut normalized = line.to_string();
        for hash in hashes {
            normalized.push(' ');
            normalized.push_str(hash);
        }
        out.push(normalized);
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_PACKAGES {
        return Err((0, format!("lists more than {MAX_PACKAGES} packages")));
    }
    Ok(out.join("\n"))
}

/// Checks `package.json`'s `dependencies` and returns them as compact
/// JSON sorted by name (empty when there are none).
fn node_dependencies(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("must be a JSON object".into());
    };
    let deps = match object.get("dependencies") {
        None | Some(serde_json::Value::Null) => return Ok(String::new()),
        Some(serde_json::Value::Object(deps)) => deps,
        Some(_) => {
            return Err("'dependencies' must be an object of package names to versions".into());
        }
    };
    if deps.len() > MAX_PACKAGES {
        return Err(format!("lists more than {MAX_PACKAGES} dependencies"));
    }
    let mut sorted = std::collections::BTreeMap::new();
    for (name, spec) in deps {
        if !valid_npm_name(name) {
            return Err(format!("'{}' is not an npm package name", short(name)));
        }
        let Some(spec) = spec.as_str() else {
            return Err(format!("the version of '{name}' must be a string"));
        };
        // npm takes a spec starting with '.' or '~/' as a local path
        // ('~1.2' is a range).
        let registry_spec = !spec.is_empty()
            && !spec.starts_with('.')
            && !spec.starts_with("~/")
            && spec.len() <= 256
            && spec.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(
                        c,
                        '.' | '^' | '~' | '<' | '>' | '=' | '|' | '*' | '+' | '-' | ' '
                    )
            });
        if !registry_spec {
            return Err(format!(
                "'{name}': '{}' is not a version range from the registry (git, file, URL and GitHub specs are not supported)",
                short(spec)
            ));
        }
        sorted.insert(name.clone(), spec.to_string());
    }
    if sorted.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(&sorted).map_err(|e| e.to_string())
}

/// `--hash=ALGO:HEX` with an algorithm pip accepts.
fn valid_hash(word: &str) -> bool {
    let Some((algo, hex)) = word.strip_prefix("--hash=").and_then(|h| h.split_once(':')) else {
        return false;
    };
    matches!(algo, "sha256" | "sha384" | "sha512")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_npm_name(name: &str) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['.', '_'])
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_' | '~')
            })
    };
    if name.len() > 214 {
        return false;
    }
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, pkg)| plain(scope) && plain(pkg)),
        None => plain(name),
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(text: &str) -> Result<Option<Deps>, DepsError> {
        Deps::of(Runtime::Python, &[("requirements.txt", text.as_bytes())])
    }

    fn node(text: &str) -> Result<Option<Deps>, DepsError> {
        Deps::of(Runtime::Node, &[("package.json", text.as_bytes())])
    }

    #[test]
    fn requirements_are_normalized() {
        let deps = py("# tools\nrequests>=2.31  # http\n\nFlask==3.*\nrequests>=2.31\nuvicorn[standard] ; python_version >= \"3.8\"\n")
            .expect("valid")
            .expect("some");
        assert_eq!(
            deps.normalized,
            "Flask==3.*\nrequests>=2.31\nuvicorn[standard] ; python_version >= \"3.8\""
        );
        assert_eq!(py("# nothing\n\n").expect("valid"), None);
        assert_eq!(Deps::of(Runtime::Python, &[]).expect("valid"), None);
    }

    #[test]
    fn requirements_that_escape_the_index_are_refused() {
        for (line, says) in [
            ("-r other.txt", "options"),
            ("--index-url https://evil.example/simple", "options"),
            ("-e .", "options"),
            ("pkg @ https://evil.example/pkg.whl", "direct references"),
            ("git+https://github.com/x/y", "direct references"),
            ("./local", "direct references"),
            ("pkg.whl", "direct references"),
            ("pkg.tgz", "direct references"),
            ("x.tar.bz2", "direct references"),
            ("requests>=2 \\", "not a requirement"),
            ("$(id)", "not a requirement"),
            ("requests --config-settings=x=y", "options"),
            (
                "requests ; python_version > '3' --extra-index-url=evil",
                "options",
            ),
            ("requests --hash=md5:abc", "options"),
        ] {
            let err = py(&format!("six\n{line}\n")).expect_err(line);
            assert_eq!(err.line, Some(2), "{line}");
            assert!(err.to_string().contains(says), "{line}: {err}");
            assert!(
                err.to_string().starts_with("requirements.txt line 2: "),
                "{err}"
            );
        }
    }

    #[test]
    fn hashes_are_kept() {
        let deps = py("six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n")
            .expect("valid")
            .expect("some");
        assert_eq!(
            deps.normalized,
            "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254"
        );
    }

    #[test]
    fn package_json_dependencies() {
        let deps = node(r#"{"name":"x","dependencies":{"left-pad":"^1.3.0","@scope/pkg":"~2 || 3"},"devDependencies":{"jest":"*"}}"#)
            .expect("valid")
            .expect("some");
        assert_eq!(
            deps.normalized,
            r#"{"@scope/pkg":"~2 || 3","left-pad":"^1.3.0"}"#
        );
        assert!(deps.manifest().contains(r#""dependencies":{"@scope/pkg""#));
        assert_eq!(node(r#"{"name":"x"}"#).expect("valid"), None);
        assert_eq!(node(r#"{"dependencies":{}}"#).expect("valid"), None);
        for bad in [
            r#"{"dependencies":{"x":"git+https://github.com/a/b"}}"#,
            r#"{"dependencies":{"x":"file:../y"}}"#,
            r#"{"dependencies":{"x":"user/repo"}}"#,
            r#"{"dependencies":{"x":"npm:other@1"}}"#,
            r#"{"dependencies":{"x":"."}}"#,
            r#"{"dependencies":{"x":"..x.tgz"}}"#,
            r#"{"dependencies":{"x":"~/x"}}"#,
            r#"{"dependencies":{"../x":"1"}}"#,
            r#"{"dependencies":{"x":1}}"#,
            r#"{"dependencies":[]}"#,
            r#"[1]"#,
            r#"{"#,
        ] {
            let err = node(bad).expect_err(bad);
            assert!(err.to_string().starts_with("package.json: "), "{err}");
        }
    }

    #[test]
    fn bundled_node_modules_skip_the_build() {
        let deps = Deps::of(
            Runtime::Node,
            &[
                ("package.json", br#"{"dependencies":{"a":"1"}}"#.as_slice()),
                ("node_modules/a/index.js", b"".as_slice()),
            ],
        )
        .expect("valid");
        assert_eq!(deps, None);
    }
}
