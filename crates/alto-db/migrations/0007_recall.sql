-- Recall (issue 12), the server's side: every recall report leaves the registry right, a
-- replaced stub's object is kept for a retention window, recall storms are detected across
-- replicas and restarts, hosts report whether stubs come back on access, and the planner
-- leaves recently recalled files alone.

-- A stub that was truncated or overwritten (`open(O_TRUNC)` raises no event) is `replaced`:
-- the file is an ordinary file again, and its tier-2 object stays referenced until
-- `retain_until` (tier-2 reconciliation answers it `live` until then, `unknown` after, and
-- then collects it like any released object).
ALTER TABLE stub_registry DROP CONSTRAINT stub_registry_state_check;
ALTER TABLE stub_registry ADD CONSTRAINT stub_registry_state_check
  CHECK (state IN ('pending', 'stubbed', 'rehydrated', 'orphaned', 'failed', 'replaced'));
ALTER TABLE stub_registry ADD COLUMN retain_until timestamptz;
ALTER TABLE stub_registry ADD CONSTRAINT stub_registry_replaced_retained
  CHECK (state <> 'replaced' OR retain_until IS NOT NULL);

-- When the file's content last came back from tier-2 (a recall of any trigger). The planner
-- does not tier a file again within the retention after a recall. A nullable column without
-- a default: adding it rewrites nothing, and the planner reads it from the row it already
-- reads (no join, no extra index).
ALTER TABLE file_inventory ADD COLUMN recalled_at timestamptz;

-- Retention after recall, per tenant (a rule may override it).
ALTER TABLE planner_settings
  ADD COLUMN recall_retention_days integer NOT NULL DEFAULT 30
    CHECK (recall_retention_days BETWEEN 0 AND 3650);

-- On-access recall as the host's agent last reported it (`HeartbeatRequest.on_access`, or the
-- agent link's heartbeat): the `OnAccessStatus` document, and when it was reported.
ALTER TABLE hosts
  ADD COLUMN on_access             jsonb,
  ADD COLUMN on_access_reported_at timestamptz;

-- The recall-storm detector's counters: recalls per (host, subject) in fixed windows of the
-- configured length; the detector weighs the previous window by how much of it still
-- overlaps the sliding window ending now. `flagged_at` says a `recall.storm` alert was raised
-- for the subject in this window (once per window per subject). Every access is by primary
-- key; old windows are dropped by the server's periodic expiry (`recall_rate_window`).
CREATE TABLE recall_rate (
  customer_id   uuid NOT NULL REFERENCES customers (id),
  host_id       uuid NOT NULL,
  subject_kind  text NOT NULL CHECK (subject_kind IN ('exe', 'user')),
  subject       text NOT NULL,
  window_start  timestamptz NOT NULL,
  recalls       bigint NOT NULL DEFAULT 0,
  flagged_at    timestamptz,
  PRIMARY KEY (customer_id, host_id, subject_kind, subject, window_start),
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);
CREATE INDEX recall_rate_window ON recall_rate (window_start);

ALTER TABLE recall_rate ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recall_rate
  USING ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()))
  WITH CHECK ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON recall_rate TO alto_app;
