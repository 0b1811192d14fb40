//! `kumo.toml`: a project directory's description of its functions,
//! routes and variables, read and checked with the line of every mistake.
//!
//! ```toml
//! name = "shop"                # the project
//! secrets = ["STRIPE_KEY"]     # names only: values are asked for at deploy
//!
//! [functions.api]
//! runtime = "python"           # python | node | custom
//! entrypoint = "main.py"
//! handler = "handler"
//! dir = "api"                  # its files, relative to kumo.toml (default ".")
//! memory_mb = 256              # timeout_ms, concurrency, cpu_millicores, pids, tmp_mb
//! visibility = "public"
//!
//! [[routes]]
//! method = "GET"
//! path = "/items/:id"
//! function = "api"
//!
//! [env]
//! GREETING = "hello"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use kumo_types::{DeployQuery, FunctionSettings};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The manifest's file name.
pub const FILE: &str = "kumo.toml";

const RUNTIMES: &[&str] = &["python", "node", "custom"];

/// A project, as `kumo.toml` describes it.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The directory that holds `kumo.toml`.
    pub root: PathBuf,
    pub name: String,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub routes: Vec<RouteSpec>,
    pub env: BTreeMap<String, String>,
    pub secrets: Vec<String>,
}

/// One function of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FunctionSpec {
    pub runtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Its files, relative to the manifest's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Limits and visibility, as the API takes them.
    #[serde(flatten)]
    pub settings: FunctionSettings,
}

impl FunctionSpec {
    /// The directory of the function's files.
    pub fn dir(&self, root: &Path) -> PathBuf {
        match self.dir.as_deref() {
            None | Some("") | Some(".") => root.to_path_buf(),
            Some(dir) => root.join(dir),
        }
    }

    /// The deploy's query string: runtime, code settings and limits.
    pub fn query(&self) -> DeployQuery {
        DeployQuery::new(
            Some(self.runtime.clone()),
            self.entrypoint.clone(),
            self.handler.clone(),
            &self.settings,
        )
    }
}

/// One route of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub method: String,
    pub path: String,
    pub function: String,
}

/// A mistake in `kumo.toml`, with where it is.
#[derive(Debug)]
pub struct ManifestError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{} line {line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Spanned<String>,
    #[serde(default)]
    functions: BTreeMap<Spanned<String>, RawFunction>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
}

/// A function's table, key by key: its code keys are read here, its
/// settings by [`FunctionSettings`] itself, so that a setting is named
/// only where it is declared.
type RawFunction = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// The keys of a function's table that are not settings.
const CODE_KEYS: &[&str] = &["runtime", "entrypoint", "handler", "dir"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    method: String,
    path: String,
    function: String,
}

impl Manifest {
    /// Finds `kumo.toml` in `start` or a parent directory and reads it.
    pub fn find(start: &Path) -> Result<Option<Manifest>, ManifestError> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let path = d.join(FILE);
            if path.is_file() {
                return Manifest::read(&path).map(Some);
            }
            dir = d.parent();
        }
        Ok(None)
    }

    /// Reads and checks one manifest.
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            line: None,
            message: format!("cannot read it: {e}"),
        })?;
        Manifest::parse(path, &text)
    }

    /// Checks the text of a manifest at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let error = |span: Option<Range<usize>>, message: String| ManifestError {
            path: path.to_path_buf(),
            line: span.map(|s| line_of(text, s.start)),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            error(
                e.span(),
                e.message().trim_end_matches('\n').replace('\n', "; "),
            )
        })?;
        let name = raw.name.get_ref().clone();
        kumo_types::validate_name("project", &name).map_err(|m| error(Some(raw.name.span()), m))?;
        let mut functions = BTreeMap::new();
        for (fname, table) in raw.functions {
            let function = fname.get_ref().clone();
            kumo_types::validate_name("function", &function)
                .map_err(|m| error(Some(fname.span()), m))?;
            let spec = function_spec(&function, table).map_err(|(span, m)| error(span, m))?;
            functions.insert(function, spec);
        }
        let mut routes = Vec::new();
        for route in raw.routes {
            let span = route.span();
            let r = route.into_inner();
            if !functions.contains_key(&r.function) {
                let known: Vec<&str> = functions.keys().map(String::as_str).collect();
                return Err(error(
                    Some(span),
                    format!(
                        "the route {} {} leads to '{}', which is not a function of this project{}",
                        r.method,
                        r.path,
                        r.function,
                        did_you_mean(&r.function, &known)
                    ),
                ));
            }
            routes.push(RouteSpec {
                method: r.method.to_ascii_uppercase(),
                path: r.path,
                function: r.function,
            });
        }
        let mut env = BTreeMap::new();
        for (key, value) in raw.env {
            kumo_types::validate_env_key(key.get_ref()).map_err(|m| error(Some(key.span()), m))?;
            env.insert(key.into_inner(), value);
        }
        let mut secrets = Vec::new();
        for secret in raw.secrets {
            kumo_types::validate_env_key(secret.get_ref())
                .map_err(|m| error(Some(secret.span()), m))?;
            if env.contains_key(secret.get_ref()) {
                return Err(error(
                    Some(secret.span()),
                    format!(
                        "{} is both in [env] and in secrets; a secret's value never goes in kumo.toml",
                        secret.get_ref()
                    ),
                ));
            }
            secrets.push(secret.into_inner());
        }
        Ok(Manifest {
            root: path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            name,
            functions,
            routes,
            env,
            secrets,
        })
    }

    /// The manifest as TOML text (what `kumo pull` and `kumo init` write).
    pub fn to_toml(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            secrets: &'a Vec<String>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            env: &'a BTreeMap<String, String>,
            functions: &'a BTreeMap<String, FunctionSpec>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            routes: &'a Vec<RouteSpec>,
        }
        toml::to_string_pretty(&Out {
            name: &self.name,
            secrets: &self.secrets,
            env: &self.env,
            functions: &self.functions,
            routes: &self.routes,
        })
        .unwrap_or_default()
    }
}

