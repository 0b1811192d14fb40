//! A project's user routes: `METHOD /path/:param/*rest` → a value (later,
//! a function), matched in memory on the hot path.
//!
//! [`RoutePattern::parse`] checks a path as a user writes it and translates
//! it to the syntax of the `matchit` radix tree (`/users/:id/*rest` becomes
//! `/users/{id}/{*rest}`); its errors are written to be sent back as they
//! are (a 400 when a route is created). [`RouteTable`] holds routes with
//! their methods and answers [`Lookup::Found`], [`Lookup::MethodNotAllowed`]
//! (for a 405 with an `Allow` header) or [`Lookup::NotFound`].
//!
//! Matching rules, in order:
//!
//! - Paths are compared as received: byte for byte, case-sensitive,
//!   percent-encoded, without the query string. Parameter values are
//!   returned as they appear in the path, not percent-decoded.
//! - The most specific pattern wins: a literal segment beats a parameter,
//!   which beats a catch-all.
//! - For the same pattern, a route for the request's method beats an
//!   any-method route.
//! - A trailing slash is significant: `/users/` and `/users` are different
//!   routes, and neither matches the other's paths.
//! - A parameter matches one non-empty segment; a catch-all matches the
//!   non-empty rest of the path, slashes included (`/files/*path` does not
//!   match `/files/`).
//!
//! This module is not the HTTP layer and knows nothing of projects,
//! functions or storage: it neither answers requests nor decodes paths, it
//! does not map `HEAD` to `GET`, and it has no removal. A table is built
//! once from a project's routes and shared read-only; a change to the
//! routes builds a new table.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use axum::http::Method;

/// The longest route path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;

/// The longest parameter name accepted, in bytes.
pub const MAX_PARAM_NAME_BYTES: usize = 64;

/// The most `:name` parameters a route may have (a `*rest` catch-all comes
/// on top): the router names them `a` to `z` inside and panics at the 26th.
pub const MAX_PARAMS: usize = 25;

/// Punctuation allowed in literal segments besides letters, digits and
/// `%XX` escapes: RFC 3986 path characters, less the ones that mean
/// something in a pattern (`:`, `*`) or in the router (`{`, `}`).
const LITERAL_PUNCTUATION: &str = "-._~!$&'()+,;=@";

/// Why a route path or a route was refused. The messages are meant for the
/// user who wrote the route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The path is over [`MAX_PATH_BYTES`].
    #[error("invalid route path: it is {len} bytes long; the limit is {MAX_PATH_BYTES}")]
    TooLong {
        /// The length of the path given.
        len: usize,
    },
    /// The path has more than [`MAX_PARAMS`] `:name` parameters.
    #[error(
        "invalid route path '{path}': it has {count} parameters; the limit is {MAX_PARAMS} (besides one *catch-all)"
    )]
    TooManyParams {
        /// The path given (shortened when long).
        path: String,
        /// How many `:name` parameters it has.
        count: usize,
    },
    /// The path does not start with `/`.
    #[error("invalid route path '{path}': must start with '/'")]
    NoLeadingSlash {
        /// The path given (shortened when long).
        path: String,
    },
    /// The path has an empty segment (`//`) before its end.
    #[error(
        "invalid route path '{path}': must not contain empty segments ('//'); only a trailing '/' is allowed"
    )]
    EmptySegment {
        /// The path given (shortened when long).
        path: String,
    },
    /// The path has a `.` or `..` segment.
    #[error("invalid route path '{path}': must not contain '.' or '..' segments")]
    DotSegment {
        /// The path given (shortened when long).
        path: String,
    },
    /// A literal segment has `{` or `}`, the router's own syntax.
    #[error(
        "invalid route path '{path}': '{{' and '}}' are not allowed; write a parameter as ':name' and a catch-all as '*name'"
    )]
    Brace {
        /// The path given (shortened when long).
        path: String,
    },
    /// A `:` somewhere else than at the start of a segment.
    #[error(
        "invalid route path '{path}': ':' may only start a segment, as a parameter like '/users/:id'"
    )]
    MisplacedColon {
        /// The path given (shortened when long).
        path: String,
    },
    /// A `*` somewhere else than at the start of a segment.
    #[error(
        "invalid route path '{path}': '*' may only start the last segment, as a catch-all like '/files/*path'"
    )]
    MisplacedStar {
        /// The path given (shortened when long).
        path: String,
    },
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid route path '{path}': '%' must be followed by two hexadecimal digits")]
    BadEscape {
        /// The path given (shortened when long).
        path: String,
    },
    /// A character that has no place in a URL path.
    #[error(
        "invalid route path '{path}': character {character:?} is not allowed; use letters, digits, {LITERAL_PUNCTUATION} and %XX escapes"
    )]
    BadCharacter {
        /// The path given (shortened when long).
        path: String,
        /// The first character refused.
        character: char,
    },
    /// A `:` or `*` with no name after it.
    #[error("invalid route path '{path}': '{sigil}' must be followed by a name")]
    MissingParamName {
        /// The path given (shortened when long).
        path: String,
        /// `:` for a parameter, `*` for a catch-all.
        sigil: char,
    },
    /// A parameter name outside `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    #[error(
        "invalid route path '{path}': '{sigil}{name}' has an invalid name; a name is a letter or '_' followed by at most 63 letters, digits or '_'"
    )]
    BadParamName {
        /// The path given (shortened when long).
        path: String,
        /// `:` for a parameter, `*` for a catch-all.
        sigil: char,
        /// The name refused (shortened when long).
        name: String,
    },
    /// Two parameters with the same name.
    #[error(
        "invalid route path '{path}': parameter '{name}' appears twice; give each parameter its own name"
    )]
    DuplicateParam {
        /// The path given (shortened when long).
        path: String,
        /// The name used twice.
        name: String,
    },
    /// A catch-all followed by more of the path.
    #[error("invalid route path '{path}': the catch-all '*{name}' must be the last segment")]
    CatchAllNotLast {
        /// The path given (shortened when long).
        path: String,
        /// The name of the catch-all.
        name: String,
    },
    /// The same method and pattern are already in the table.
    #[error("route '{route}' is already defined")]
    Duplicate {
        /// The route, as `METHOD /path`.
        route: String,
    },
    /// The route cannot share the table with one already in it, for example
    /// `/users/:id` and `/users/:name`, or `/users/:id/posts` and
    /// `/users/*rest`.
    #[error("route '{route}' conflicts with the existing route '{existing}'")]
    Conflict {
        /// The route refused, as `METHOD /path`.
        route: String,
        /// The route in the way, as `METHOD /path` (or only the path when
        /// the router names no single route).
        existing: String,
    },
    /// The router refused the route for a reason the checks above do not
    /// cover; a bug in this module if it ever happens.
    #[error("route '{route}' was refused by the router: {reason}")]
    Refused {
        /// The route refused, as `METHOD /path`.
        route: String,
        /// What the router said.
        reason: String,
    },
}

