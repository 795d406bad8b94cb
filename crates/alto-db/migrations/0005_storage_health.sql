-- Storage target checks: the result of the last `POST …/storage-targets/{id}/test` and the
-- last usage it measured. A change of kind, location or config clears them (the result was
-- about the old settings).
--
-- `config` keeps the backend's connection settings and credentials as given (not encrypted
-- at rest); the API shows it only through `alto_tier2::TargetSpec::redacted_config`.

ALTER TABLE storage_targets
  ADD COLUMN last_check_at          timestamptz,
  ADD COLUMN last_check_status      text CHECK (last_check_status IN ('ok', 'failed', 'unchecked')),
  ADD COLUMN last_check_latency_ms  bigint,
  -- {"code": "...", "message": "..."} of a failed or unchecked check; never a secret.
  ADD COLUMN last_check_error       jsonb,
  -- {"objects": n, "bytes": n} as `alto_tier2::Target::usage` counted them.
  ADD COLUMN last_usage             jsonb,
  ADD COLUMN last_usage_at          timestamptz;
