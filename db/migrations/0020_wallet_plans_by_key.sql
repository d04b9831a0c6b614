-- 0020: the wallet's hot path looks requests, holds and ledger entries up by key however its
-- tables grow (issue 17; docs/db.md "Plans that stay key lookups").
--
-- issuer-sim's sessions plan the batch functions once (generic plans, 0017) and keep the plans
-- for their whole life. Planned while wallet.requests held a few hundred rows — a young issuer
-- database, or one just emptied for a benchmark — the reversal check of sim_apply_batch,
-- EXISTS (SELECT 1 FROM wallet.requests r WHERE r.request_key = 'rev:' || o.key), was turned
-- into a hashed sub-plan: every batch read every key of wallet.requests into a hash table to
-- look up its few. With 30,000 requests that was most of PostgreSQL's CPU at 2,000
-- authorizations/s (p50 17 ms, and growing with the table). The planner may do this to any
-- correlated EXISTS; an OFFSET 0 in the sub-select stops it (PostgreSQL does not turn an EXISTS
-- with an OFFSET into a hashable IN), leaving a probe of the primary key per row. The three
-- EXISTS of the hot path over tables that only grow get one:
--   sim_apply_batch  (0017) the reversal tombstone of each decision's key, in wallet.requests;
--   ledger_settle    (0017) the tier-cap check's reversed entry, in wallet.ledger;
--   sim_reverse_batch (0019) the original's hold, in wallet.holds.
--
-- Each function is changed where it stands (its definition as PostgreSQL holds it, with the one
-- sub-select edited), so that this file says exactly what changes; the edit must find its text
-- exactly once, or the migration fails.

CREATE FUNCTION pg_temp.edit_function(p_fn regprocedure, p_from text, p_to text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_def text := pg_get_functiondef(p_fn);
    v_found integer := (length(v_def) - length(replace(v_def, p_from, ''))) / length(p_from);
BEGIN
    IF v_found <> 1 THEN
        RAISE EXCEPTION '0020: % holds "%" % times, not once', p_fn, p_from, v_found;
    END IF;
    EXECUTE replace(v_def, p_from, p_to);
END
$$;

SELECT pg_temp.edit_function(
    'wallet.sim_apply_batch(text[], bigint[], text[], text[], text[], bigint[], text[], text[],
                            text[], integer[], bigint[], bigint[], text[], date[], bigint[],
                            bigint[], integer[], date[], bigint[], bigint[], bigint[])',
    $x$WHERE r.request_key = 'rev:' || o.key)$x$,
    $x$WHERE r.request_key = 'rev:' || o.key OFFSET 0)$x$);

SELECT pg_temp.edit_function(
    'wallet.ledger_settle()',
    $x$AND l.amount_minor = -n.amount_minor))$x$,
    $x$AND l.amount_minor = -n.amount_minor OFFSET 0))$x$);

SELECT pg_temp.edit_function(
    'wallet.sim_reverse_batch(text[], text[], text[], bigint[], text[])',
    $x$WHERE y.request_key = a.key)$x$,
    $x$WHERE y.request_key = a.key OFFSET 0)$x$);
