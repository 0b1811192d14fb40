-- Whether a function's stored HTTP runs keep credential headers (off:
-- they are stored as ***).
ALTER TABLE functions ADD COLUMN record_credentials BOOLEAN NOT NULL DEFAULT FALSE;
