-- 0025: smaller ANALYZE samples on the tables every authorization writes, and no statistics for
-- the queue tables' columns no plan uses — their sealed and hashed PANs among them (issue 17;
-- docs/db.md "Column statistics").
--
-- 0024 left the columns a plan can use at the default target (100): ANALYZE still read a
-- 30,000-row sample (300 x the largest target) of each table, and autovacuum's passes stayed
-- the heaviest work a 2,000/s run sees once a minute — analyze of the journal's day partition
-- ~0.11 s of a core, of switch.reversal_queue (churning, analysed as often) ~0.08 s. With target
-- 10 the sample is 3,000 rows: ANALYZE of the four tables of 0024, ~290 ms -> ~56 ms. What
-- those statistics decide here does not need more: every hot-path statement is a key lookup on
-- a unique index; the operators' lookups on a closed day go by index on rrn or pan_hmac, whose
-- estimates come from n_distinct; settlement and reconciliation read whole day partitions or a
-- time window by created_at (no index on it: a scan whatever the histogram says) and join them
-- by identity; the columns with few values (outcome, mti_class, kind, currency) fit in a
-- 10-entry most-common-values list.
--
-- switch.reversal_queue, switch.advice_queue, switch.inflight and switch.transfers: target 0
-- for every column that no WHERE, JOIN, GROUP BY, ORDER BY, index or conflict target of a
-- program names (the inventory: docs/db.md). That takes the sealed PANs (AES-GCM ciphertext),
-- the PAN hashes and the masked PANs of all four out of pg_statistic — none is ever filtered on.
-- Their existing statistics are deleted, as 0024 did.
--
-- A column added later to one of the five hot tables gets the default target, which would
-- bring the 30,000-row sample back: give it 10 or 0 (test_db_partitions
-- statistics_only_where_plans_use_them refuses a hot table's column at the default).

ALTER TABLE switch.reversal_queue
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN rrn SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN currency SET STATISTICS 0,
    ALTER COLUMN auth_code SET STATISTICS 0,
    ALTER COLUMN pan_masked SET STATISTICS 0,
    ALTER COLUMN pan_hmac SET STATISTICS 0,
    ALTER COLUMN pan_sealed SET STATISTICS 0,
    ALTER COLUMN extra_fields SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0,
    ALTER COLUMN attempts SET STATISTICS 0,
    ALTER COLUMN next_attempt_at SET STATISTICS 0,
    ALTER COLUMN last_attempt_at SET STATISTICS 0,
    ALTER COLUMN last_response_code SET STATISTICS 0,
    ALTER COLUMN acked_at SET STATISTICS 0,
    ALTER COLUMN billing_amount_minor SET STATISTICS 0,
    ALTER COLUMN conversion_rate SET STATISTICS 0,
    ALTER COLUMN billing_currency SET STATISTICS 0;

ALTER TABLE switch.advice_queue
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN issuer_stan SET STATISTICS 0,
    ALTER COLUMN issuer_transmission_time SET STATISTICS 0,
    ALTER COLUMN rrn SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN currency SET STATISTICS 0,
    ALTER COLUMN billing_amount_minor SET STATISTICS 0,
    ALTER COLUMN conversion_rate SET STATISTICS 0,
    ALTER COLUMN billing_currency SET STATISTICS 0,
    ALTER COLUMN stand_in_rc SET STATISTICS 0,
    ALTER COLUMN pan_masked SET STATISTICS 0,
    ALTER COLUMN pan_hmac SET STATISTICS 0,
    ALTER COLUMN pan_sealed SET STATISTICS 0,
    ALTER COLUMN reason SET STATISTICS 0,
    ALTER COLUMN attempts SET STATISTICS 0,
    ALTER COLUMN last_attempt_at SET STATISTICS 0,
    ALTER COLUMN last_response_code SET STATISTICS 0,
    ALTER COLUMN acked_at SET STATISTICS 0;

ALTER TABLE switch.inflight
    ALTER COLUMN mti SET STATISTICS 0,
    ALTER COLUMN rrn SET STATISTICS 0,
    ALTER COLUMN processing_code SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN currency SET STATISTICS 0,
    ALTER COLUMN pan_masked SET STATISTICS 0,
    ALTER COLUMN pan_hmac SET STATISTICS 0,
    ALTER COLUMN pan_sealed SET STATISTICS 0,
    ALTER COLUMN created_at SET STATISTICS 0,
    ALTER COLUMN billing_amount_minor SET STATISTICS 0,
    ALTER COLUMN conversion_rate SET STATISTICS 0,
    ALTER COLUMN billing_currency SET STATISTICS 0;

ALTER TABLE switch.transfers
    ALTER COLUMN sender_pan_masked SET STATISTICS 0,
    ALTER COLUMN sender_pan_hmac SET STATISTICS 0,
    ALTER COLUMN sender_pan_sealed SET STATISTICS 0,
    ALTER COLUMN recipient_pan_masked SET STATISTICS 0,
    ALTER COLUMN recipient_pan_hmac SET STATISTICS 0,
    ALTER COLUMN recipient_pan_sealed SET STATISTICS 0,
    ALTER COLUMN recipient_msisdn SET STATISTICS 0,
    ALTER COLUMN amount_minor SET STATISTICS 0,
    ALTER COLUMN currency SET STATISTICS 0,
    ALTER COLUMN fee_minor SET STATISTICS 0,
    ALTER COLUMN recipient_currency SET STATISTICS 0,
    ALTER COLUMN recipient_amount_minor SET STATISTICS 0,
    ALTER COLUMN conversion_rate SET STATISTICS 0,
    ALTER COLUMN aft_rc SET STATISTICS 0,
    ALTER COLUMN oct_rc SET STATISTICS 0,
    ALTER COLUMN auth_code SET STATISTICS 0,
    ALTER COLUMN response_code SET STATISTICS 0,
    ALTER COLUMN failed_leg SET STATISTICS 0,
    ALTER COLUMN updated_at SET STATISTICS 0;

-- The five hot tables: every column that keeps statistics, target 10 (on switch.authorizations
-- this reaches every partition; switch.create_authorization_partitions (0024) copies it to the
-- new ones).
DO $$
DECLARE
    t regclass;
    c name;
BEGIN
    FOREACH t IN ARRAY ARRAY['switch.authorizations', 'wallet.ledger', 'wallet.requests',
                             'wallet.wallets', 'switch.reversal_queue']::regclass[] LOOP
        FOR c IN SELECT a.attname FROM pg_attribute a
                  WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped
                    AND a.attstattarget <> 0 LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 10', t, c);
        END LOOP;
    END LOOP;
END
$$;

-- ANALYZE leaves the statistics of a column it now skips where they were: delete them (0024).
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DELETE FROM pg_statistic s USING pg_attribute a
         WHERE a.attrelid = s.starelid AND a.attnum = s.staattnum AND a.attstattarget = 0;
    ELSE
        RAISE NOTICE '0025: the statistics of the columns now at target 0 stay until a superuser runs: DELETE FROM pg_statistic s USING pg_attribute a WHERE a.attrelid = s.starelid AND a.attnum = s.staattnum AND a.attstattarget = 0';
    END IF;
END
$$;