/// A checked route path such as `/users/:id/*rest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePattern {
    /// The path as the user wrote it, kept as is: it is what error messages
    /// and listings show.
    source: String,
    /// The same path in `matchit` syntax.
    router_path: String,
}

impl RoutePattern {
    /// Checks a route path and translates it for the router.
    pub fn parse(path: &str) -> Result<RoutePattern, RouteError> {
        if path.len() > MAX_PATH_BYTES {
            return Err(RouteError::TooLong { len: path.len() });
        }
        let shown = || preview(path);
        let Some(rest) = path.strip_prefix('/') else {
            return Err(RouteError::NoLeadingSlash { path: shown() });
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let last = segments.len() - 1;
        let mut router_path = String::with_capacity(path.len() + 8);
        let mut names: HashSet<&str> = HashSet::new();
        let mut params = 0usize;
        for (i, segment) in segments.iter().copied().enumerate() {
            router_path.push('/');
            if segment.is_empty() {
                // Only the last segment may be empty: the root `/` or a
                // trailing slash.
                if i == last {
                    continue;
                }
                return Err(RouteError::EmptySegment { path: shown() });
            }
            let (sigil, name) = match segment.as_bytes()[0] {
                b':' => (':', &segment[1..]),
                b'*' => ('*', &segment[1..]),
                _ => {
                    check_literal(segment, path)?;
                    router_path.push_str(segment);
                    continue;
                }
            };
            if name.is_empty() {
                return Err(RouteError::MissingParamName {
                    path: shown(),
                    sigil,
                });
            }
            if !is_param_name(name) {
                // A name with the pattern's own characters in it is more
                // likely a misplaced sigil than a bad name.
                if name.contains(['{', '}']) {
                    return Err(RouteError::Brace { path: shown() });
                }
                if name.contains('*') {
                    return Err(RouteError::MisplacedStar { path: shown() });
                }
                if name.contains(':') {
                    return Err(RouteError::MisplacedColon { path: shown() });
                }
                return Err(RouteError::BadParamName {
                    path: shown(),
                    sigil,
                    name: preview(name),
                });
            }
            if sigil == '*' && i != last {
                return Err(RouteError::CatchAllNotLast {
                    path: shown(),
                    name: name.to_string(),
                });
            }
            if !names.insert(name) {
                return Err(RouteError::DuplicateParam {
                    path: shown(),
                    name: name.to_string(),
                });
            }
            if sigil == ':' {
                params += 1;
                if params > MAX_PARAMS {
                    return Err(RouteError::TooManyParams {
                        path: shown(),
                        count: segments.iter().filter(|s| s.starts_with(':')).count(),
                    });
                }
            }
            router_path.push('{');
            if sigil == '*' {
                router_path.push('*');
            }
            router_path.push_str(name);
            router_path.push('}');
        }
        Ok(RoutePattern {
            source: path.to_string(),
            router_path,
        })
    }

    /// The path as written, e.g. `/users/:id/*rest`.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The path in `matchit` syntax, e.g. `/users/{id}/{*rest}`.
    pub fn router_path(&self) -> &str {
        &self.router_path
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for RoutePattern {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoutePattern::parse(s)
    }
}

/// `[A-Za-z_][A-Za-z0-9_]{0,63}`.
fn is_param_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_PARAM_NAME_BYTES
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// Checks one literal segment (not empty, not starting with `:` or `*`).
fn check_literal(segment: &str, path: &str) -> Result<(), RouteError> {
    let shown = || preview(path);
    if segment == "." || segment == ".." {
        return Err(RouteError::DotSegment { path: shown() });
    }
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_ascii_alphanumeric() || LITERAL_PUNCTUATION.contains(c) => {}
            '%' => {
                let hex = |c: Option<char>| c.is_some_and(|c| c.is_ascii_hexdigit());
                if !(hex(chars.next()) && hex(chars.next())) {
                    return Err(RouteError::BadEscape { path: shown() });
                }
            }
            '{' | '}' => return Err(RouteError::Brace { path: shown() }),
            ':' => return Err(RouteError::MisplacedColon { path: shown() }),
            '*' => return Err(RouteError::MisplacedStar { path: shown() }),
            character => {
                return Err(RouteError::BadCharacter {
                    path: shown(),
                    character,
                });
            }
        }
    }
    Ok(())
}

