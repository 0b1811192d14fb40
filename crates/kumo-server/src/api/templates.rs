//! `GET /api/v1/templates`: the starting points of `kumo init`, as data,
//! for the dashboard's gallery.

use kumo_types::templates::{TEMPLATES, TemplateInfo};

use crate::auth::Authed;

/// The templates (`{project}` in a file stands for the project's name).
#[utoipa::path(get, path = "/api/v1/templates", operation_id = "list_templates", tag = "functions", security(("token" = [])),
    responses((status = 200, body = Vec<TemplateInfo>)))]
pub(crate) async fn list(_user: Authed) -> axum::Json<Vec<TemplateInfo>> {
    axum::Json(TEMPLATES.iter().map(|t| t.info()).collect())
}
