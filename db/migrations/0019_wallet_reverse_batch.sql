-- 0019: a batch's reversals with set-based statements (issue 17; docs/db.md "The set-based
-- ledger"). After 0017 the decisions of a batch went in one sim_apply_batch call, but every
-- reversal was still its own wallet.sim_reverse call (~10 statements and a plpgsql loop each):
-- ~9 % of the load's requests and the wallet's largest per-request cost.
--
-- wallet.sim_reverse_batch(p_orig_key, p_mti, p_pcode, p_amount, p_rrn): element i of each array
-- is reversal i, with sim_reverse's parameters; one row (ord = i, then sim_reverse's columns) per
-- reversal, in order. The answers are sim_reverse's for the same reversals called one by one in
-- that order (test_db_wallet_ledger compares them on two databases). How:
--  * the originals' advisory locks (hash order) and their wallets' row locks (wallet order)
--    first — what sim_lock_batch takes too;
--  * the common reversals are done set-based: a repeat of a reversal already answered
--    ('duplicate'), an original never seen or without a wallet (recorded, '00'), and the reversal
--    of an original without any hold whose ledger entry (if any) is not a completion's capture —
--    a purchase, refund, credit, advice or a declined request: its opposite ledger entry (or 51
--    for a credit the wallet cannot give back) and the give-back of the original's usage
--    counters — ONE statement per table for all of them (ledger, wallets, requests), each only
--    when the batch has rows for it. Their ledger rows carry balance_after_minor (the locked
--    balance plus the amount), so ledger_fill runs no plpgsql per row;
--  * a reversal is done that way only when its original key and its wallet appear once among
--    the batch's reversals (then nothing else in the batch touches what it reads, and the order
--    between it and the others cannot change an answer); every other one — a hold's (an
--    authorization, a pre-auth with its increments), a completion's, a second reversal of one
--    original, a second reversal on one wallet — is a sim_reverse call, in order, after them.
CREATE FUNCTION wallet.sim_reverse_batch(p_orig_key text[], p_mti text[], p_pcode text[],
                                         p_amount bigint[], p_rrn text[])
