-- What run history holds on disk, so that retention can keep it under a
-- byte budget without reading it.
--
-- A run's stored input and output are cut at a cap; `input_size` and
-- `output_size` are then the full sizes in bytes (NULL: kept whole).
ALTER TABLE invocations ADD COLUMN input_size BIGINT;
ALTER TABLE invocations ADD COLUMN output_size BIGINT;
-- The bytes a run holds: its record and an estimate of its log lines
-- (computed by the store when it writes the run).
ALTER TABLE invocations ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
UPDATE invocations SET bytes = 256 + length(id) * 3 + length(project) + length(function)
    + ifnull(length(input), 0) + ifnull(length(output), 0) + ifnull(length(error), 0)
    + 2 * length(logs);
-- The oldest runs of a project, for its byte budget.
CREATE INDEX invocations_project ON invocations(project_id, id);

-- The bytes each project's runs hold, kept by the triggers below in the
-- same transaction as every write (SQLite triggers: a PostgreSQL store
-- needs its own form of these).
CREATE TABLE run_usage (
    project_id TEXT PRIMARY KEY,
    bytes      BIGINT NOT NULL DEFAULT 0
);
INSERT INTO run_usage (project_id, bytes)
    SELECT project_id, SUM(bytes) FROM invocations GROUP BY project_id;

CREATE TRIGGER invocations_usage_insert AFTER INSERT ON invocations BEGIN
    INSERT INTO run_usage (project_id, bytes) VALUES (NEW.project_id, NEW.bytes)
        ON CONFLICT (project_id) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
-- A run's project never changes.
CREATE TRIGGER invocations_usage_update AFTER UPDATE OF bytes ON invocations BEGIN
    UPDATE run_usage SET bytes = bytes - OLD.bytes + NEW.bytes WHERE project_id = NEW.project_id;
END;
CREATE TRIGGER invocations_usage_delete AFTER DELETE ON invocations BEGIN
    UPDATE run_usage SET bytes = bytes - OLD.bytes WHERE project_id = OLD.project_id;
END;
