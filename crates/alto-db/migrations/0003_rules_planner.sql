-- Rules, storage targets, tags, planner settings, plans and tiering jobs with per-file rows.
--
-- A rule's definition is an `alto_rules::RuleSpec` in `spec` (JSON); every change writes a
-- new row to rule_versions and bumps the tenant's ruleset revision, so a plan can record
-- exactly which rules it used. Tiering jobs are rows of `jobs` (kind 'tier'); their files are
-- rows of job_files, which also carry each file's result.

-- Storage targets (named tier-2 locations; issue 5 adds the backends' behaviour).
CREATE TABLE storage_targets (
  id           uuid PRIMARY KEY,
  customer_id  uuid NOT NULL REFERENCES customers (id),
  name         text NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('directory', 'smb', 's3', 'azure')),
  location     text NOT NULL,
  config       jsonb NOT NULL DEFAULT '{}',
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  UNIQUE (customer_id, name)
);
INSERT INTO storage_targets (id, customer_id, name, kind, location, created_at, updated_at)
  SELECT gen_random_uuid(), c.id, 'default', 'directory', c.tier2_location, now(), now()
    FROM customers c;

-- Per-tenant planner settings; a missing row means the defaults.
CREATE TABLE planner_settings (
  customer_id               uuid PRIMARY KEY REFERENCES customers (id),
  safety_window_seconds     integer NOT NULL DEFAULT 3600,
  high_watermark_pct        double precision NOT NULL DEFAULT 90,
  low_watermark_pct         double precision NOT NULL DEFAULT 80,
  watermark_order           text NOT NULL DEFAULT 'oldest_access',
  max_files_per_run         bigint,
  max_bytes_per_run         bigint,
  host_max_files_per_hour   bigint,
  host_max_bytes_per_hour   bigint,
  link_bytes_per_second     bigint NOT NULL DEFAULT 125000000,
  per_file_overhead_ms      integer NOT NULL DEFAULT 5,
  plan_after_ingest         boolean NOT NULL DEFAULT true,
  ruleset_revision          bigint NOT NULL DEFAULT 0,
  updated_at                timestamptz NOT NULL
);

CREATE TABLE rules (
  id             uuid PRIMARY KEY,
  customer_id    uuid NOT NULL REFERENCES customers (id),
  name           text NOT NULL,
  enabled        boolean NOT NULL,
  priority       integer NOT NULL,
  version        integer NOT NULL,
  spec           jsonb NOT NULL,
  schedule       text,
  last_fired_at  timestamptz,
  created_by     uuid,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  deleted_at     timestamptz
);
CREATE UNIQUE INDEX rules_name_key ON rules (customer_id, lower(name)) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX rules_priority_key ON rules (customer_id, priority) WHERE deleted_at IS NULL;

CREATE TABLE rule_versions (
  rule_id      uuid NOT NULL REFERENCES rules (id),
  customer_id  uuid NOT NULL,
  version      integer NOT NULL,
  change       text NOT NULL CHECK (change IN ('created', 'updated', 'deleted')),
  spec         jsonb NOT NULL,
  changed_by   uuid,
  changed_at   timestamptz NOT NULL,
  PRIMARY KEY (rule_id, version)
);

-- Metadata tags on paths; a file carries its own and its directories' tags.
CREATE TABLE path_tags (
  id           uuid PRIMARY KEY,
  customer_id  uuid NOT NULL REFERENCES customers (id),
  host_id      uuid,                                   -- NULL: every host
  path         text NOT NULL,
  key          text NOT NULL,
  value        text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL,
  UNIQUE NULLS NOT DISTINCT (customer_id, host_id, path, key)
);

ALTER TABLE hosts
  ADD COLUMN groups                      text[] NOT NULL DEFAULT '{}',
  ADD COLUMN observed_bytes_per_second   bigint,
  ADD COLUMN bandwidth_limit_bytes_per_second bigint;

CREATE TABLE plans (
  id                uuid PRIMARY KEY,
  customer_id       uuid NOT NULL REFERENCES customers (id),
  trigger           text NOT NULL CHECK (trigger IN ('ingest', 'schedule', 'manual', 'watermark')),
  requested_by      text,
  host_ids          uuid[] NOT NULL,
  rule_id           uuid,
  ruleset_revision  bigint NOT NULL,
  rule_versions     jsonb NOT NULL,
  held              boolean NOT NULL DEFAULT false,
  stats             jsonb NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL
);
CREATE INDEX plans_customer ON plans (customer_id, created_at, id);

ALTER TABLE jobs
  ADD COLUMN plan_id              uuid,
  ADD COLUMN rule_id              uuid,
  ADD COLUMN rule_version         integer,
  ADD COLUMN target_name          text,
  ADD COLUMN file_count           integer NOT NULL DEFAULT 0,
  ADD COLUMN total_bytes          bigint NOT NULL DEFAULT 0,
  ADD COLUMN estimates            jsonb,
  ADD COLUMN cancel_requested_at  timestamptz,
  ADD COLUMN dispatched_at        timestamptz,
  ADD COLUMN started_at           timestamptz;
CREATE INDEX jobs_plan ON jobs (plan_id) WHERE plan_id IS NOT NULL;
CREATE INDEX jobs_host_recent ON jobs (customer_id, host_id, created_at) WHERE kind = 'tier';

-- No foreign key to jobs: rows are written only by the planner, in the statement after their
-- jobs, and jobs are never deleted; a per-row check would cost more than the insert itself.
CREATE TABLE job_files (
  job_id         uuid NOT NULL,
  customer_id    uuid NOT NULL,
  seq            integer NOT NULL,
  file_id        uuid NOT NULL,                 -- file_inventory.id (the path lives there)
  file_size      bigint NOT NULL,               -- the planned snapshot, re-checked by the agent
  last_modified  timestamptz,
  inode          bigint,
  file_hash      text,
  state          text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'succeeded', 'failed', 'skipped', 'cancelled')),
  attempts       integer NOT NULL DEFAULT 0,
  error          text,
  updated_at     timestamptz,
  PRIMARY KEY (job_id, seq)
);
-- A file in a live job is not planned again.
CREATE INDEX job_files_pending ON job_files (file_id) WHERE state = 'pending';

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['storage_targets', 'planner_settings', 'rules', 'rule_versions',
                           'path_tags', 'plans', 'job_files']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant())) '
                   'WITH CHECK ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()))', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON storage_targets, planner_settings, rules, path_tags,
  plans, job_files TO alto_app;
-- Rule history is append-only for the application.
GRANT SELECT, INSERT ON rule_versions TO alto_app;
