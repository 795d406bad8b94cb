-- Scan uploads, staging and the inventory columns a scan carries.
--
-- A scan is uploaded in parts by one host; each part is validated and COPYed into
-- scan_staging.rows; when the last part arrives the scan is queued for ingest, which merges
-- the staged rows into file_inventory in one transaction (a scan is atomic).

-- Scans and their parts (tenant data, RLS).
CREATE TABLE scans (
  id               uuid PRIMARY KEY,
  customer_id      uuid NOT NULL,
  host_id          uuid NOT NULL,
  kind             text NOT NULL CHECK (kind IN ('full', 'partial')),
  status           text NOT NULL CHECK (status IN ('receiving', 'queued', 'ingesting', 'completed', 'failed')),
  parts_expected   integer,
  rows_staged      bigint NOT NULL DEFAULT 0,
  bytes_received   bigint NOT NULL DEFAULT 0,
  staged_on        date NOT NULL,
  error            text,
  stats            jsonb NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  completed_at     timestamptz,
  FOREIGN KEY (customer_id, host_id) REFERENCES hosts (customer_id, id)
);
CREATE INDEX scans_host ON scans (customer_id, host_id, created_at);

CREATE TABLE scan_parts (
  scan_id      uuid NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
  customer_id  uuid NOT NULL,
  part_no      integer NOT NULL CHECK (part_no >= 0),
  sha256       text NOT NULL,
  rows         bigint NOT NULL,
  bytes        bigint NOT NULL,
  received_at  timestamptz NOT NULL,
  PRIMARY KEY (scan_id, part_no)
);

-- Staged rows, partitioned by day, kept 7 days. COPY FROM cannot run against a table with
-- row-level security, so this table has none: the app role may only INSERT and SELECT, every
-- statement filters by scan_id, and a scan id is bound to the uploading host by `scans`
-- (which has RLS). Rows reach tenant-visible tables only through the ingest merge, whose
-- writes file_inventory's policy checks.
CREATE SCHEMA scan_staging;
CREATE TABLE scan_staging.rows (
  scan_id        uuid NOT NULL,
  part_no        integer NOT NULL,
  row_no         integer NOT NULL,
  staged_on      date NOT NULL,
  row_id         uuid NOT NULL,                -- time-ordered id the row gets if it is new
  file_path      text NOT NULL,
  path_escaped   boolean NOT NULL,
  file_size      bigint NOT NULL,
  mtime_us       bigint NOT NULL,              -- microseconds since the epoch (UTC)
  atime_us       bigint NOT NULL,
  ctime_us       bigint NOT NULL,
  file_extension text NOT NULL,
  permissions    text NOT NULL,
  owner          text NOT NULL,
  file_hash      text,
  mode           bigint NOT NULL,
  uid            bigint NOT NULL,
  gid            bigint NOT NULL,
  inode          bigint NOT NULL,
  device         bigint NOT NULL,
  nlink          bigint NOT NULL,
  is_stub        boolean NOT NULL,
  stub_object    text
) PARTITION BY RANGE (staged_on);

