-- A function's settings as one JSON object (kumo_types::Settings): a new
-- setting needs no column of its own, and nested ones (a network policy)
-- fit as they are.
ALTER TABLE functions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
UPDATE functions SET settings = json_object(
    'timeout_ms', timeout_ms,
    'memory_mb', memory_mb,
    'concurrency', concurrency,
    'cpu_millicores', cpu_millicores,
    'pids', pids,
    'tmp_mb', tmp_mb,
    'visibility', visibility,
    'record_credentials', json(CASE WHEN record_credentials THEN 'true' ELSE 'false' END)
);
ALTER TABLE functions DROP COLUMN timeout_ms;
ALTER TABLE functions DROP COLUMN memory_mb;
ALTER TABLE functions DROP COLUMN concurrency;
ALTER TABLE functions DROP COLUMN cpu_millicores;
ALTER TABLE functions DROP COLUMN pids;
ALTER TABLE functions DROP COLUMN tmp_mb;
ALTER TABLE functions DROP COLUMN visibility;
ALTER TABLE functions DROP COLUMN record_credentials;
