-- 0024: column statistics only for the columns a query's plan can use (issue 17; docs/db.md
-- "Column statistics").
--
-- ANALYZE — autovacuum's, at every 10 % of a table's change — samples 30,000 rows and computes,
-- for every column, its distinct values, most common values and histogram, in one burst of CPU
-- that nothing throttles. On the four tables every authorization writes (the day's journal
-- partition, wallet.ledger, wallet.requests, wallet.wallets: 83 columns) that was ~0.45 s of a
-- core, every few minutes in service and once a minute on young tables, on a machine already
-- three-quarters busy at 2,000 authorizations/s: p99 went from ~10 ms to 16-18 ms in any minute
-- with a pass (docs/BENCHMARKS.md). 44 of those columns are never in a WHERE, JOIN, GROUP BY,
-- ORDER BY, index or conflict target of any program or documented operator query (the
-- inventory is in docs/db.md): their statistics could change no plan. Statistics target 0:
-- ANALYZE skips them. The columns that are used keep the default target, so the plans of
-- settlement, reconciliation and the operators' lookups are made from the same statistics.
--
-- It also keeps PIN verification data out of the catalog: the most common values and histogram
-- of wallet.wallets.pvv and pin_offset were copied into pg_statistic by every ANALYZE.
-- Their existing statistics are deleted here (that takes a superuser; otherwise a notice says
-- what to run).
--
-- A new day partition of the journal takes the parent's targets (switch.create_authorization_
-- partitions below: PostgreSQL gives a partition created later the default targets).

ALTER TABLE switch.authorizations
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN currency SET STATISTICS 0,
    ALTER COLUMN response_code SET STATISTICS 0,
    ALTER COLUMN pan_masked SET STATISTICS 0,
    ALTER COLUMN recorded_at SET STATISTICS 0,
    ALTER COLUMN lat_total_us SET STATISTICS 0,
    ALTER COLUMN lat_mac_us SET STATISTICS 0,
    ALTER COLUMN lat_pin_us SET STATISTICS 0,
    ALTER COLUMN lat_issuer_us SET STATISTICS 0,
    ALTER COLUMN billing_amount_minor SET STATISTICS 0,
    ALTER COLUMN conversion_rate SET STATISTICS 0,
    ALTER COLUMN stand_in SET STATISTICS 0;

ALTER TABLE wallet.wallets
    ALTER COLUMN expiry SET STATISTICS 0,
    ALTER COLUMN status SET STATISTICS 0,
    ALTER COLUMN pin_method SET STATISTICS 0,
    ALTER COLUMN pvki SET STATISTICS 0,
    ALTER COLUMN pvv SET STATISTICS 0,
    ALTER COLUMN pin_offset SET STATISTICS 0,
    ALTER COLUMN pin_tries SET STATISTICS 0,
    ALTER COLUMN pin_try_limit SET STATISTICS 0,
    ALTER COLUMN daily_limit_minor SET STATISTICS 0,
    ALTER COLUMN daily_cash_limit_minor SET STATISTICS 0,
    ALTER COLUMN daily_count_limit SET STATISTICS 0,
    ALTER COLUMN usage_minor SET STATISTICS 0,
    ALTER COLUMN usage_cash_minor SET STATISTICS 0,
    ALTER COLUMN usage_count SET STATISTICS 0,
    ALTER COLUMN created_at SET STATISTICS 0,
    ALTER COLUMN updated_at SET STATISTICS 0,
    ALTER COLUMN month_debit_minor SET STATISTICS 0,
    ALTER COLUMN day_credit_minor SET STATISTICS 0,
    ALTER COLUMN month_credit_minor SET STATISTICS 0,
    ALTER COLUMN forced_minor SET STATISTICS 0;

ALTER TABLE wallet.ledger
    ALTER COLUMN balance_after_minor SET STATISTICS 0,
    ALTER COLUMN hold_id SET STATISTICS 0,
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN rrn SET STATISTICS 0,
    ALTER COLUMN auth_code SET STATISTICS 0;

ALTER TABLE wallet.requests
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN response_code SET STATISTICS 0,
    ALTER COLUMN auth_code SET STATISTICS 0,
    ALTER COLUMN balance_minor SET STATISTICS 0,
    ALTER COLUMN available_minor SET STATISTICS 0;

-- ANALYZE leaves the statistics of a column it now skips where they were: delete them.
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DELETE FROM pg_statistic s USING pg_attribute a
         WHERE a.attrelid = s.starelid AND a.attnum = s.staattnum AND a.attstattarget = 0;
    ELSE
        RAISE NOTICE '0024: the statistics of the columns now at target 0 stay until a superuser runs: DELETE FROM pg_statistic s USING pg_attribute a WHERE a.attrelid = s.starelid AND a.attnum = s.staattnum AND a.attstattarget = 0';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION switch.create_authorization_partitions(first date, days integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    n integer := 0;
    part text;
    col record;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        part := 'authorizations_' || to_char(d, 'YYYYMMDD');
        IF to_regclass('switch.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE switch.%I PARTITION OF switch.authorizations '
                           'FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 100, '
                           'autovacuum_freeze_min_age = 0)', part, d, d + 1);
            -- the parent's statistics targets (a new partition has the default ones)
            FOR col IN SELECT a.attname, a.attstattarget FROM pg_attribute a
                        WHERE a.attrelid = 'switch.authorizations'::regclass AND a.attnum > 0
                          AND NOT a.attisdropped AND a.attstattarget >= 0 LOOP
                EXECUTE format('ALTER TABLE switch.%I ALTER COLUMN %I SET STATISTICS %s', part,
                               col.attname, col.attstattarget);
            END LOOP;
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
