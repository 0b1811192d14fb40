//! Generic instances started ahead of need, one small pool per runtime.
//!
//! A generic instance is a complete sandbox whose runner has started its
//! interpreter and said `hello`, but has no code: its `/code` is an empty
//! mount point. A cold start takes one, has the sandbox helper bind the
//! deployment's files there, applies the function's limits, and sends
//! `load` with the function's environment; the sandbox setup and the
//! interpreter's start are then off the first call's path. A taken
//! instance is specialized for good: it serves one deployment and is never
//! given back. A background task refills each pool.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kumo_runtimes::Runtime;

use crate::Inner;
use crate::instance::{Instance, StartError};

/// The generic instances of one runtime.
pub(crate) struct Pool {
    runtime: Runtime,
    ready: Mutex<Vec<Instance>>,
    /// Woken when an instance is taken.
    taken: tokio::sync::Notify,
}

impl Pool {
    pub(crate) fn new(runtime: Runtime) -> Pool {
        Pool {
            runtime,
            ready: Mutex::new(Vec::new()),
            taken: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn runtime(&self) -> Runtime {
        self.runtime
    }

    /// A ready generic instance, if one is waiting: the one that has
    /// waited longest (whatever it warmed up is settled).
    pub(crate) fn take(&self) -> Option<Instance> {
        let instance = {
            let mut ready = self.ready.lock().expect("prewarm lock poisoned");
            (!ready.is_empty()).then(|| ready.remove(0))
        };
        if instance.is_some() {
            self.taken.notify_one();
        }
        instance
    }

    pub(crate) fn len(&self) -> usize {
        self.ready.lock().expect("prewarm lock poisoned").len()
    }

    /// Stops every waiting instance (at shutdown).
    pub(crate) fn clear(&self) {
        let ready = std::mem::take(&mut *self.ready.lock().expect("prewarm lock poisoned"));
        for mut instance in ready {
            instance.kill();
        }
        // Wakes the filler, which then sees the shutdown.
        self.taken.notify_one();
    }
}

/// Keeps `pool` at `target` ready instances until the executor is gone
/// or shutting down. Starts one instance at a time: refilling must not
/// take the cores that calls need.
pub(crate) async fn fill(inner: Weak<Inner>, pool: Arc<Pool>, target: usize) {
    let mut failures = 0u32;
    loop {
        if pool.len() >= target {
            pool.taken.notified().await;
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if strong.is_shutting_down() {
            return;
        }
        if pool.len() >= target {
            continue;
        }
        match Instance::start_generic(pool.runtime, &strong.config).await {
            Ok(instance) => {
                failures = 0;
                let mut ready = pool.ready.lock().expect("prewarm lock poisoned");
                if strong.is_shutting_down() {
                    drop(ready);
                    let mut instance = instance;
                    instance.kill();
                    return;
                }
                ready.push(instance);
            }
            Err(e) => {
                failures += 1;
                let why = match e {
                    StartError::Spawn(why) => why,
                    StartError::Load(_) => "the runner did not start".to_string(),
                };
                tracing::warn!(
                    runtime = pool.runtime.as_str(),
                    error = %why,
                    "starting a pre-warmed instance failed"
                );
                drop(strong);
                // Back off, up to a few seconds, rather than spin on a
                // broken host; cold starts still work without the pool.
                let wait = Duration::from_millis(100 << failures.min(5));
                tokio::time::sleep(wait).await;
            }
        }
    }
}
