-- Every line functions print, one row each, for live and searchable logs.
-- Ids are given by the server in the order lines are read, so a reader
-- resumes after the last id it saw. No foreign keys: a line never fails
-- because its function was deleted meanwhile (retention removes it).
CREATE TABLE log_lines (
    id          BIGINT PRIMARY KEY,
    function_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    time        BIGINT NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX log_lines_function ON log_lines(function_id, id);
CREATE INDEX log_lines_run ON log_lines(run_id);
CREATE INDEX log_lines_time ON log_lines(time);
