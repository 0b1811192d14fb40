//! Accounts and tokens: the first-start admin, password login, API tokens
//! (stored as SHA-256 hashes), the dashboard's session cookie, the `Authed`
//! extractor, login throttling.
//!
//! An API request is authenticated by `Authorization: Bearer TOKEN` or by
//! the dashboard's session cookie ([`SESSION_COOKIE`]: `HttpOnly`,
//! `SameSite=Strict`, `Path=/api`, so no script and no function URL ever
//! sees it). A request that changes something on the strength of the cookie
//! alone must also carry the session's CSRF token in [`CSRF_HEADER`]: a
//! page of another origin (a function's, say) can make the browser send
//! the cookie, but cannot read the token nor set the header.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use kumo_store::{Scope, Store, UserRow};
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::ApiError;

/// How long a validated token is trusted without asking the store.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// The dashboard's session cookie.
pub(crate) const SESSION_COOKIE: &str = "kumo_session";
/// The header a cookie-authenticated request that changes something must
/// carry, with the session's CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-kumo-csrf";
/// Failed logins allowed per user name in [`LOGIN_WINDOW`].
const LOGIN_FAILURES_ALLOWED: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(300);

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub(crate) user_id: String,
    pub(crate) username: String,
    pub(crate) is_admin: bool,
}

impl Authed {
    /// What this caller may see: its own rows, or all rows for an admin.
    pub(crate) fn scope(&self) -> Scope<'_> {
        if self.is_admin {
            Scope::All
        } else {
            Scope::Owner(&self.user_id)
        }
    }

    /// Whether this caller may use something owned by `owner_id`.
    pub(crate) fn can_access(&self, owner_id: &str) -> bool {
        self.is_admin || self.user_id == owner_id
    }
}

/// Token validation with a short cache, and login throttling.
pub(crate) struct Auth {
    store: Store,
    cache: Mutex<HashMap<String, (Authed, Instant)>>,
    /// Hashes that named no token a moment ago: the gateway asks about
    /// every bearer token it sees, most of them an app's own.
    misses: Mutex<HashMap<String, Instant>>,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Auth {
    pub(crate) fn new(store: Store) -> Self {
        Auth {
            store,
            cache: Mutex::new(HashMap::new()),
            misses: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The user behind a bearer token, or `None`.
    pub(crate) async fn check_token(&self, token: &str) -> Result<Option<Authed>, ApiError> {
        let hash = hash_token(token);
        if let Some((authed, at)) = self.cache.lock().expect("auth cache poisoned").get(&hash)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(authed.clone()));
        }
        if let Some(at) = self.misses.lock().expect("auth cache poisoned").get(&hash)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(None);
        }
        let Some((user, token_id)) = self.store.user_by_token(&hash).await? else {
            let mut misses = self.misses.lock().expect("auth cache poisoned");
            if misses.len() > 10_000 {
                misses.clear();
            }
            misses.insert(hash, Instant::now());
            return Ok(None);
        };
        let _ = self.store.touch_token(&token_id).await;
        let authed = Authed {
            user_id: user.id,
            username: user.username,
            is_admin: user.is_admin != 0,
        };
        let mut cache = self.cache.lock().expect("auth cache poisoned");
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(hash, (authed.clone(), Instant::now()));
        Ok(Some(authed))
    }

    /// Forgets cached tokens (after a revocation or a new token).
    pub(crate) fn forget_tokens(&self) {
        self.cache.lock().expect("auth cache poisoned").clear();
        self.misses.lock().expect("auth cache poisoned").clear();
    }

    /// Checks a password login, throttled per user name and client address
    /// (so a stranger cannot lock the owner out by failing on purpose).
    pub(crate) async fn login(
        &self,
        username: &str,
        client: std::net::IpAddr,
        password: &str,
    ) -> Result<UserRow, ApiError> {
        let key = format!("{username}\u{0}{client}");
        {
            let failures = self.failures.lock().expect("login throttle poisoned");
            if let Some((count, since)) = failures.get(&key)
                && *count >= LOGIN_FAILURES_ALLOWED
                && since.elapsed() < LOGIN_WINDOW
            {
                let mut err = ApiError::new(
                    kumo_types::ErrorCode::TooManyRequests,
                    "too many failed logins for this user; wait a few minutes",
                );
                err.retry_after_secs = Some((LOGIN_WINDOW - since.elapsed()).as_secs().max(1));
                return Err(err);
            }
        }
        let user = self.store.user_by_name(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_string();
        // Verify even for unknown users, so timing does not tell them apart.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => verify_password(&password, &hash),
            None => {
                let _ = hash_password(&password);
                false
            }
        })
        .await
        .unwrap_or(false);
        match user {
            Some(user) if ok => {
                self.failures
                    .lock()
                    .expect("login throttle poisoned")
                    .remove(&key);
                Ok(user)
            }
            _ => {
                let mut failures = self.failures.lock().expect("login throttle poisoned");
                let entry = failures.entry(key).or_insert((0, Instant::now()));
                if entry.1.elapsed() >= LOGIN_WINDOW {
                    *entry = (0, Instant::now());
                }
                entry.0 += 1;
                Err(ApiError::unauthorized("wrong user name or password"))
            }
        }
    }
}

