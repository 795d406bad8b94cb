-- Recall as a managed operation (issue 12): recall jobs (kind `recall`, files in `job_files`
-- like a tier job's), scheduled restoration rules, and bandwidth limits per host and per
-- tenant, separately for recall and tiering.

-- Finding the stubs to recall: a host's live stubs in path order, so a tree (`path` or
-- `path/…`) is one index range per requested path.
CREATE INDEX stub_registry_host_stubbed ON stub_registry (customer_id, host_id, file_path text_pattern_ops)
  WHERE state = 'stubbed';

-- The recall jobs of a host (recent first) and of a request.
CREATE INDEX jobs_host_recall ON jobs (customer_id, host_id, created_at) WHERE kind = 'recall';

-- Scheduled restoration rules: on `cron` (UTC), recall the host's stubs under `paths` (and,
-- with `rule_id`, tiered by that rule). The sweep finds due schedules by `next_run_at`.
CREATE TABLE recall_schedules (
  id               uuid PRIMARY KEY,
  customer_id      uuid NOT NULL REFERENCES customers (id),
  host_id          uuid NOT NULL,
  name             text NOT NULL,
  paths            text[] NOT NULL CHECK (cardinality(paths) BETWEEN 1 AND 100),
  rule_id          uuid,
  cron             text NOT NULL,
  enabled          boolean NOT NULL DEFAULT true,
  next_run_at      timestamptz,
  last_run_at      timestamptz,
  last_request_id  uuid,
  last_files       bigint,
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  UNIQUE (customer_id, name),
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);
CREATE INDEX recall_schedules_due ON recall_schedules (next_run_at) WHERE enabled;

ALTER TABLE recall_schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recall_schedules
  USING ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()))
  WITH CHECK ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON recall_schedules TO alto_app;

-- Bandwidth: the host's existing `bandwidth_limit_bytes_per_second` limits tiering (uploads);
-- recall (downloads by recall jobs) has its own. Per tenant, a limit of each kind is shared
-- by the tenant's running jobs of that kind (each job gets an equal share when it starts).
-- NULL: no limit. On-access recalls are never throttled (a reader waits on them).
ALTER TABLE hosts ADD COLUMN recall_bandwidth_limit_bytes_per_second bigint
  CHECK (recall_bandwidth_limit_bytes_per_second > 0);
ALTER TABLE planner_settings
  ADD COLUMN tier_bandwidth_limit_bytes_per_second bigint
    CHECK (tier_bandwidth_limit_bytes_per_second > 0),
  ADD COLUMN recall_bandwidth_limit_bytes_per_second bigint
    CHECK (recall_bandwidth_limit_bytes_per_second > 0);
