-- 0017: the wallet ledger, set-based (issue 17; docs/db.md "Wallet schema: the set-based
-- ledger"). issuer-sim's hot path used to call wallet.sim_apply once per decision: ~8 statements
-- each, and per-row plpgsql triggers (ledger_apply, holds_apply) moving balance_minor and
-- held_minor one row at a time. Here:
--  * the money invariants are kept by STATEMENT-level AFTER triggers with transition tables: one
--    plpgsql call per INSERT/UPDATE statement, whatever its number of rows, that applies the
--    statement's rows to their wallets with one set-based UPDATE (and verifies them);
--  * wallet.sim_apply_batch applies a whole batch of decisions with a few set-based statements
--    (one per table), in place of one sim_apply call per decision.
-- The contract of every function and table stays what 0002-0016 say; what changes is who moves
-- the balances (one trigger per statement instead of one per row) and what a ledger row's
-- balance_after_minor must be (see below).

-- ---- the ledger ----------------------------------------------------------------------------
--
-- balance_after_minor is now a checked chain, not a value the trigger overwrites: every row of
-- an INSERT statement must carry the wallet's balance before the statement plus the running sum
-- of that statement's rows of the wallet (in entry_id order) up to and including it. A writer
-- may give it (the batch does: it holds the locked balance) or leave it out (NULL: the fill
-- trigger below computes it for that row, as the per-op functions and an operator's SQL do).
-- The statement trigger then checks the chain against the wallet's balance and moves the
-- balance by the statement's sum in one UPDATE; a row that does not continue its wallet's
-- balance refuses the whole statement, so a ledger row can never say something the wallet does
-- not. The wallet's CHECKs (wallet_not_overdrawn, wallet_holds_covered) refuse an overdraft on
-- that UPDATE, as before.

ALTER TABLE wallet.ledger ALTER COLUMN balance_after_minor DROP DEFAULT;

DROP TRIGGER ledger_apply ON wallet.ledger;
DROP TRIGGER ledger_immutable ON wallet.ledger;

-- A row inserted without balance_after_minor: the wallet's balance (locked: concurrent writers
-- of the wallet queue here) plus this statement's filled rows of the wallet already inserted
-- (not yet applied: ledger_settle applies them at the statement's end). Those are summed per
-- wallet in a transaction-local setting, wallet.ledger_pending (',<wallet_id>:<sum>' per
-- wallet), which ledger_settle empties once the statement's rows are applied — an aborted
-- statement rolls it back with itself. Not found by entry_id order: an unlocked writer draws
-- its entry_id before it queues on the lock, and OVERRIDING SYSTEM VALUE can give any id, so
-- "the wallet's latest row" is not always the balance (test_db_wallet_ledger
-- test_fill_heads_on_the_locked_balance). A statement that mixes filled and given rows of one
-- wallet is refused by the chain check (the filled rows do not count the given ones): only
-- operator SQL could write one. Fires only for such rows (WHEN): the batch's rows cost no
-- plpgsql call.
CREATE FUNCTION wallet.ledger_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_bal bigint;
    v_pending text := coalesce(current_setting('wallet.ledger_pending', true), '');
    v_key text := ',' || NEW.wallet_id || ':';
    v_sum bigint := 0;
BEGIN
    SELECT w.balance_minor INTO v_bal FROM wallet.wallets w
     WHERE w.wallet_id = NEW.wallet_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet % does not exist', NEW.wallet_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF strpos(v_pending, v_key) > 0 THEN
        v_sum := substring(v_pending FROM v_key || '(-?[0-9]+)')::bigint;
        v_pending := regexp_replace(v_pending, v_key || '-?[0-9]+', '');
    END IF;
    NEW.balance_after_minor := v_bal + v_sum + NEW.amount_minor;
    PERFORM set_config('wallet.ledger_pending',
                       v_pending || v_key || (v_sum + NEW.amount_minor)::text, true);
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_fill BEFORE INSERT ON wallet.ledger
    FOR EACH ROW WHEN (NEW.balance_after_minor IS NULL) EXECUTE FUNCTION wallet.ledger_fill();

-- Once per INSERT statement: checks every wallet's rows continue its balance, moves each
-- balance by the statement's sum (one UPDATE; the CHECKs refuse an overdraft), and refuses a
-- positive entry that takes its wallet above the tier cap (0008's rule, the exact reversal of a
-- debit exempt).
CREATE FUNCTION wallet.ledger_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_wallets bigint;
    v_moved bigint;
    r record;
BEGIN
    -- The filled rows of this statement are applied below: their running sums are done with.
    IF coalesce(current_setting('wallet.ledger_pending', true), '') <> '' THEN
        PERFORM set_config('wallet.ledger_pending', '', true);
    END IF;
    WITH c AS (
        SELECT n.wallet_id, n.amount_minor,
               n.balance_after_minor - (sum(n.amount_minor) OVER (PARTITION BY n.wallet_id
                                                                  ORDER BY n.entry_id))::bigint
                   AS start
          FROM new_rows n),
    g AS (SELECT c.wallet_id, min(c.start) AS start, max(c.start) AS start2,
                 sum(c.amount_minor)::bigint AS delta
            FROM c GROUP BY c.wallet_id),
    u AS (UPDATE wallet.wallets w SET balance_minor = w.balance_minor + g.delta, updated_at = now()
            FROM g
           WHERE w.wallet_id = g.wallet_id AND g.start = g.start2 AND w.balance_minor = g.start
          RETURNING 1)
    SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM u) INTO v_wallets, v_moved;
    IF v_moved <> v_wallets THEN
        RAISE EXCEPTION 'wallet.ledger rows must continue their wallet''s balance (balance_after_minor)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_balance_chain';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.amount_minor > 0) THEN
        RETURN NULL; -- debits only: no cap to check
    END IF;
    SELECT n.wallet_id, n.balance_after_minor, t.max_balance_minor INTO r
      FROM new_rows n
      JOIN wallet.wallets w ON w.wallet_id = n.wallet_id
      JOIN wallet.kyc_tiers t ON t.tier = w.kyc_tier AND t.currency = w.currency
     WHERE n.amount_minor > 0 AND n.balance_after_minor > t.max_balance_minor
       AND NOT (n.kind = 'reversal' AND EXISTS (
                SELECT 1 FROM wallet.ledger l
                 WHERE l.entry_id = n.reverses_entry_id AND l.wallet_id = n.wallet_id
                   AND l.amount_minor = -n.amount_minor))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'wallet % would hold % above its tier cap %', r.wallet_id,
            r.balance_after_minor, r.max_balance_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallet_over_tier_cap';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_settle AFTER INSERT ON wallet.ledger
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.ledger_settle();