/// A new random API token.
pub(crate) fn new_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("kumo_{}", hex::encode(bytes))
}

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The part of a token shown in lists.
pub(crate) fn token_prefix(token: &str) -> String {
    token.chars().take(12).collect()
}

pub(crate) fn hash_password(password: &str) -> anyhow::Result<String> {
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// On first start, creates the admin account and prints how to log in.
pub(crate) async fn bootstrap(
    store: &Store,
    config: &Config,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    if store.user_count().await.context("counting users")? > 0 {
        return Ok(());
    }
    let password: String = {
        let bytes: [u8; 12] = rand::rng().random();
        hex::encode(bytes)
    };
    let hash = hash_password(&password)?;
    let user = store
        .create_user("admin", &hash, true)
        .await
        .context("creating the admin account")?;
    let (token, from_env) = match config.bootstrap_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => (token.to_string(), true),
        None => (new_token(), false),
    };
    store
        .create_token(
            &user.id,
            "bootstrap",
            &hash_token(&token),
            &token_prefix(&token),
        )
        .await
        .context("creating the admin token")?;
    if config.quiet {
        return Ok(());
    }
    println!("created the admin account (first start)");
    println!("  user:     admin");
    println!("  password: {password}");
    if from_env {
        println!("  token:    the value of KUMO_BOOTSTRAP_TOKEN");
    } else {
        println!("  token:    {token}");
    }
    println!(
        "  log in:   kumo login --url http://{addr}   (or send 'Authorization: Bearer <token>')"
    );
    println!("these are shown once; keep them safe");
    Ok(())
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    bearer_in(&parts.headers)
}

/// The bearer token in `headers`, if any.
pub(crate) fn bearer_in(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The session cookie's value. Two of them (one planted beside the real
/// one, say) are refused rather than guessed between.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim() == SESSION_COOKIE {
                if found.is_some() {
                    return Err(ApiError::unauthorized(
                        "more than one session cookie was sent; sign in again",
                    ));
                }
                found = Some(value.trim().to_string());
            }
        }
    }
    Ok(found.filter(|v| !v.is_empty()))
}

/// The CSRF token of a session: derived from its secret, so it needs no
/// storage, and useless without the cookie.
pub(crate) fn csrf_token(session: &str) -> String {
    hex::encode(&Sha256::digest(format!("kumo-csrf\u{0}{session}").as_bytes())[..16])
}

pub(crate) fn check_csrf(headers: &HeaderMap, session: &str) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let expected = csrf_token(session);
    match sent {
        Some(sent) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            kumo_types::ErrorCode::Forbidden,
            format!(
                "a request signed in by the session cookie must send the session's CSRF token in '{CSRF_HEADER}'"
            ),
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `Set-Cookie` value that starts a session (`max_age` for one that
/// outlives the browser) or, with `None` as the token, ends it.
pub(crate) fn session_set_cookie(
    token: Option<&str>,
    max_age: Option<Duration>,
    secure: bool,
) -> String {
    let mut cookie = match token {
        Some(token) => format!("{SESSION_COOKIE}={token}"),
        None => format!("{SESSION_COOKIE}=; Max-Age=0"),
    };
    cookie.push_str("; Path=/api; HttpOnly; SameSite=Strict");
    if let (Some(_), Some(age)) = (token, max_age) {
        cookie.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify() {
        let hash = hash_password("s3cret").expect("hash");
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("s3cret", "garbage"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert!(a.starts_with("kumo_") && a.len() == 53);
        assert_ne!(a, new_token());
        assert_eq!(hash_token(&a).len(), 64);
    }
}
