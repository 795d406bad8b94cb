-- Tiering execution: agents claim their host's jobs, report per-file outcomes, and the stub
-- registry records every object before the file it holds is touched.

ALTER TABLE stub_registry
  ADD COLUMN file_id       uuid,
  ADD COLUMN path_escaped  boolean NOT NULL DEFAULT false,
  ADD COLUMN job_id        uuid,
  ADD COLUMN target_name   text,
  ADD COLUMN stored_size   bigint,
  ADD COLUMN error         text;
-- One live (pending or stubbed) entry per file; history (rehydrated, failed) accumulates.
CREATE UNIQUE INDEX stub_registry_live ON stub_registry (customer_id, host_id, file_path, path_escaped)
  WHERE state IN ('pending', 'stubbed');
CREATE INDEX stub_registry_customer ON stub_registry (customer_id, created_at, id);
CREATE INDEX stub_registry_file ON stub_registry (file_id) WHERE file_id IS NOT NULL;
