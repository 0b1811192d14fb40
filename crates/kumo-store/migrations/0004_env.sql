-- A project's environment variables. A secret's value is sealed by the
-- server (XChaCha20-Poly1305, key outside the database) before it is
-- stored here; it is never stored in clear.
CREATE TABLE env_vars (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    secret     BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (project_id, name)
);