RETURNS TABLE (ord integer, outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql
-- array parameters: one generic plan per session (see sim_apply_batch, 0017)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_set boolean[];    -- done set-based
    v_out text[];       -- verdict
    v_rc text[];
    v_auth text[];
    v_bal bigint[];     -- the answer's balances
    v_avail bigint[];
    v_wallet bigint[];  -- the original's wallet (NULL: none)
    v_entry bigint[];   -- the original's ledger entry to reverse (applied ones only)
    v_back bigint[];    -- the reversal's ledger amount (0: none)
    v_after bigint[];   -- the wallet's balance after it
    v_day date[];       -- the original's day (usage give-back)
    v_cash boolean[];
    v_give boolean[];   -- give its usage back (an approved original, amount moved)
    v_ledger boolean;
    v_usage boolean;
    v_record boolean;
    v_rest boolean;
    x record;
BEGIN
    PERFORM pg_advisory_xact_lock(h.h)
       FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(p_orig_key) k ORDER BY 1) h;
    PERFORM 1 FROM wallet.wallets w
     WHERE w.wallet_id = ANY (ARRAY(SELECT q.wallet_id FROM wallet.requests q
                                     WHERE q.request_key = ANY (p_orig_key)
                                       AND q.wallet_id IS NOT NULL))
     ORDER BY w.wallet_id FOR UPDATE;
    WITH a AS (
        SELECT a.i, a.key, r.request_key IS NOT NULL AS dup, r.response_code AS r_rc,
               r.auth_code AS r_auth,
               r.balance_minor AS r_bal, r.available_minor AS r_avail,
               o.request_key IS NOT NULL AS found, o.wallet_id, o.response_code AS o_rc,
               o.processing_code AS o_pcode, o.created_at AS o_at,
               count(*) OVER (PARTITION BY a.key) AS key_n,
               count(o.wallet_id) OVER (PARTITION BY o.wallet_id) AS wallet_n
          FROM unnest(p_orig_key) WITH ORDINALITY AS a(key, i)
          LEFT JOIN wallet.requests r ON r.request_key = 'rev:' || a.key
          LEFT JOIN wallet.requests o ON o.request_key = a.key),
    b AS (
        SELECT a.*, w.balance_minor AS bal, w.held_minor AS held, e.entry_id, e.amount_minor AS e_amount,
               a.key_n = 1
               AND (a.dup OR a.wallet_id IS NULL
                    OR (a.wallet_id IS NOT NULL AND a.wallet_n = 1
                        AND NOT EXISTS (SELECT 1 FROM wallet.holds y WHERE y.request_key = a.key)
                        AND e.kind IS DISTINCT FROM 'capture')) AS set_based
          FROM a
          LEFT JOIN wallet.wallets w ON w.wallet_id = a.wallet_id AND NOT a.dup
          LEFT JOIN wallet.ledger e ON e.request_key = a.key AND NOT a.dup
                                   AND a.wallet_id IS NOT NULL),
    c AS (
        SELECT b.*,
               CASE WHEN b.dup OR b.wallet_id IS NULL OR b.e_amount IS NULL THEN '00'
                    WHEN b.e_amount > 0 AND b.bal - b.held < b.e_amount THEN '51'
                    ELSE '00' END AS v_rc
          FROM b),
    d AS (
        SELECT c.*,
               CASE WHEN NOT c.dup AND c.wallet_id IS NOT NULL AND c.v_rc = '00'
                    THEN coalesce(-c.e_amount, 0) ELSE 0 END AS back
          FROM c)
    SELECT array_agg(d.set_based ORDER BY d.i),
           array_agg(CASE WHEN d.dup THEN 'duplicate' WHEN NOT d.found THEN 'not_found'
                          ELSE 'applied' END ORDER BY d.i),
           array_agg(CASE WHEN d.dup THEN d.r_rc::text ELSE d.v_rc END ORDER BY d.i),
           array_agg(CASE WHEN d.dup THEN d.r_auth END ORDER BY d.i),
           array_agg(CASE WHEN d.dup THEN d.r_bal WHEN d.wallet_id IS NULL THEN NULL
                          ELSE d.bal + d.back END ORDER BY d.i),
           array_agg(CASE WHEN d.dup THEN d.r_avail WHEN d.wallet_id IS NULL THEN NULL
                          ELSE d.bal + d.back - d.held END ORDER BY d.i),
           array_agg(CASE WHEN NOT d.dup THEN d.wallet_id END ORDER BY d.i),
           array_agg(d.entry_id ORDER BY d.i),
           array_agg(d.back ORDER BY d.i),
           array_agg(d.bal + d.back ORDER BY d.i),
           array_agg((d.o_at AT TIME ZONE 'UTC')::date ORDER BY d.i),
           array_agg(left(d.o_pcode, 2) = '01' ORDER BY d.i),
           array_agg(d.back <> 0 AND d.o_rc = '00' ORDER BY d.i),
           coalesce(bool_or(d.set_based AND d.back <> 0), false),
           coalesce(bool_or(d.set_based AND d.back <> 0 AND d.o_rc = '00'), false),
           coalesce(bool_or(d.set_based AND NOT d.dup), false),
           coalesce(bool_or(NOT d.set_based), false)
      INTO v_set, v_out, v_rc, v_auth, v_bal, v_avail, v_wallet, v_entry, v_back, v_after, v_day,
           v_cash, v_give, v_ledger, v_usage, v_record, v_rest
      FROM d;

    IF v_ledger THEN
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, balance_after_minor,
                                   reverses_entry_id, mti, processing_code, rrn)
        SELECT a.wallet_id, 'rev:' || a.key, 'reversal', a.back, a.after, a.entry, a.mti,
               a.pcode, a.rrn
          FROM unnest(v_set, v_wallet, p_orig_key, v_back, v_after, v_entry, p_mti, p_pcode,
                      p_rrn)
               AS a(set_based, wallet_id, key, back, after, entry, mti, pcode, rrn)
         WHERE a.set_based AND a.back <> 0;
    END IF;
    -- What the original consumed of the limits comes back (sim_reverse's rule, 0012).
    IF v_usage THEN
        UPDATE wallet.wallets y
           SET usage_minor = CASE WHEN a.back > 0 AND y.usage_date = a.day
                                  THEN greatest(y.usage_minor - a.back, 0) ELSE y.usage_minor END,
               usage_cash_minor = CASE WHEN a.back > 0 AND y.usage_date = a.day AND a.cash
                                       THEN greatest(y.usage_cash_minor - a.back, 0)
                                       ELSE y.usage_cash_minor END,
               usage_count = CASE WHEN a.back > 0 AND y.usage_date = a.day
                                  THEN greatest(y.usage_count - 1, 0) ELSE y.usage_count END,
               month_debit_minor = CASE WHEN a.back > 0
                                             AND y.usage_month = date_trunc('month', a.day)::date
                                        THEN greatest(y.month_debit_minor - a.back, 0)
                                        ELSE y.month_debit_minor END,
               day_credit_minor = CASE WHEN a.back < 0 AND y.usage_date = a.day
                                       THEN greatest(y.day_credit_minor + a.back, 0)
                                       ELSE y.day_credit_minor END,
               month_credit_minor = CASE WHEN a.back < 0
                                              AND y.usage_month = date_trunc('month', a.day)::date
                                         THEN greatest(y.month_credit_minor + a.back, 0)
                                         ELSE y.month_credit_minor END,
               updated_at = now()
          FROM unnest(v_set, v_give, v_wallet, v_back, v_day, v_cash)
               AS a(set_based, give, wallet_id, back, day, cash)
         WHERE a.set_based AND a.give AND y.wallet_id = a.wallet_id
           AND (y.usage_date = a.day OR y.usage_month = date_trunc('month', a.day)::date);
    END IF;
    IF v_record THEN
        INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                     response_code, balance_minor, available_minor)
        SELECT 'rev:' || a.key, a.wallet_id, a.mti, a.pcode, a.amount, a.rc, a.bal, a.avail
          FROM unnest(v_set, v_out, p_orig_key, v_wallet, p_mti, p_pcode, p_amount, v_rc, v_bal,
                      v_avail)
               AS a(set_based, verdict, key, wallet_id, mti, pcode, amount, rc, bal, avail)
         WHERE a.set_based AND a.verdict <> 'duplicate';
    END IF;
    -- The others one by one, in order.
    IF v_rest THEN
        FOR i IN 1 .. array_length(p_orig_key, 1) LOOP
            CONTINUE WHEN v_set[i];
            SELECT * INTO x FROM wallet.sim_reverse(p_orig_key[i], p_mti[i], p_pcode[i],
                                                    p_amount[i], p_rrn[i]) s;
            v_out[i] := x.outcome;
            v_rc[i] := x.rc;
            v_auth[i] := x.auth_code;
            v_bal[i] := x.balance_minor;
            v_avail[i] := x.available_minor;
        END LOOP;
    END IF;
    RETURN QUERY
    SELECT a.i::integer, a.verdict, a.rc, a.auth, a.bal, a.avail
      FROM unnest(v_out, v_rc, v_auth, v_bal, v_avail)
           WITH ORDINALITY AS a(verdict, rc, auth, bal, avail, i);
END
$$;