type SpannedError = (Option<Range<usize>>, String);

/// One function's table, checked: its code keys, then its settings.
fn function_spec(function: &str, table: RawFunction) -> Result<FunctionSpec, SpannedError> {
    let mut spec = FunctionSpec {
        runtime: "python".to_string(),
        ..FunctionSpec::default()
    };
    let mut settings = toml::Table::new();
    for (key, value) in table {
        let (name, span) = (key.get_ref().as_str(), value.span());
        if FunctionSettings::NAMES.contains(&name) {
            // Each setting alone first, so that a bad value names its line.
            let one = toml::Table::from_iter([(name.to_string(), value.get_ref().clone())]);
            FunctionSettings::deserialize(one)
                .map_err(|e| (Some(span.clone()), format!("{name}: {}", e.message())))?;
            settings.insert(name.to_string(), value.into_inner());
            continue;
        }
        if !CODE_KEYS.contains(&name) {
            let known: Vec<&str> = CODE_KEYS
                .iter()
                .chain(FunctionSettings::NAMES)
                .copied()
                .collect();
            return Err((
                Some(key.span()),
                format!(
                    "unknown key '{name}' in [functions.{function}]{}; known keys: {}",
                    did_you_mean(name, &known),
                    known.join(", ")
                ),
            ));
        }
        let Some(text) = value.get_ref().as_str().map(str::to_string) else {
            return Err((Some(span), format!("{name} must be a string")));
        };
        match name {
            "runtime" if !RUNTIMES.contains(&text.as_str()) => {
                return Err((
                    Some(span),
                    format!(
                        "unknown runtime '{text}'{}; use one of {}",
                        did_you_mean(&text, RUNTIMES),
                        RUNTIMES.join(", ")
                    ),
                ));
            }
            "runtime" => spec.runtime = text,
            "entrypoint" => spec.entrypoint = Some(text),
            "handler" => spec.handler = Some(text),
            _ => {
                if text.starts_with('/') || text.split('/').any(|s| s == "..") {
                    return Err((
                        Some(span),
                        format!("dir '{text}' must be inside the project (relative, no '..')"),
                    ));
                }
                spec.dir = Some(text);
            }
        }
    }
    spec.settings =
        FunctionSettings::deserialize(settings).map_err(|e| (None, e.message().to_string()))?;
    Ok(spec)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// ` (did you mean 'x'?)` when one of `known` is close to `given`.
pub fn did_you_mean(given: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::levenshtein(given, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(Path::new("kumo.toml"), text)
    }

    #[test]
    fn a_full_manifest() {
        let m = parse(
            "name = \"shop\"\nsecrets = [\"API_KEY\"]\n\n[functions.api]\nruntime = \"python\"\nentrypoint = \"main.py\"\ndir = \"api\"\nmemory_mb = 256\n\n[[routes]]\nmethod = \"get\"\npath = \"/items/:id\"\nfunction = \"api\"\n\n[env]\nGREETING = \"hi\"\n",
        )
        .expect("valid");
        assert_eq!(m.name, "shop");
        assert_eq!(m.functions["api"].settings.memory_mb, Some(256));
        assert_eq!(m.routes[0].method, "GET");
        assert_eq!(m.env["GREETING"], "hi");
        assert_eq!(m.secrets, ["API_KEY"]);
        let again = parse(&m.to_toml()).expect("what it writes reads back");
        assert_eq!(again.functions, m.functions);
        assert_eq!(again.routes, m.routes);
    }

    #[test]
    fn mistakes_name_their_line() {
        let err = parse("name = \"shop\"\n\n[functions.api]\nruntime = \"pyton\"\n")
            .expect_err("bad runtime");
        assert_eq!(
            err.to_string(),
            "kumo.toml line 4: unknown runtime 'pyton' (did you mean 'python'?); use one of python, node, custom"
        );
        let err =
            parse("name = \"shop\"\n[functions.api]\nruntme = \"python\"\n").expect_err("bad key");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("runtme"), "{err}");
        let err = parse("name = \"Shop!\"\n").expect_err("bad name");
        assert_eq!(err.line, Some(1), "{err}");
        let err = parse("name = \"shop\"\n[functions.api]\n[[routes]]\nmethod = \"GET\"\npath = \"/\"\nfunction = \"apx\"\n")
            .expect_err("bad route");
        assert!(err.to_string().contains("did you mean 'api'"), "{err}");
        let err = parse("name = \"shop\"\nsecrets = [\"A\"]\n[env]\nA = \"x\"\n")
            .expect_err("secret in env");
        assert!(err.to_string().contains("never goes in kumo.toml"), "{err}");
        let err = parse("name = \"shop\"\n[functions.api]\ndir = \"../x\"\n").expect_err("dir");
        assert_eq!(err.line, Some(3));
        let err = parse("name = \"shop\"\n[functions.api]\nmemroy_mb = 256\n")
            .expect_err("misspelt setting");
        assert_eq!(err.line, Some(3), "{err}");
        assert!(
            err.to_string().contains("did you mean 'memory_mb'"),
            "{err}"
        );
        let err =
            parse("name = \"shop\"\n[functions.api]\nruntime = \"node\"\nvisibility = \"pubic\"\n")
                .expect_err("bad visibility");
        assert_eq!(err.line, Some(4), "{err}");
        assert!(
            err.to_string()
                .contains("visibility: unknown variant `pubic`"),
            "{err}"
        );
        let err = parse("name = \"shop\"\n[functions.api]\nmemory_mb = \"lots\"\n")
            .expect_err("a string for a number");
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse("name = [").expect_err("syntax");
        assert_eq!(err.line, Some(1), "{err}");
    }
}

