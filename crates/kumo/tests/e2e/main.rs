//! End-to-end tests against a real `kumo serve`.
//!
//! Every test starts its own server (the `kumo` binary built by Cargo) on a
//! free port with a fresh data directory, talks to it over HTTP only, and
//! kills it when done, so tests run in parallel without sharing anything.
//! The helpers live in [`support`]; the tests are grouped by what they pin:
//!
//! - [`core`]: the handler contract, the gateway, versions, persistence;
//! - [`limits`]: concurrency, timeouts, crashes, log and body caps;
//! - [`api`]: auth, error shapes, validation, tokens, docs and metrics;
//! - [`node`]: Node.js functions and their sandbox;
//! - [`custom`]: programs that speak the runner protocol themselves;
//! - [`deps`]: dependency layers, and FastAPI, Flask and npm packages on them;
//! - [`env`]: a project's environment variables and secrets;
//! - [`routes`]: a project's routes at `/p/…`, and CORS;
//! - [`logs`]: log lines, listed and followed live;
//! - [`metrics`]: per-function metrics and Prometheus;
//! - [`prewarm`]: pre-warmed sandboxes and the keep-alive;
//! - [`retention`]: run history capped per run and held to byte budgets;
//! - [`security`]: hostile functions and requests against the sandbox;
//! - [`openapi`]: every operation of the OpenAPI document, answering as it says;
//! - [`robustness`]: idle connections, and input libraries would choke on;
//! - [`serverlog`]: what the server writes to its log;
//! - [`cli`]: the `kumo` command line, from `kumo init` to `kumo rm`;
//! - [`readme`]: the README's shell examples, run as written;
//! - [`dashboard`]: the dashboard's page and assets, templates, activity;
//! - [`web`]: the web surface: confined function answers, credentials, the
//!   session cookie, the functions' own origin, `/metrics`.

mod api;
mod cli;
mod core;
mod custom;
mod dashboard;
mod deps;
mod env;
mod limits;
mod logs;
mod metrics;
mod node;
mod openapi;
mod prewarm;
mod readme;
mod retention;
mod robustness;
mod routes;
mod security;
mod serverlog;
mod support;
mod web;
