//! The OpenAPI document, generated from the handlers, and `/docs`.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::State;
use crate::api::{accounts, env, functions, logs, projects, routing, runs, templates};

#[derive(OpenApi)]
#[openapi(
    info(title = "Kumo API", description = "Deploy and run functions. Errors are `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        accounts::login, accounts::start_session, accounts::get_session, accounts::end_session, accounts::me, accounts::list_tokens, accounts::create_token, accounts::delete_token,
        projects::list, projects::create, projects::get, projects::update, projects::remove,
        functions::list, functions::create, functions::get, functions::update, functions::remove,
        functions::deploy, functions::list_deployments, functions::get_deployment, functions::activate,
        functions::metrics, functions::files,
        runs::invoke, runs::http, runs::list, runs::get, runs::replay, logs::logs,
        env::list, env::get, env::put, env::remove,
        routing::list, routing::create, routing::remove,
        templates::list,
    ),
    modifiers(&TokenAuth),
    tags(
        (name = "accounts", description = "Login and API tokens"),
        (name = "projects", description = "Projects own functions"),
        (name = "functions", description = "Functions and their versions"),
        (name = "runs", description = "Invocations and logs"),
        (name = "env", description = "A project's environment variables and secrets"),
        (name = "routes", description = "A project's routes: METHOD /path/:param/*rest to a function, served at /p/{project}/…"),
    )
)]
pub(crate) struct ApiDoc;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `/api/v1/openapi.json` and the interactive docs at `/docs` (assets
/// embedded in the binary; works offline).
pub(crate) fn router() -> Router<State> {
    Router::from(SwaggerUi::new("/docs").url("/api/v1/openapi.json", ApiDoc::openapi()))
}