-- Creates the day's partition on demand (the app role cannot run DDL itself).
CREATE FUNCTION scan_staging.ensure_partition(p_day date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = scan_staging, pg_temp AS $$
DECLARE
  v_name text := 'rows_' || to_char(p_day, 'YYYYMMDD');
BEGIN
  IF to_regclass('scan_staging.' || v_name) IS NULL THEN
    PERFORM pg_advisory_xact_lock(73010003);
    IF to_regclass('scan_staging.' || v_name) IS NULL THEN
      EXECUTE format('CREATE UNLOGGED TABLE scan_staging.%I PARTITION OF scan_staging.rows FOR VALUES FROM (%L) TO (%L)',
                     v_name, p_day, p_day + 1);
      EXECUTE format('CREATE INDEX ON scan_staging.%I (scan_id)', v_name);
      EXECUTE format('GRANT SELECT, INSERT ON scan_staging.%I TO alto_app', v_name);
    END IF;
  END IF;
END
$$;

-- Refreshes planner statistics before a large merge (the app role may not ANALYZE tables it
-- does not own). Without them a fresh partition looks empty and joins degrade to loops.
CREATE FUNCTION scan_staging.analyze_for_merge(p_day date, p_inventory boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = scan_staging, pg_temp AS $$
DECLARE
  v_name text := 'rows_' || to_char(p_day, 'YYYYMMDD');
BEGIN
  IF to_regclass('scan_staging.' || v_name) IS NOT NULL THEN
    EXECUTE format('ANALYZE scan_staging.%I', v_name);
  END IF;
  IF p_inventory THEN
    ANALYZE public.file_inventory;
  END IF;
END
$$;

-- Drops partitions older than the retention; returns how many.
CREATE FUNCTION scan_staging.drop_older_than(p_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = scan_staging, pg_temp AS $$
DECLARE
  r record;
  n integer := 0;
BEGIN
  FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'scan_staging.rows'::regclass
              AND c.relname ~ '^rows_[0-9]{8}$' AND to_date(substr(c.relname, 6), 'YYYYMMDD') < p_day
  LOOP
    EXECUTE format('DROP TABLE scan_staging.%I', r.relname);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

-- Microseconds since the epoch to a timestamp, exactly (inlined by the planner).
CREATE FUNCTION alto_us_to_ts(us bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT timestamptz 'epoch' + us * interval '1 microsecond'
$$;
GRANT EXECUTE ON FUNCTION alto_us_to_ts(bigint) TO alto_app;

-- Inventory columns a scan carries beyond the seed's. The inventory is written only by the
-- ingest merge, which takes host and tenant from the scan row; a per-row foreign-key check
-- to hosts would cost more than the rest of the insert, so it is dropped (hosts are never
-- deleted, only decommissioned).
ALTER TABLE file_inventory DROP CONSTRAINT file_inventory_customer_id_host_id_fkey;
ALTER TABLE file_inventory
  ADD COLUMN path_escaped  boolean NOT NULL DEFAULT false,
  ADD COLUMN last_changed  timestamptz,
  ADD COLUMN permissions   text,
  ADD COLUMN owner         text,
  ADD COLUMN mode          bigint,
  ADD COLUMN uid           bigint,
  ADD COLUMN gid           bigint,
  ADD COLUMN inode         bigint,
  ADD COLUMN device        bigint,
  ADD COLUMN nlink         bigint,
  ADD COLUMN scan_is_stub  boolean NOT NULL DEFAULT false,
  ADD COLUMN deleted_at    timestamptz,
  ADD COLUMN last_scan_id  uuid;
ALTER TABLE file_inventory DROP CONSTRAINT file_inventory_customer_id_host_id_file_path_key;
ALTER TABLE file_inventory ADD CONSTRAINT file_inventory_path_key
  UNIQUE (customer_id, host_id, file_path, path_escaped);
CREATE INDEX file_inventory_live ON file_inventory (customer_id, host_id, last_accessed)
  WHERE deleted_at IS NULL;
CREATE INDEX file_inventory_ext ON file_inventory (customer_id, file_extension)
  WHERE deleted_at IS NULL;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['scans', 'scan_parts']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant())) '
                   'WITH CHECK ((SELECT alto_all_tenants()) OR customer_id = (SELECT alto_tenant()))', t);
  END LOOP;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA scan_staging FROM PUBLIC;
GRANT USAGE ON SCHEMA scan_staging TO alto_app;
GRANT SELECT, INSERT ON scan_staging.rows TO alto_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON scans, scan_parts TO alto_app;
GRANT EXECUTE ON FUNCTION scan_staging.ensure_partition(date), scan_staging.drop_older_than(date),
  scan_staging.analyze_for_merge(date, boolean) TO alto_app;
