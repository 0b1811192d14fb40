-- Kumo's schema. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Times are Unix milliseconds; booleans are 0/1 integers; ids are text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE INDEX projects_owner ON projects(owner_id);

CREATE TABLE functions (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    runtime        TEXT NOT NULL,
    timeout_ms     BIGINT NOT NULL,
    memory_mb      BIGINT NOT NULL,
    concurrency    BIGINT NOT NULL,
    cpu_millicores BIGINT NOT NULL,
    pids           BIGINT NOT NULL,
    tmp_mb         BIGINT NOT NULL,
    visibility     TEXT NOT NULL,
    active_version BIGINT,
    next_version   BIGINT NOT NULL DEFAULT 1,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE deployments (
    id           TEXT PRIMARY KEY,
    function_id  TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    runtime      TEXT NOT NULL,
    entrypoint   TEXT NOT NULL,
    handler      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    file_count   BIGINT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (function_id, version)
);

-- Runs are written off the hot path; no foreign keys so that a record
-- never fails because its function was deleted meanwhile.
CREATE TABLE invocations (
    id             TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL,
    project_id     TEXT NOT NULL,
    function_id    TEXT NOT NULL,
    project        TEXT NOT NULL,
    function       TEXT NOT NULL,
    version        BIGINT,
    trigger_kind   TEXT NOT NULL,
    status         TEXT NOT NULL,
    input          TEXT,
    output         TEXT,
    error          TEXT,
    logs           TEXT NOT NULL DEFAULT '',
    logs_truncated BIGINT NOT NULL DEFAULT 0,
    duration_us    BIGINT NOT NULL DEFAULT 0,
    cold_start     BIGINT NOT NULL DEFAULT 0,
    cpu_us         BIGINT,
    peak_memory    BIGINT,
    created_at     BIGINT NOT NULL,
    finished_at    BIGINT
);
CREATE INDEX invocations_function ON invocations(function_id, id);
CREATE INDEX invocations_status ON invocations(status);
