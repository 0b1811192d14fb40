-- Only unfinished runs are ever looked up by status (to resume them after a
-- restart); indexing every finished run's status cost a B-tree write per
-- call for nothing.
DROP INDEX invocations_status;
CREATE INDEX invocations_unfinished ON invocations(id) WHERE status IN ('queued', 'running');
