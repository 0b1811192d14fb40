-- A deployment with dependencies is built (its layer installed) before it
-- serves: 'building', then 'ready' or 'failed'. Deployments without
-- dependencies are 'ready' at once.
ALTER TABLE deployments ADD COLUMN status TEXT NOT NULL DEFAULT 'ready';
-- The normalized dependencies, to build again (after a restart, or once
-- an unused layer was evicted).
ALTER TABLE deployments ADD COLUMN deps TEXT;
-- The key of the dependency layer the deployment runs with.
ALTER TABLE deployments ADD COLUMN layer TEXT;
-- Why the build or the load failed: the package manager's own lines.
ALTER TABLE deployments ADD COLUMN error TEXT;
ALTER TABLE deployments ADD COLUMN build_log TEXT;
CREATE INDEX deployments_building ON deployments(id) WHERE status = 'building';