#[cfg(test)]
mod template_tests {
    use kumo_types::templates::TEMPLATES;

    use super::*;

    /// Each template's kumo.toml says what its fields say (the dashboard
    /// uses the fields, `kumo init` the text).
    #[test]
    fn every_template_manifest_agrees_with_its_fields() {
        for t in TEMPLATES {
            let text = t.manifest.replace("{project}", "demo");
            let m = Manifest::parse(Path::new("kumo.toml"), &text)
                .unwrap_or_else(|e| panic!("template {}: {e}", t.name));
            assert_eq!(m.functions.len(), 1, "template {}", t.name);
            let f = &m.functions[t.function];
            assert_eq!(f.runtime, t.runtime, "template {}", t.name);
            assert_eq!(
                f.entrypoint.as_deref(),
                Some(t.entrypoint),
                "template {}",
                t.name
            );
            assert_eq!(f.settings, t.settings, "template {}", t.name);
            assert!(
                t.files.iter().any(|(p, _)| *p == t.entrypoint),
                "template {} has no {}",
                t.name,
                t.entrypoint
            );
            let routes: Vec<(String, String)> = m
                .routes
                .iter()
                .map(|r| {
                    assert_eq!(r.function, t.function, "template {}", t.name);
                    (r.method.clone(), r.path.clone())
                })
                .collect();
            let expected: Vec<(String, String)> = t
                .routes
                .iter()
                .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
                .collect();
            assert_eq!(routes, expected, "template {}", t.name);
            assert_eq!(m.secrets, t.secrets, "template {}", t.name);
        }
    }
}
