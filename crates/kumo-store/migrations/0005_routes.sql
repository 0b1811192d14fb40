-- A project's routes: METHOD /path/:param/*rest -> a function of the
-- project, served at /p/{project}/... (method ANY matches every method).
CREATE TABLE routes (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    function   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (project_id, method, path)
);
CREATE INDEX routes_project ON routes(project_id);

-- A project's CORS settings (JSON), answered by the gateway; NULL: none.
ALTER TABLE projects ADD COLUMN cors TEXT;