-- Append-only: any UPDATE or DELETE statement is refused, once per statement (0002's function).
CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON wallet.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.ledger_immutable();

-- TRUNCATE fires no row or UPDATE/DELETE trigger: without these, one statement would empty the
-- ledger (balances without their entries), the holds (held amounts without their holds) or the
-- recorded answers (a repeat applied again). A lab reset that empties every wallet table at
-- once (./run.sh's demo wallets, bench/e2e.sh) says so first: SET wallet.allow_truncate = on.
CREATE FUNCTION wallet.no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('wallet.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'wallet.% cannot be truncated (a lab reset sets wallet.allow_truncate = on)',
        TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON wallet.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.no_truncate();
CREATE TRIGGER holds_no_truncate BEFORE TRUNCATE ON wallet.holds
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.no_truncate();
CREATE TRIGGER requests_no_truncate BEFORE TRUNCATE ON wallet.requests
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.no_truncate();

-- ---- the holds -----------------------------------------------------------------------------
--
-- held_minor = the sum of the wallet's active holds, kept per statement: an INSERT adds its
-- active rows, an UPDATE the difference between the new and the old active rows (a hold's
-- wallet and amount stay fixed: refused otherwise), a DELETE takes its active rows away. The
-- wallet's CHECK wallet_holds_covered refuses a hold the wallet cannot cover.

DROP TRIGGER holds_apply ON wallet.holds;

CREATE FUNCTION wallet.holds_settle() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE wallet.wallets w SET held_minor = w.held_minor + d.delta, updated_at = now()
          FROM (SELECT n.wallet_id, sum(n.amount_minor) AS delta FROM new_rows n
                 WHERE n.status = 'active' GROUP BY n.wallet_id) d
         WHERE w.wallet_id = d.wallet_id;
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT 1 FROM old_rows o FULL JOIN new_rows n ON n.hold_id = o.hold_id
                    WHERE o.hold_id IS NULL OR n.hold_id IS NULL OR n.wallet_id <> o.wallet_id
                       OR n.amount_minor <> o.amount_minor) THEN
            RAISE EXCEPTION 'a hold''s wallet and amount are fixed'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        UPDATE wallet.wallets w SET held_minor = w.held_minor + d.delta, updated_at = now()
          FROM (SELECT x.wallet_id, sum(x.amount) AS delta
                  FROM (SELECT n.wallet_id, n.amount_minor AS amount FROM new_rows n
                         WHERE n.status = 'active'
                        UNION ALL
                        SELECT o.wallet_id, -o.amount_minor FROM old_rows o
                         WHERE o.status = 'active') x
                 GROUP BY x.wallet_id) d
         WHERE w.wallet_id = d.wallet_id AND d.delta <> 0;
    ELSE
        UPDATE wallet.wallets w SET held_minor = w.held_minor - d.delta, updated_at = now()
          FROM (SELECT o.wallet_id, sum(o.amount_minor) AS delta FROM old_rows o
                 WHERE o.status = 'active' GROUP BY o.wallet_id) d
         WHERE w.wallet_id = d.wallet_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER holds_settle_insert AFTER INSERT ON wallet.holds
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.holds_settle();
CREATE TRIGGER holds_settle_update AFTER UPDATE ON wallet.holds
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.holds_settle();
CREATE TRIGGER holds_settle_delete AFTER DELETE ON wallet.holds
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.holds_settle();

-- wallets_guard (0005) is unchanged: a statement of a client (trigger depth 0) that changes
-- balance_minor or held_minor is refused; the UPDATEs above run at depth 1.

-- ---- the batch -----------------------------------------------------------------------------
--
-- wallet.sim_apply_batch: the decisions of one issuer-sim batch, element i of every array being
-- decision i (sim_apply's parameters of 0008, same meaning), applied with a few set-based
-- statements: the request keys' advisory locks (in hash order), the wallets' row locks (in
-- wallet order), one SELECT that reads the batch's state (wallets, recorded answers, reversal
-- tombstones) and decides every verdict into arrays, then one statement per table — UPDATE
-- wallets FROM unnest(...) for the counters, INSERT ... SELECT FROM unnest(...) for the holds,
-- the ledger rows and the requests — each run only when the batch has rows for it; it returns
-- one row per decision, in the arrays' order (ord = i). Per decision, the answer is
-- sim_apply's:
--   'duplicate'  the key was answered before (its recorded answer);
--   'reversed'   its reversal came first: recorded as declined 12, no effect;
--   'retry'      the wallet's row version is not the snapshot's: nothing recorded. Also every
--                decision after the first one of the batch that changes the same wallet (PIN
--                try counter, usage counters, a hold or a ledger movement): sim_apply called in
--                the same order would have found the row changed by it — the later decision was
--                taken on a snapshot without the earlier one's effect, so it must be taken again;
--   'applied'    recorded, its effects applied; balances after them.
-- So each wallet gets at most one change per batch, and the ledger row's balance_after_minor is
-- the locked balance plus its amount (checked by ledger_settle). A key given twice in one batch
-- makes the requests INSERT fail (unique): the whole batch is refused, and issuer-sim applies
-- its decisions again one per transaction, where the second is a 'duplicate'.
CREATE FUNCTION wallet.sim_apply_batch(
    p_key text[], p_wallet_id bigint[], p_xmin text[], p_mti text[], p_pcode text[],
    p_amount bigint[], p_rrn text[], p_rc text[], p_auth text[], p_pin_tries integer[],
    p_hold bigint[], p_ledger bigint[], p_kind text[], p_usage_date date[],
    p_usage_minor bigint[], p_usage_cash bigint[], p_usage_count integer[],
    p_usage_month date[], p_month_debit bigint[], p_day_credit bigint[],
    p_month_credit bigint[])
RETURNS TABLE (ord integer, outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql
-- Its statements take arrays: a custom plan (the default for the first calls, and for good when
-- PostgreSQL estimates the generic one dearer, as it does for unnest of a parameter) is planned
-- again on every call, which cost more CPU than the whole batch's work. One generic plan per
-- session instead (measured: -50 % CPU per decision at a batch of 1 to 4).
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    -- Per decision (element i): its verdict, the wallet's balances after it (and after the
    -- batch's change of the wallet when that comes first), the wallet's currency, the answer.
    v_verdict text[];
    v_bal bigint[];
    v_held bigint[];
    v_currency smallint[];
    v_rc text[];
    v_auth text[];
    v_abal bigint[];
    v_aavail bigint[];
    v_counters boolean;
    v_holds boolean;
    v_ledger boolean;
    v_record boolean;
BEGIN
    -- A request with its repeats and its reversal, whatever wallet they name (as sim_apply).
    PERFORM pg_advisory_xact_lock(x.h)
       FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(p_key) k ORDER BY 1) x;
    PERFORM 1 FROM wallet.wallets w WHERE w.wallet_id = ANY (p_wallet_id)
      ORDER BY w.wallet_id FOR UPDATE;
    WITH st AS (
        SELECT o.i, o.wallet_id, o.hold, o.ledger, o.rc, o.auth, w.balance_minor AS bal,
               w.held_minor AS held, w.currency,
               q.request_key IS NOT NULL AS dup, q.response_code AS q_rc, q.auth_code AS q_auth,
               q.balance_minor AS q_bal, q.available_minor AS q_avail,
               q.request_key IS NULL AND EXISTS (SELECT 1 FROM wallet.requests r
                                                  WHERE r.request_key = 'rev:' || o.key)
                   AS reversed,
               o.wallet_id IS NOT NULL AND w.xmin::text IS DISTINCT FROM o.xmin AS stale,
               o.pin_tries IS NOT NULL OR o.usage_date IS NOT NULL OR o.hold > 0
                   OR o.ledger <> 0 AS changes,
               o.pin_tries IS NOT NULL OR o.usage_date IS NOT NULL AS counters
          FROM unnest(p_key, p_wallet_id, p_xmin, p_rc, p_auth, p_pin_tries, p_hold, p_ledger,
                      p_usage_date)
               WITH ORDINALITY AS o(key, wallet_id, xmin, rc, auth, pin_tries, hold, ledger,
                                    usage_date, i)
          LEFT JOIN wallet.wallets w ON w.wallet_id = o.wallet_id
          LEFT JOIN wallet.requests q ON q.request_key = o.key),
    fst AS (  -- per wallet, the first decision that would change it, and its effect
        SELECT DISTINCT ON (st.wallet_id) st.wallet_id, st.i AS first_i, st.ledger AS f_ledger,
               greatest(st.hold, 0) AS f_hold
          FROM st
         WHERE st.wallet_id IS NOT NULL AND NOT st.dup AND NOT st.reversed AND NOT st.stale
           AND st.changes
         ORDER BY st.wallet_id, st.i),
    v AS (
        SELECT st.*, f.first_i, f.f_ledger, f.f_hold,
               CASE WHEN st.dup THEN 'duplicate'
                    WHEN st.reversed THEN 'reversed'
                    WHEN st.stale OR st.i > coalesce(f.first_i, st.i) THEN 'retry'
                    ELSE 'applied' END AS verdict
          FROM st LEFT JOIN fst f ON f.wallet_id = st.wallet_id),
    e AS (  -- the wallet's balances after the decision (after the batch's change of it, when
            -- that comes first: a reversed one after the wallet's first change)
        SELECT v.*,
               v.bal + CASE WHEN v.verdict = 'applied' THEN v.ledger
                            WHEN v.verdict = 'reversed' AND v.i > v.first_i THEN v.f_ledger
                            ELSE 0 END AS e_bal,
               v.held + CASE WHEN v.verdict = 'applied' THEN greatest(v.hold, 0)
                             WHEN v.verdict = 'reversed' AND v.i > v.first_i THEN v.f_hold
                             ELSE 0 END AS e_held
          FROM v)
    SELECT array_agg(e.verdict ORDER BY e.i), array_agg(e.e_bal ORDER BY e.i),
           array_agg(e.e_held ORDER BY e.i), array_agg(e.currency ORDER BY e.i),
           array_agg(CASE e.verdict WHEN 'duplicate' THEN e.q_rc::text WHEN 'retry' THEN NULL
                                    WHEN 'reversed' THEN '12' ELSE e.rc END ORDER BY e.i),
           array_agg(CASE e.verdict WHEN 'duplicate' THEN e.q_auth WHEN 'applied' THEN e.auth
                     END ORDER BY e.i),
           array_agg(CASE e.verdict WHEN 'duplicate' THEN e.q_bal WHEN 'retry' THEN NULL
                                    ELSE e.e_bal END ORDER BY e.i),
           array_agg(CASE e.verdict WHEN 'duplicate' THEN e.q_avail WHEN 'retry' THEN NULL
                                    ELSE e.e_bal - e.e_held END ORDER BY e.i),
           coalesce(bool_or(e.verdict = 'applied' AND e.counters), false),
           coalesce(bool_or(e.verdict = 'applied' AND e.hold > 0), false),
           coalesce(bool_or(e.verdict = 'applied' AND e.ledger <> 0), false),
           coalesce(bool_or(e.verdict IN ('applied', 'reversed')), false)
      INTO v_verdict, v_bal, v_held, v_currency, v_rc, v_auth, v_abal, v_aavail, v_counters,
           v_holds, v_ledger, v_record
      FROM e;

    -- One statement per table, each only when the batch has something for it (a statement
    -- with no row would still run the table's statement trigger).
    IF v_counters THEN
        UPDATE wallet.wallets w
           SET pin_tries = coalesce(a.pin_tries, w.pin_tries),
               usage_date = coalesce(a.usage_date, w.usage_date),
               usage_minor = CASE WHEN a.usage_date IS NULL THEN w.usage_minor
                                  ELSE a.usage_minor END,
               usage_cash_minor = CASE WHEN a.usage_date IS NULL THEN w.usage_cash_minor
                                       ELSE a.usage_cash END,
               usage_count = CASE WHEN a.usage_date IS NULL THEN w.usage_count
                                  ELSE a.usage_count END,
               usage_month = CASE WHEN a.usage_date IS NULL THEN w.usage_month
                                  ELSE a.usage_month END,
               month_debit_minor = CASE WHEN a.usage_date IS NULL THEN w.month_debit_minor
                                        ELSE a.month_debit END,
               day_credit_minor = CASE WHEN a.usage_date IS NULL THEN w.day_credit_minor
                                       ELSE a.day_credit END,
               month_credit_minor = CASE WHEN a.usage_date IS NULL THEN w.month_credit_minor
                                         ELSE a.month_credit END,
               updated_at = now()
          FROM unnest(v_verdict, p_wallet_id, p_pin_tries, p_usage_date, p_usage_minor,
                      p_usage_cash, p_usage_count, p_usage_month, p_month_debit, p_day_credit,
                      p_month_credit)
               AS a(verdict, wallet_id, pin_tries, usage_date, usage_minor, usage_cash,
                    usage_count, usage_month, month_debit, day_credit, month_credit)
         WHERE w.wallet_id = a.wallet_id AND a.verdict = 'applied'
           AND (a.pin_tries IS NOT NULL OR a.usage_date IS NOT NULL);
    END IF;
    IF v_holds THEN
        INSERT INTO wallet.holds (wallet_id, request_key, amount_minor, currency, auth_code, rrn,
                                  expires_at)
        SELECT a.wallet_id, a.key, a.hold, a.currency, a.auth, a.rrn, now() + interval '7 days'
          FROM unnest(v_verdict, p_wallet_id, p_key, p_hold, v_currency, p_auth, p_rrn)
               AS a(verdict, wallet_id, key, hold, currency, auth, rrn)
         WHERE a.verdict = 'applied' AND a.hold > 0;
    END IF;
    IF v_ledger THEN
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor,
                                   mti, processing_code, rrn, auth_code)
        SELECT a.wallet_id, a.key, a.kind, a.ledger, a.bal, a.mti, a.pcode, a.rrn, a.auth
          FROM unnest(v_verdict, p_wallet_id, p_key, p_kind, p_ledger, v_bal, p_mti, p_pcode,
                      p_rrn, p_auth)
               AS a(verdict, wallet_id, key, kind, ledger, bal, mti, pcode, rrn, auth)
         WHERE a.verdict = 'applied' AND a.ledger <> 0;
    END IF;
    IF v_record THEN
        INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                     response_code, auth_code, balance_minor, available_minor)
        SELECT a.key, a.wallet_id, a.mti, a.pcode, a.amount, a.rc, a.auth, a.bal, a.avail
          FROM unnest(v_verdict, p_key, p_wallet_id, p_mti, p_pcode, p_amount, v_rc, v_auth,
                      v_abal, v_aavail)
               AS a(verdict, key, wallet_id, mti, pcode, amount, rc, auth, bal, avail)
         WHERE a.verdict IN ('applied', 'reversed');
    END IF;
    RETURN QUERY
    SELECT a.i::integer, a.verdict, a.rc, a.auth, a.bal, a.avail
      FROM unnest(v_verdict, v_rc, v_auth, v_abal, v_aavail)
           WITH ORDINALITY AS a(verdict, rc, auth, bal, avail, i);
END
$$;

-- A batch's locks, all taken first and each kind in one order, when the batch holds ops other
-- than plain decisions (reversals, completions, increments, advices: one function call each
-- after sim_apply_batch). Without it, two batches could each hold (from their decisions) the
-- advisory lock or the wallet that the other's later reversal needs — a deadlock PostgreSQL
-- breaks only after deadlock_timeout (1 s), which bigger batches made frequent under a flood of
-- reversals. Here: the advisory locks of every key the batch's ops name (p_keys: decisions',
-- completions' and increments' keys and the pre-auths they name; p_originals: the originals the
-- reversals name), in hash order, then the row locks of every wallet they will touch (p_wallets,
-- and the wallets of the originals already recorded — an original not recorded now cannot be
-- until this transaction ends, its key being locked), in wallet order. The functions take the
-- same locks again: for a transaction that holds them, a no-op.
CREATE FUNCTION wallet.sim_lock_batch(p_keys text[], p_originals text[], p_wallets bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x.h)
       FROM (SELECT DISTINCT hashtextextended(k, 0) AS h
               FROM unnest(p_keys || p_originals) k ORDER BY 1) x;
    -- One array (an init plan) keeps this an index scan: an OR with a sub-select would scan
    -- every wallet.
    PERFORM 1 FROM wallet.wallets w
     WHERE w.wallet_id = ANY (p_wallets || ARRAY(SELECT q.wallet_id FROM wallet.requests q
                                                  WHERE q.request_key = ANY (p_originals)
                                                    AND q.wallet_id IS NOT NULL))
     ORDER BY w.wallet_id FOR UPDATE;
END
$$;
