//! A project's environment as its functions run with it: the variables,
//! secrets opened. (Setting them is in `projects`.)

use kumo_store::Store;

use crate::error::{ApiError, ApiResult};
use crate::secrets::Secrets;

/// What a project's functions run with.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProjectEnv {
    /// Every variable, secrets in clear.
    pub(crate) vars: Vec<(String, String)>,
    /// The clear values of secrets, to blot out of logs and errors.
    pub(crate) secrets: Vec<String>,
    /// Tells one set of values from another (instance pools differ).
    pub(crate) fingerprint: String,
}

/// The environment of `project_id`'s functions, secrets opened.
pub(crate) async fn open(
    store: &Store,
    secrets: &Secrets,
    project_id: &str,
) -> ApiResult<ProjectEnv> {
    use sha2::Digest;
    let rows = store.env_vars(project_id).await?;
    let mut env = ProjectEnv::default();
    let mut hasher = sha2::Sha256::new();
    for row in rows {
        let value = if row.secret != 0 {
            let clear = secrets
                .open(project_id, &row.name, &row.value)
                .map_err(|e| ApiError::internal("opening a secret", e))?;
            env.secrets.push(clear.clone());
            clear
        } else {
            row.value
        };
        hasher.update(row.name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
        env.vars.push((row.name, value));
    }
    if !env.vars.is_empty() {
        env.fingerprint = hex::encode(&hasher.finalize()[..8]);
    }
    Ok(env)
}
