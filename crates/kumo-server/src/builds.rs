//! Deployments that wait for their dependencies: the build runs in the
//! background (through `kumo-builder`), then the code is loaded once with
//! the new layer, and only then does the version become active. A failure
//! at either step leaves the previous version serving and the reason on
//! the deployment. Builds still running when the server stopped are
//! started again at the next start; layers nothing uses any more are
//! evicted after a while.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use kumo_builder::Deps;
use kumo_runtimes::Runtime;
use kumo_store::{DeploymentRow, FunctionRow};
use kumo_types::DeploymentStatus;

use crate::checks::{LoadTarget, check_load};
use crate::environment;
use crate::state::State;

/// When a finished build makes its version active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Unless a newer version is active by then (a new deploy).
    IfNewest,
    /// A rollback that had to rebuild an evicted layer: unless the active
    /// version changed meanwhile (a deploy or another rollback came
    /// after), in which case the later wish stands. The version was good
    /// before, so a failed rebuild leaves it `ready` (with the error), to
    /// be tried again.
    Rollback { active_when_asked: Option<i64> },
}

/// One deployment to build.
pub(crate) struct Job {
    pub(crate) deployment: DeploymentRow,
    pub(crate) function: FunctionRow,
    pub(crate) project: String,
    pub(crate) owner_id: String,
    pub(crate) activation: Activation,
}

/// Builds `job` in the background.
pub(crate) fn spawn(state: &State, job: Job) {
    let state = state.clone();
    tokio::spawn(async move {
        let deployment_id = job.deployment.id.clone();
        if let Err(e) = run(&state, job).await {
            tracing::error!(deployment = %deployment_id, error = %e, "recording a build failed");
        }
    });
}

async fn run(state: &State, job: Job) -> anyhow::Result<()> {
    let Job {
        deployment,
        function,
        project,
        owner_id,
        activation,
    } = job;
    let runtime = Runtime::parse(&deployment.runtime)
        .ok_or_else(|| anyhow::anyhow!("unknown runtime {}", deployment.runtime))?;
    let (Some(normalized), Some(key)) = (deployment.deps.clone(), deployment.layer.clone()) else {
        anyhow::bail!("deployment {} has no dependencies to build", deployment.id);
    };
    let deps = Deps::from_normalized(runtime, normalized);
    let built = state.builder().build(&key, &deps).await;
    let store = state.store();
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            let status = failed_status(activation);
            store
                .set_build(&deployment.id, status, Some(&e.summary), Some(&e.log))
                .await?;
            return Ok(());
        }
    };
    // The code loads with its layer, as its first call will.
    let manifest = deployment.manifest()?;
    let files = store.files().clone();
    let hash = deployment.content_hash.clone();
    let code_dir =
        tokio::task::spawn_blocking(move || files.materialize(&hash, &manifest)).await??;
    let env = match environment::open(state.store(), state.secrets(), &function.project_id).await {
        Ok(env) => env,
        Err(e) => anyhow::bail!("reading the project's environment: {}", e.message),
    };
    let loaded = check_load(
        state,
        LoadTarget {
            owner: &owner_id,
            function: &function.name,
            runtime,
            code_dir: &code_dir,
            layer: Some(&built.dir),
            entrypoint: &deployment.entrypoint,
            handler: &deployment.handler,
            settings: &function.settings,
            content_hash: &deployment.content_hash,
            env: &env,
        },
    )
    .await;
    if let Err(e) = loaded {
        store
            .set_build(
                &deployment.id,
                failed_status(activation),
                Some(&e.message),
                Some(&built.log),
            )
            .await?;
        return Ok(());
    }
    store
        .set_build(
            &deployment.id,
            DeploymentStatus::Ready,
            None,
            Some(&built.log),
        )
        .await?;
    let activated = match activation {
        Activation::IfNewest => {
            store
                .activate_if_newer(&function.id, deployment.version)
                .await?
        }
        Activation::Rollback { active_when_asked } => {
            store
                .activate_if_active(&function.id, deployment.version, active_when_asked)
                .await?
        }
    };
    state.registry().invalidate(&project, &function.name);
    tracing::info!(project = %project, function = %function.name, version = deployment.version, activated, "built");
    Ok(())
}

/// The status a failed build leaves: a new version failed; a version that
/// was good and only had to be rebuilt stays ready, to be tried again.
fn failed_status(activation: Activation) -> DeploymentStatus {
    match activation {
        Activation::IfNewest => DeploymentStatus::Failed,
        Activation::Rollback { .. } => DeploymentStatus::Ready,
    }
}

/// Starts again the builds a stopped server left unfinished.
pub(crate) async fn resume(state: &State) -> anyhow::Result<()> {
    let unfinished = state.store().building_deployments().await?;
    if !unfinished.is_empty() {
        tracing::info!(count = unfinished.len(), "resuming dependency builds");
    }
    for located in unfinished {
        spawn(
            state,
            Job {
                deployment: located.deployment,
                function: located.function,
                project: located.project,
                owner_id: located.owner_id,
                activation: Activation::IfNewest,
            },
        );
    }
    Ok(())
}

/// Every so often, removes the layers that no active or building
/// deployment uses and that nothing has used for the configured time.
pub(crate) async fn evict_unused(state: State) {
    let ttl = state.config().builds.layer_ttl;
    let period = (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let keep: HashSet<String> = match state.store().layers_in_use().await {
            Ok(layers) => layers.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing the layers in use failed; evicting nothing");
                continue;
            }
        };
        let builder = state.builder().clone();
        let removed = tokio::task::spawn_blocking(move || builder.evict(&keep, ttl))
            .await
            .unwrap_or_default();
        if !removed.is_empty() {
            tracing::info!(layers = ?removed, "unused dependency layers removed");
        }
    }
}

/// The directory of a deployment's layer, if it has one and it is built.
pub(crate) fn layer_dir(state: &State, deployment: &DeploymentRow) -> Option<PathBuf> {
    deployment
        .layer
        .as_deref()
        .and_then(|key| state.builder().ready(key))
}
