//! The server's shared state: its parts, built once by [`crate::serve`],
//! and handed to every handler and background task.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use kumo_executor::Executor;
use kumo_store::Store;

use crate::config::Config;
use crate::{auth, livelogs, metrics, recorder, registry, secrets};

/// Shared state of the server. Cheap to clone.
#[derive(Clone)]
pub struct State {
    inner: Arc<Parts>,
}

/// The parts of a [`State`].
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) executor: Executor,
    pub(crate) builder: kumo_builder::Builder,
    pub(crate) secrets: Arc<secrets::Secrets>,
    pub(crate) logs: Arc<livelogs::LogHub>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) registry: registry::Registry,
    pub(crate) recorder: recorder::Recorder,
    pub(crate) auth: auth::Auth,
    pub(crate) public_url: String,
    /// Where functions are reached: the functions' own origin when there
    /// is one, else `public_url`.
    pub(crate) functions_url: String,
    pub(crate) counters: Counters,
}

/// Process-wide counters for `/metrics` (bounded labels only).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) runs_by_status: [AtomicU64; 7],
    pub(crate) cold_starts: AtomicU64,
    pub(crate) overloaded: AtomicU64,
}

impl State {
    pub(crate) fn new(parts: Parts) -> State {
        State {
            inner: Arc::new(parts),
        }
    }
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
    pub(crate) fn executor(&self) -> &Executor {
        &self.inner.executor
    }
    pub(crate) fn builder(&self) -> &kumo_builder::Builder {
        &self.inner.builder
    }
    pub(crate) fn secrets(&self) -> &secrets::Secrets {
        &self.inner.secrets
    }
    pub(crate) fn logs(&self) -> &livelogs::LogHub {
        &self.inner.logs
    }
    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }
    pub(crate) fn registry(&self) -> &registry::Registry {
        &self.inner.registry
    }
    pub(crate) fn recorder(&self) -> &recorder::Recorder {
        &self.inner.recorder
    }
    pub(crate) fn auth(&self) -> &auth::Auth {
        &self.inner.auth
    }
    pub(crate) fn public_url(&self) -> &str {
        &self.inner.public_url
    }
    pub(crate) fn functions_url(&self) -> &str {
        &self.inner.functions_url
    }
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }
    pub(crate) fn function_url(&self, project: &str, function: &str) -> String {
        format!("{}/fn/{project}/{function}", self.inner.functions_url)
    }
}
