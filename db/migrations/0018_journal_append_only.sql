-- 0018: a cheaper journal (issue 17; docs/db.md "Journal upkeep" and "Journal writer").
--
-- 1. The operators' lookup indexes leave the hot path. authorizations_pan (hash on pan_hmac)
--    and authorizations_rrn served only ad-hoc operator SQL — no program of Atlas looks the
--    journal up by card or RRN (switchd, reconcile, settle and stand-in go by the primary key
--    or by created_at within a day) — yet every journal insert paid for both: measured with
--    bench-journal (docs/db.md), WAL 566 -> 385 bytes per row without them (-32 %), on disk
--    400 -> 328 bytes per row (-18 %), PostgreSQL's CPU 11.9-15.9 -> 10.4-11.0 us per row on a
--    loaded machine. They are now built per day partition once the day is
--    over, by `atlas-db partitions` (CREATE INDEX CONCURRENTLY: the writer is never blocked);
--    a lookup by card or RRN still works on every day, by index on the closed days and by a
--    scan of today's partition (one day, the primary key's leading request_date prunes the rest).
--    After this migration, run `atlas-db partitions` once to index the days already closed.
DROP INDEX IF EXISTS switch.authorizations_pan;
DROP INDEX IF EXISTS switch.authorizations_rrn;

-- 2. Day partitions are append-only (a row is updated only when the upsert replaces a refusal
--    the switch gave itself): fillfactor 100 (no room kept for updates), and autovacuum freezes
--    what it visits (freeze_min_age 0) — a day's rows never change once the day is over, so the
--    insert-driven vacuum that marks them all-visible may as well freeze them, instead of an
--    anti-wraparound pass rewriting months of partitions later.
CREATE OR REPLACE FUNCTION switch.create_authorization_partitions(first date, days integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    n integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        part := 'authorizations_' || to_char(d, 'YYYYMMDD');
        IF to_regclass('switch.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE switch.%I PARTITION OF switch.authorizations '
                           'FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 100, '
                           'autovacuum_freeze_min_age = 0)', part, d, d + 1);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'switch.authorizations'::regclass
           AND c.relname ~ '^authorizations_[0-9]{8}$'
    LOOP
        EXECUTE format('ALTER TABLE switch.%I SET (fillfactor = 100, '
                       'autovacuum_freeze_min_age = 0)', r.relname);
    END LOOP;
END
$$;

-- The closed days of the journal whose operator lookup index `name` ('pan_hmac' or 'rrn') is
-- missing or invalid (a CREATE INDEX CONCURRENTLY that was interrupted): what `atlas-db
-- partitions` builds. Attached partitions only (a detached day keeps what it had).
CREATE FUNCTION switch.journal_lookup_indexes_missing(today date)
RETURNS TABLE (partition text, index_name text, method text, col text, invalid boolean)
LANGUAGE sql STABLE AS $$
    SELECT c.relname::text, c.relname || '_' || k.col, k.method, k.col,
           coalesce(NOT x.indisvalid, false)
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid
     CROSS JOIN (VALUES ('pan_hmac', 'hash'), ('rrn', 'btree')) AS k(col, method)
      LEFT JOIN pg_class xc ON xc.relname = c.relname || '_' || k.col
                           AND xc.relnamespace = c.relnamespace
      LEFT JOIN pg_index x ON x.indexrelid = xc.oid
     WHERE i.inhparent = 'switch.authorizations'::regclass
       AND c.relname ~ '^authorizations_[0-9]{8}$'
       AND to_date(substr(c.relname, 16), 'YYYYMMDD') < today
       AND (x.indexrelid IS NULL OR NOT x.indisvalid)
     ORDER BY 1, 2
$$;
