-- Indexes for statements on hot paths that scanned a whole table (found by the test
-- `hot_paths` in crates/alto-server/tests/it, which fails on any sequential scan of a large
-- table under the application role).

-- Ending a job voids its pending registry entries: look them up by job, not by scanning.
CREATE INDEX stub_registry_job ON stub_registry (job_id) WHERE state = 'pending';

-- Audit pages and chain verification walk one chain by sequence number: the tenant's
-- (customer_id = $1) and the platform's (customer_id IS NULL).
CREATE INDEX audit_log_tenant_seq ON audit_log (customer_id, seq) WHERE customer_id IS NOT NULL;
CREATE INDEX audit_log_platform_seq ON audit_log (seq) WHERE customer_id IS NULL;

-- Workers claim ready jobs of their kinds, or take back running ones whose lease expired:
-- both halves of that condition need an index of their own (jobs_ready serves the first).
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state IN ('running', 'dispatched');