/// At most 64 characters of `s`, for error messages.
fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Routes with their methods, matched by method and path.
///
/// Inside, one radix tree holds the any-method routes, and one tree per
/// method that has routes of its own holds those routes plus the
/// any-method ones, so a lookup walks a single tree.
pub struct RouteTable<T> {
    /// Every route, in the order inserted; the trees hold indexes into it.
    routes: Vec<Route<T>>,
    /// The any-method routes.
    any: matchit::Router<usize>,
    /// Per method: its own routes and the any-method routes.
    methods: Vec<(Method, matchit::Router<usize>)>,
}

struct Route<T> {
    method: Option<Method>,
    pattern: RoutePattern,
    value: T,
}

impl<T> Route<T> {
    fn describe(&self) -> String {
        describe(self.method.as_ref(), &self.pattern)
    }
}

/// `GET /users/:id`, or `ANY /users/:id` for an any-method route.
fn describe(method: Option<&Method>, pattern: &RoutePattern) -> String {
    match method {
        Some(method) => format!("{method} {pattern}"),
        None => format!("ANY {pattern}"),
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'t, 'p, T> {
    /// A route matches the method and the path.
    Found(Match<'t, 'p, T>),
    /// Routes match the path, but none for this method (a 405).
    MethodNotAllowed {
        /// The methods that have a route for the path, for `Allow`.
        allowed: Vec<&'t Method>,
    },
    /// No route matches the path (a 404).
    NotFound,
}

/// A route that matched, with the parameters taken from the path.
#[derive(Debug)]
pub struct Match<'t, 'p, T> {
    /// The value of the route.
    pub value: &'t T,
    /// The pattern of the route.
    pub pattern: &'t RoutePattern,
    /// The method of the route; `None` for an any-method route.
    pub method: Option<&'t Method>,
    /// The parameters, names from the table and values from the path.
    pub params: Params<'t, 'p>,
}

/// The parameters of a match, in the order of the pattern; the catch-all
/// comes last. Up to three are held without allocating.
#[derive(Debug, Clone)]
pub struct Params<'t, 'p>(matchit::Params<'t, 'p>);

impl<'t, 'p> Params<'t, 'p> {
    /// The value of the parameter `name`, as it appears in the path.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.0.get(name)
    }

    /// The parameters as `(name, value)` pairs.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'t str, &'p str)> + '_ {
        self.0.iter()
    }

    /// How many parameters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            routes: Vec::new(),
            any: matchit::Router::new(),
            methods: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Adds a route; `method` `None` means any method. On error the table
    /// is left as it was.
    pub fn insert(
        &mut self,
        method: Option<Method>,
        pattern: RoutePattern,
        value: T,
    ) -> Result<(), RouteError> {
        let index = self.routes.len();
        let route = Route {
            method,
            pattern,
            value,
        };
        match &route.method {
            Some(method) => self.insert_for_method(method, &route, index)?,
            None => self.insert_for_any(&route, index)?,
        }
        self.routes.push(route);
        Ok(())
    }

    fn insert_for_method(
        &mut self,
        method: &Method,
        route: &Route<T>,
        index: usize,
    ) -> Result<(), RouteError> {
        let path = route.pattern.router_path();
        // The same pattern may already be in this method's tree, for this
        // method (a duplicate) or for any method (which this route overrides).
        let mut overridden = None;
        for (i, existing) in self.routes.iter().enumerate() {
            if existing.pattern != route.pattern {
                continue;
            }
            match &existing.method {
                Some(m) if m == method => {
                    return Err(RouteError::Duplicate {
                        route: route.describe(),
                    });
                }
                Some(_) => {}
                None => overridden = Some(i),
            }
        }
        let position = self.methods.iter().position(|(m, _)| m == method);
        let mut tree = match position {
            Some(p) => std::mem::take(&mut self.methods[p].1),
            None => self.any_only_tree(),
        };
        if overridden.is_some() {
            tree.remove(path);
        }
        let result = tree.insert(path, index).map_err(|e| {
            if let Some(any_index) = overridden {
                // Put back what was there; it went in before, so it goes in
                // again.
                let _ = tree.insert(path, any_index);
            }
            self.insert_error(e, route, Some(method))
        });
        match position {
            Some(p) => self.methods[p].1 = tree,
            None if result.is_ok() => self.methods.push((method.clone(), tree)),
            None => {}
        }
        result
    }

    fn insert_for_any(&mut self, route: &Route<T>, index: usize) -> Result<(), RouteError> {
        let path = route.pattern.router_path();
        if self
            .routes
            .iter()
            .any(|r| r.method.is_none() && r.pattern == route.pattern)
        {
            return Err(RouteError::Duplicate {
                route: route.describe(),
            });
        }
        self.any
            .insert(path, index)
            .map_err(|e| self.insert_error(e, route, None))?;
        let mut inserted: Vec<usize> = Vec::new();
        for i in 0..self.methods.len() {
            // A route for this method with the same pattern wins over the
            // any-method one, which then stays out of this tree.
            let method = &self.methods[i].0;
            if self
                .routes
                .iter()
                .any(|r| r.method.as_ref() == Some(method) && r.pattern == route.pattern)
            {
                continue;
            }
            if let Err(e) = self.methods[i].1.insert(path, index) {
                let error = self.insert_error(e, route, Some(&self.methods[i].0));
                // Take the route out of the trees it went into, so the table
                // is as it was.
                self.any.remove(path);
                for j in inserted {
                    self.methods[j].1.remove(path);
                }
                return Err(error);
            }
            inserted.push(i);
        }
        Ok(())
    }

    /// A new method's tree: the any-method routes, in the order they went
    /// into the any-method tree, so they go in again without conflict.
    fn any_only_tree(&self) -> matchit::Router<usize> {
        let mut tree = matchit::Router::new();
        for (i, route) in self.routes.iter().enumerate() {
            if route.method.is_none() {
                // Cannot fail: the same routes went into `self.any` in this
                // order.
                let _ = tree.insert(route.pattern.router_path(), i);
            }
        }
        tree
    }

    /// Turns the router's refusal into a message that names both routes,
    /// in the user's syntax.
    fn insert_error(
        &self,
        error: matchit::InsertError,
        route: &Route<T>,
        tree: Option<&Method>,
    ) -> RouteError {
        let matchit::InsertError::Conflict { with } = error else {
            return RouteError::Refused {
                route: route.describe(),
                reason: error.to_string(),
            };
        };
        // Patterns have no braces in their literals, so the router's
        // syntax goes back to ours by replacing the braces.
        let existing = with.replace("{*", "*").replace('{', ":").replace('}', "");
        // Name the method of the route in the way when the tree holds
        // exactly that pattern; the routes of the tree's own method first.
        let in_tree = |r: &&Route<T>| {
            r.pattern.as_str() == existing && (r.method.is_none() || r.method.as_ref() == tree)
        };
        let found = self
            .routes
            .iter()
            .filter(in_tree)
            .max_by_key(|r| r.method.is_some());
        RouteError::Conflict {
            route: route.describe(),
            existing: found.map_or(existing, Route::describe),
        }
    }

    /// Finds the route for `method` and `path` (the path only: no query
    /// string, not percent-decoded).
    pub fn lookup<'t, 'p>(&'t self, method: &Method, path: &'p str) -> Lookup<'t, 'p, T> {
        let own = self.methods.iter().find(|(m, _)| m == method);
        let tree = own.map_or(&self.any, |(_, tree)| tree);
        if let Ok(found) = tree.at(path) {
            let route = &self.routes[*found.value];
            return Lookup::Found(Match {
                value: &route.value,
                pattern: &route.pattern,
                method: route.method.as_ref(),
                params: Params(found.params),
            });
        }
        // Any-method routes are in every tree and did not match: only
        // other methods' own routes can.
        let allowed: Vec<&Method> = self
            .methods
            .iter()
            .filter(|(m, tree)| m != method && tree.at(path).is_ok())
            .map(|(m, _)| m)
            .collect();
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed { allowed }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|r| (r.describe(), &r.value))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(path: &str) -> RoutePattern {
        RoutePattern::parse(path).expect("valid pattern")
    }

    fn error(path: &str) -> String {
        RoutePattern::parse(path)
            .expect_err("invalid pattern")
            .to_string()
    }

    fn table(routes: &[(Option<Method>, &str, &'static str)]) -> RouteTable<&'static str> {
        let mut table = RouteTable::new();
        for (method, path, value) in routes {
            table
                .insert(method.clone(), pattern(path), *value)
                .expect("no conflict");
        }
        table
    }

    /// The value and parameters found, or "404", or "405 GET,POST".
    fn find(table: &RouteTable<&'static str>, method: Method, path: &str) -> String {
        match table.lookup(&method, path) {
            Lookup::Found(m) => {
                let mut out = m.value.to_string();
                for (name, value) in m.params.iter() {
                    out.push_str(&format!(" {name}={value}"));
                }
                out
            }
            Lookup::MethodNotAllowed { allowed } => {
                let allowed: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                format!("405 {}", allowed.join(","))
            }
            Lookup::NotFound => "404".to_string(),
        }
    }

    fn conflict(
        table: &mut RouteTable<&'static str>,
        method: Option<Method>,
        path: &str,
    ) -> String {
        table
            .insert(method, pattern(path), "x")
            .expect_err("conflict")
            .to_string()
    }

    /// The router panics on the 26th parameter of a route; the limit is
    /// checked before it sees one, and the most it takes works.
    #[test]
    fn too_many_params_are_refused_before_the_router_panics() {
        let path = |n: usize| -> String { (0..n).map(|i| format!("/:p{i}")).collect() };
        let message = error(&path(26));
        assert!(message.contains("26 parameters"), "{message}");
        assert!(message.contains("the limit is 25"), "{message}");
        assert!(error(&path(40)).contains("40 parameters"));

        let most = format!("{}/*rest", path(MAX_PARAMS));
        let mut table = RouteTable::new();
        table
            .insert(Some(Method::GET), pattern(&most), "most")
            .expect("25 parameters and a catch-all fit");
        let request: String = (0..MAX_PARAMS).map(|i| format!("/v{i}")).collect();
        let found = find(&table, Method::GET, &format!("{request}/x/y"));
        assert!(found.starts_with("most p0=v0 p1=v1"), "{found}");
        assert!(found.ends_with("p24=v24 rest=x/y"), "{found}");
    }

    #[test]
    fn translation() {
        let cases = [
            ("/", "/"),
            ("/users", "/users"),
            ("/users/", "/users/"),
            ("/users/:id", "/users/{id}"),
            ("/users/:id/", "/users/{id}/"),
            ("/users/:id/*rest", "/users/{id}/{*rest}"),
            ("/*path", "/{*path}"),
            ("/v1/:_x9/files.json", "/v1/{_x9}/files.json"),
            (
                "/a-b_c.d~e!$&'()+,;=@/%2F%c3%a9",
                "/a-b_c.d~e!$&'()+,;=@/%2F%c3%a9",
            ),
        ];
        for (given, router) in cases {
            let p = pattern(given);
            assert_eq!(p.as_str(), given);
            assert_eq!(p.to_string(), given);
            assert_eq!(p.router_path(), router, "{given}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(RoutePattern::parse(&long).is_ok());
        let name = format!("/:{}", "n".repeat(MAX_PARAM_NAME_BYTES));
        assert!(RoutePattern::parse(&name).is_ok());
        assert_eq!("/x".parse::<RoutePattern>(), Ok(pattern("/x")));
    }

    #[test]
    fn invalid_patterns() {
        let too_long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(
            error(&too_long),
            "invalid route path: it is 1025 bytes long; the limit is 1024"
        );
        assert_eq!(error(""), "invalid route path '': must start with '/'");
        assert_eq!(
            error("users/:id"),
            "invalid route path 'users/:id': must start with '/'"
        );
        let empty = "must not contain empty segments ('//'); only a trailing '/' is allowed";
        for path in ["//", "/a//b", "/a//", "//a"] {
            assert_eq!(error(path), format!("invalid route path '{path}': {empty}"));
        }
        for path in ["/.", "/a/../b", "/a/./"] {
            assert_eq!(
                error(path),
                format!("invalid route path '{path}': must not contain '.' or '..' segments")
            );
        }
        let brace =
            "'{' and '}' are not allowed; write a parameter as ':name' and a catch-all as '*name'";
        for path in ["/users/{id}", "/a}", "/:id{", "/{*rest}"] {
            assert_eq!(error(path), format!("invalid route path '{path}': {brace}"));
        }
        let colon = "':' may only start a segment, as a parameter like '/users/:id'";
        for path in ["/a:b", "/users/:id:action", "/users/x:"] {
            assert_eq!(error(path), format!("invalid route path '{path}': {colon}"));
        }
        let star = "'*' may only start the last segment, as a catch-all like '/files/*path'";
        for path in ["/a*", "/:id*", "/**"] {
            assert_eq!(error(path), format!("invalid route path '{path}': {star}"));
        }
        for path in ["/a%", "/a%2", "/a%zz", "/%g0"] {
            assert_eq!(
                error(path),
                format!(
                    "invalid route path '{path}': '%' must be followed by two hexadecimal digits"
                )
            );
        }
        for (path, c) in [
            ("/a b", "' '"),
            ("/a?b", "'?'"),
            ("/a#b", "'#'"),
            ("/caf\u{e9}", "'\u{e9}'"),
            ("/a\\b", "'\\\\'"),
            ("/a\nb", "'\\n'"),
            ("/<x>", "'<'"),
        ] {
            assert_eq!(
                error(path),
                format!(
                    "invalid route path '{path}': character {c} is not allowed; use letters, digits, -._~!$&'()+,;=@ and %XX escapes"
                )
            );
        }
        assert_eq!(
            error("/users/:"),
            "invalid route path '/users/:': ':' must be followed by a name"
        );
        assert_eq!(
            error("/files/*"),
            "invalid route path '/files/*': '*' must be followed by a name"
        );
        let rule = "a name is a letter or '_' followed by at most 63 letters, digits or '_'";
        for (path, name) in [
            ("/:1st", ":1st"),
            ("/:a-b", ":a-b"),
            ("/files/*.png", "*.png"),
        ] {
            assert_eq!(
                error(path),
                format!("invalid route path '{path}': '{name}' has an invalid name; {rule}")
            );
        }
        let long_name = "n".repeat(MAX_PARAM_NAME_BYTES + 1);
        assert_eq!(
            error(&format!("/:{long_name}")),
            format!(
                "invalid route path '/:{}…': ':{}…' has an invalid name; {rule}",
                &long_name[..62],
                &long_name[..64]
            )
        );
        assert_eq!(
            error("/a/:id/b/:id"),
            "invalid route path '/a/:id/b/:id': parameter 'id' appears twice; give each parameter its own name"
        );
        assert_eq!(
            error("/a/:id/*id"),
            "invalid route path '/a/:id/*id': parameter 'id' appears twice; give each parameter its own name"
        );
        assert_eq!(
            error("/files/*rest/x"),
            "invalid route path '/files/*rest/x': the catch-all '*rest' must be the last segment"
        );
        assert_eq!(
            error("/files/*rest/"),
            "invalid route path '/files/*rest/': the catch-all '*rest' must be the last segment"
        );
    }

    #[test]
    fn literals() {
        let t = table(&[
            (None, "/", "root"),
            (None, "/users", "users"),
            (None, "/users/me", "me"),
            (None, "/v1/things.json", "things"),
        ]);
        assert_eq!(find(&t, Method::GET, "/"), "root");
        assert_eq!(find(&t, Method::GET, "/users"), "users");
        assert_eq!(find(&t, Method::GET, "/users/me"), "me");
        assert_eq!(find(&t, Method::GET, "/v1/things.json"), "things");
        assert_eq!(find(&t, Method::GET, "/Users"), "404");
        assert_eq!(find(&t, Method::GET, "/users/m"), "404");
        assert_eq!(find(&t, Method::GET, "/users/me/x"), "404");
        assert_eq!(find(&t, Method::GET, ""), "404");
        assert_eq!(find(&t, Method::GET, "users"), "404");
        assert_eq!(t.len(), 4);
        assert!(!t.is_empty());
        assert!(RouteTable::<()>::new().is_empty());
    }

    #[test]
    fn params() {
        let t = table(&[
            (None, "/users/:id", "user"),
            (None, "/users/:id/posts/:post", "post"),
            (None, "/users/me", "me"),
            (None, "/orgs/:org/users/:user/*rest", "deep"),
        ]);
        assert_eq!(find(&t, Method::GET, "/users/42"), "user id=42");
        assert_eq!(find(&t, Method::GET, "/users/me"), "me");
        assert_eq!(find(&t, Method::GET, "/users/mee"), "user id=mee");
        assert_eq!(
            find(&t, Method::GET, "/users/42/posts/7"),
            "post id=42 post=7"
        );
        assert_eq!(
            find(&t, Method::GET, "/orgs/o/users/u/a/b"),
            "deep org=o user=u rest=a/b"
        );
        // Values come from the path as they are, not decoded.
        assert_eq!(find(&t, Method::GET, "/users/a%20b"), "user id=a%20b");
        // A parameter matches one non-empty segment.
        assert_eq!(find(&t, Method::GET, "/users/"), "404");
        assert_eq!(find(&t, Method::GET, "/users//posts/7"), "404");
        assert_eq!(find(&t, Method::GET, "/users/42/posts"), "404");
        let Lookup::Found(m) = t.lookup(&Method::GET, "/users/42/posts/7") else {
            panic!("expected a match");
        };
        assert_eq!(m.params.get("post"), Some("7"));
        assert_eq!(m.params.get("nope"), None);
        assert_eq!(m.params.len(), 2);
        assert!(!m.params.is_empty());
        assert_eq!(m.pattern.as_str(), "/users/:id/posts/:post");
        assert_eq!(m.method, None);
    }

    #[test]
    fn catch_all() {
        let t = table(&[
            (None, "/files/*path", "files"),
            (None, "/files/index", "index"),
            (None, "/*all", "fallback"),
            (None, "/", "root"),
        ]);
        assert_eq!(find(&t, Method::GET, "/files/a"), "files path=a");
        assert_eq!(find(&t, Method::GET, "/files/a/b/"), "files path=a/b/");
        assert_eq!(find(&t, Method::GET, "/files/index"), "index");
        assert_eq!(
            find(&t, Method::GET, "/files/index/x"),
            "files path=index/x"
        );
        // A catch-all matches a non-empty rest only.
        assert_eq!(find(&t, Method::GET, "/files/"), "fallback all=files/");
        assert_eq!(find(&t, Method::GET, "/files"), "fallback all=files");
        assert_eq!(find(&t, Method::GET, "/"), "root");
        assert_eq!(find(&t, Method::GET, "/x/y"), "fallback all=x/y");
        let only = table(&[(None, "/files/*path", "files")]);
        assert_eq!(find(&only, Method::GET, "/files/"), "404");
    }

    #[test]
    fn trailing_slash() {
        let t = table(&[
            (None, "/a", "a"),
            (None, "/b/", "b/"),
            (None, "/c", "c"),
            (None, "/c/", "c/"),
            (None, "/users/:id/", "user/"),
        ]);
        assert_eq!(find(&t, Method::GET, "/a"), "a");
        assert_eq!(find(&t, Method::GET, "/a/"), "404");
        assert_eq!(find(&t, Method::GET, "/b/"), "b/");
        assert_eq!(find(&t, Method::GET, "/b"), "404");
        assert_eq!(find(&t, Method::GET, "/c"), "c");
        assert_eq!(find(&t, Method::GET, "/c/"), "c/");
        assert_eq!(find(&t, Method::GET, "/users/1/"), "user/ id=1");
        assert_eq!(find(&t, Method::GET, "/users/1"), "404");
    }

    #[test]
    fn method_precedence() {
        let t = table(&[
            (None, "/items/:id", "any item"),
            (Some(Method::GET), "/items/:id", "get item"),
            (Some(Method::DELETE), "/items/:id", "delete item"),
            (Some(Method::GET), "/items/new", "get new"),
            (None, "/items/special", "any special"),
        ]);
        assert_eq!(find(&t, Method::GET, "/items/1"), "get item id=1");
        assert_eq!(find(&t, Method::DELETE, "/items/1"), "delete item id=1");
        assert_eq!(find(&t, Method::PUT, "/items/1"), "any item id=1");
        let custom = Method::from_bytes(b"PURGE").expect("method");
        assert_eq!(find(&t, custom, "/items/1"), "any item id=1");
        // The most specific pattern wins before the method is considered.
        assert_eq!(find(&t, Method::GET, "/items/special"), "any special");
        assert_eq!(find(&t, Method::GET, "/items/new"), "get new");
        assert_eq!(find(&t, Method::POST, "/items/new"), "any item id=new");
        let Lookup::Found(m) = t.lookup(&Method::GET, "/items/1") else {
            panic!("expected a match");
        };
        assert_eq!(m.method, Some(&Method::GET));

        // Inserted the other way round, the any-method route still loses
        // to the method's own route on the same pattern.
        let t = table(&[
            (Some(Method::GET), "/items/:id", "get item"),
            (None, "/items/:id", "any item"),
        ]);
        assert_eq!(find(&t, Method::GET, "/items/1"), "get item id=1");
        assert_eq!(find(&t, Method::POST, "/items/1"), "any item id=1");
    }

    #[test]
    fn method_not_allowed() {
        let t = table(&[
            (Some(Method::GET), "/users/:id", "get user"),
            (Some(Method::PUT), "/users/:id", "put user"),
            (Some(Method::POST), "/users", "create user"),
            (None, "/health", "health"),
        ]);
        assert_eq!(find(&t, Method::DELETE, "/users/1"), "405 GET,PUT");
        assert_eq!(find(&t, Method::POST, "/users/1"), "405 GET,PUT");
        assert_eq!(find(&t, Method::GET, "/users"), "405 POST");
        assert_eq!(find(&t, Method::GET, "/nope"), "404");
        assert_eq!(find(&t, Method::DELETE, "/nope"), "404");
        assert_eq!(find(&t, Method::DELETE, "/health"), "health");
        assert_eq!(find(&t, Method::GET, "/health"), "health");
    }

    #[test]
    fn conflicts() {
        let mut t = table(&[
            (Some(Method::GET), "/users/:id", "get user"),
            (None, "/files/*path", "files"),
            (None, "/orgs/:org/repos", "repos"),
        ]);
        assert_eq!(
            conflict(&mut t, Some(Method::GET), "/users/:id"),
            "route 'GET /users/:id' is already defined"
        );
        assert_eq!(
            conflict(&mut t, None, "/files/*path"),
            "route 'ANY /files/*path' is already defined"
        );
        assert_eq!(
            conflict(&mut t, Some(Method::GET), "/users/:name"),
            "route 'GET /users/:name' conflicts with the existing route 'GET /users/:id'"
        );
        assert_eq!(
            conflict(&mut t, None, "/users/:name"),
            "route 'ANY /users/:name' conflicts with the existing route 'GET /users/:id'"
        );
        assert_eq!(
            conflict(&mut t, None, "/files/:name"),
            "route 'ANY /files/:name' conflicts with the existing route 'ANY /files/*path'"
        );
        assert_eq!(
            conflict(&mut t, Some(Method::POST), "/files/*rest"),
            "route 'POST /files/*rest' conflicts with the existing route 'ANY /files/*path'"
        );
        assert_eq!(
            conflict(&mut t, Some(Method::PUT), "/orgs/*rest"),
            "route 'PUT /orgs/*rest' conflicts with the existing route 'ANY /orgs/:org/repos'"
        );
        // Other methods may use other names at the same place.
        t.insert(Some(Method::POST), pattern("/users/:name"), "post user")
            .expect("no conflict across methods");
        // Refused routes left nothing behind.
        assert_eq!(t.len(), 4);
        assert_eq!(find(&t, Method::PUT, "/users/1"), "405 GET,POST");
        assert_eq!(find(&t, Method::POST, "/users/1"), "post user name=1");
        assert_eq!(find(&t, Method::DELETE, "/files/a"), "files path=a");
        assert_eq!(find(&t, Method::PUT, "/orgs/o/repos"), "repos org=o");
        assert_eq!(find(&t, Method::PUT, "/orgs/o"), "404");
    }

    #[test]
    fn refused_any_route_leaves_every_tree_as_it_was() {
        let mut t = table(&[
            (Some(Method::GET), "/a", "get a"),
            (Some(Method::POST), "/users/:id", "post user"),
        ]);
        // Goes into the any tree and GET's, then conflicts in POST's.
        assert_eq!(
            conflict(&mut t, None, "/users/:name"),
            "route 'ANY /users/:name' conflicts with the existing route 'POST /users/:id'"
        );
        assert_eq!(find(&t, Method::GET, "/users/1"), "405 POST");
        assert_eq!(find(&t, Method::PUT, "/users/1"), "405 POST");
        // The refused pattern, had it stayed, would conflict with these.
        t.insert(None, pattern("/users/*rest"), "any rest")
            .expect_err("conflicts with POST /users/:id");
        t.insert(Some(Method::GET), pattern("/users/:uid"), "get user")
            .expect("nothing left of the refused route");
        t.insert(Some(Method::PUT), pattern("/users/:key"), "put user")
            .expect("a new method's tree has only the any-method routes");
        assert_eq!(find(&t, Method::GET, "/users/1"), "get user uid=1");
        assert_eq!(find(&t, Method::PUT, "/users/1"), "put user key=1");
        assert_eq!(find(&t, Method::DELETE, "/users/1"), "405 GET,POST,PUT");
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn new_method_tree_holds_the_any_routes() {
        let mut t = table(&[(None, "/a/:x", "any a"), (None, "/b/*rest", "any b")]);
        t.insert(Some(Method::PATCH), pattern("/c"), "patch c")
            .expect("no conflict");
        assert_eq!(find(&t, Method::PATCH, "/a/1"), "any a x=1");
        assert_eq!(find(&t, Method::PATCH, "/b/1/2"), "any b rest=1/2");
        assert_eq!(find(&t, Method::PATCH, "/c"), "patch c");
        assert_eq!(find(&t, Method::GET, "/c"), "405 PATCH");
        // A refused first route of a method leaves no tree for it.
        assert_eq!(
            conflict(&mut t, Some(Method::PUT), "/a/:y"),
            "route 'PUT /a/:y' conflicts with the existing route 'ANY /a/:x'"
        );
        assert_eq!(find(&t, Method::GET, "/c"), "405 PATCH");
    }
}
