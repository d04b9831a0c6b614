-- 0012: pre-authorization completion, incremental authorization and the reversal of a
-- completion (issue 14, docs/issuer-sim.md "Pre-authorization"). An 0100 places a hold (0002);
-- an incremental 0100 (DE 90 naming the pre-auth) places a hold of its own linked to the
-- pre-auth's (parent_hold_id, same expiry); an 0220 completion (DE 90 naming the pre-auth)
-- captures the pre-auth and its increments at once: one 'capture' ledger entry of the final
-- amount, every hold of the group closed 'captured' (the rest of the money is available again);
-- the reversal of the completion credits the capture back and restores the holds as they were.
-- The tolerance above the hold is the issuer's (one row of wallet.issuer_config: each issuer
-- has its own database). Limits count what is captured, not what was held.

CREATE TABLE wallet.issuer_config (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),      -- a single row
    -- A completion may capture up to the holds' total + this many basis points of it
    -- (2000 = 20 %: the demo's, a fuel pump's or a restaurant's tip).
    completion_tolerance_bp integer NOT NULL DEFAULT 2000
        CHECK (completion_tolerance_bp BETWEEN 0 AND 100000)
);
INSERT INTO wallet.issuer_config DEFAULT VALUES;

ALTER TABLE wallet.holds
    ADD COLUMN parent_hold_id bigint REFERENCES wallet.holds, -- an increment: its pre-auth's hold
    ADD COLUMN captured_by text; -- the request key of the completion that captured it (kept)
CREATE INDEX holds_parent ON wallet.holds (parent_hold_id) WHERE parent_hold_id IS NOT NULL;
CREATE INDEX holds_captured_by ON wallet.holds (captured_by) WHERE captured_by IS NOT NULL;

-- Adds p_amount and p_count to wallet p_wallet's debit counters (day, count, cash when p_cash,
-- month) of day p_day. Counting (p_amount > 0 or p_count > 0; p_day is today): a counter of an
-- older period starts again from zero, as sim_decide reads it. Giving back (negative): only the
-- counters still of p_day's day and month change, never below zero (a reversal's rule, 0008).
CREATE FUNCTION wallet.usage_debit(p_wallet bigint, p_day date, p_amount bigint,
                                   p_count integer, p_cash boolean)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_month date := date_trunc('month', p_day)::date;
    v_cash bigint := CASE WHEN p_cash THEN p_amount ELSE 0 END;
BEGIN
    IF p_amount > 0 OR p_count > 0 THEN
        UPDATE wallet.wallets x
           SET usage_minor = CASE WHEN x.usage_date = p_day THEN x.usage_minor ELSE 0 END
                             + p_amount,
               usage_cash_minor = CASE WHEN x.usage_date = p_day THEN x.usage_cash_minor ELSE 0 END
                                  + v_cash,
               usage_count = CASE WHEN x.usage_date = p_day THEN x.usage_count ELSE 0 END
                             + p_count,
               day_credit_minor = CASE WHEN x.usage_date = p_day THEN x.day_credit_minor
                                       ELSE 0 END,
               usage_date = p_day,
               month_debit_minor = CASE WHEN x.usage_month = v_month THEN x.month_debit_minor
                                        ELSE 0 END + p_amount,
               month_credit_minor = CASE WHEN x.usage_month = v_month THEN x.month_credit_minor
                                         ELSE 0 END,
               usage_month = v_month,
               updated_at = now()
         WHERE x.wallet_id = p_wallet;
    ELSE
        UPDATE wallet.wallets x
           SET usage_minor = CASE WHEN x.usage_date = p_day
                                  THEN greatest(x.usage_minor + p_amount, 0) ELSE x.usage_minor END,
               usage_cash_minor = CASE WHEN x.usage_date = p_day
                                       THEN greatest(x.usage_cash_minor + v_cash, 0)
                                       ELSE x.usage_cash_minor END,
               usage_count = CASE WHEN x.usage_date = p_day
                                  THEN greatest(x.usage_count + p_count, 0) ELSE x.usage_count END,
               month_debit_minor = CASE WHEN x.usage_month = v_month
                                        THEN greatest(x.month_debit_minor + p_amount, 0)
                                        ELSE x.month_debit_minor END,
               updated_at = now()
         WHERE x.wallet_id = p_wallet AND (x.usage_date = p_day OR x.usage_month = v_month);
    END IF;
END
$$;

-- The completion p_key of the pre-auth p_orig_key (its request key: DE 90 as the issuer saw
-- it) on the card's wallet p_wallet_id (NULL: no wallet has the card), for p_amount in
-- p_currency. Answers (one row, sim_apply's shape):
--   00  captured: the pre-auth's hold and its increments closed 'captured', one 'capture'
--       ledger entry of -p_amount (hold_id = the pre-auth's hold); the day's and month's debit
--       counters give the holds back and count the capture;
--   25  no hold under p_orig_key (an unknown, declined or never-seen pre-auth);
--   12  the hold is no longer active (captured already, released by a reversal, expired), or
--       it is an increment's, or another card's; also a completion whose reversal came first;
--   13  p_amount above the holds' total + the issuer's tolerance (the holds stay as they were);
--   57  p_currency is not the hold's;  14  no wallet has the card;
--   51  the part above the holds is more than the wallet has available.
-- Repeats (same p_key) get the recorded answer. No PIN, status or limit check: the money was
-- reserved when the pre-auth was approved.
CREATE FUNCTION wallet.sim_complete(
    p_key text, p_orig_key text, p_wallet_id bigint, p_mti text, p_pcode text, p_amount bigint,
    p_currency integer, p_rrn text, p_auth text)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r wallet.requests%ROWTYPE;
    h wallet.holds%ROWTYPE;
    x wallet.holds%ROWTYPE;
    v_reversed boolean := false;
    v_total bigint;
    v_bp integer;
    v_rc text := '00';
    v_outcome text := 'applied';
    v_bal bigint;
    v_held bigint;
BEGIN
    -- The pre-auth's key first: its reversal, its increments and any other completion of it
    -- take it too; then this request's (its repeats and its reversal).
    PERFORM pg_advisory_xact_lock(hashtextextended(p_orig_key, 0));
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.balance_minor, w.held_minor INTO v_bal, v_held
          FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id FOR UPDATE;
    END IF;
    FOR r IN SELECT * FROM wallet.requests q WHERE q.request_key IN (p_key, 'rev:' || p_key) LOOP
        IF r.request_key = p_key THEN
            RETURN QUERY SELECT 'duplicate'::text, r.response_code::text, r.auth_code,
                                r.balance_minor, r.available_minor;
            RETURN;
        END IF;
        v_reversed := true;
    END LOOP;
    IF v_reversed THEN
        v_outcome := 'reversed';
        v_rc := '12';
    ELSIF p_wallet_id IS NULL THEN
        v_rc := '14';
    ELSE
        SELECT * INTO h FROM wallet.holds y WHERE y.request_key = p_orig_key FOR UPDATE;
        IF NOT FOUND THEN
            v_rc := '25';
        ELSIF h.parent_hold_id IS NOT NULL OR h.wallet_id <> p_wallet_id
              OR h.status <> 'active' OR h.expires_at <= now() THEN
            v_rc := '12';
        ELSIF h.currency <> p_currency THEN
            v_rc := '57';
        ELSE
            SELECT sum(y.amount_minor) INTO v_total FROM wallet.holds y
             WHERE (y.hold_id = h.hold_id OR y.parent_hold_id = h.hold_id)
               AND y.status = 'active';
            SELECT c.completion_tolerance_bp INTO v_bp FROM wallet.issuer_config c;
            IF p_amount > v_total + v_total * coalesce(v_bp, 0) / 10000 THEN
                v_rc := '13';
            ELSIF p_amount > v_bal - v_held + v_total THEN
                v_rc := '51';
            END IF;
        END IF;
    END IF;
    IF v_rc = '00' THEN
        FOR x IN UPDATE wallet.holds y SET status = 'captured', closed_at = now(),
                                           captured_by = p_key
                  WHERE (y.hold_id = h.hold_id OR y.parent_hold_id = h.hold_id)
                    AND y.status = 'active'
                  RETURNING * LOOP
            PERFORM wallet.usage_debit(x.wallet_id, (x.created_at AT TIME ZONE 'UTC')::date,
                                       -x.amount_minor, -1, left(p_pcode, 2) = '01');
        END LOOP;
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, hold_id, mti,
                                   processing_code, rrn, auth_code)
        VALUES (p_wallet_id, p_key, 'capture', -p_amount, h.hold_id, p_mti, p_pcode, p_rrn,
                p_auth);
        PERFORM wallet.usage_debit(p_wallet_id, (now() AT TIME ZONE 'UTC')::date, p_amount, 1,
                                   left(p_pcode, 2) = '01');
    ELSE
        p_auth := NULL;
    END IF;
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.balance_minor, w.held_minor INTO v_bal, v_held
          FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id;
    END IF;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, auth_code, balance_minor, available_minor)
    VALUES (p_key, p_wallet_id, p_mti, p_pcode, p_amount, v_rc, p_auth, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, v_rc, p_auth, v_bal, v_bal - v_held;
END
$$;

-- An incremental authorization: sim_apply (0008) of the decision taken for p_key, whose hold
-- joins the pre-auth p_parent_key's (parent_hold_id, and the pre-auth's expiry). An approval
-- whose pre-auth hold is not there becomes a decline: 25 no hold under p_parent_key, 12 a hold
-- no longer active, an increment's, or another wallet's (nothing then counts in the limits).
CREATE FUNCTION wallet.sim_apply_increment(
    p_parent_key text,
    p_key text, p_wallet_id bigint, p_xmin text, p_mti text, p_pcode text, p_amount bigint,
    p_rrn text, p_rc text, p_auth text, p_pin_tries integer, p_hold bigint, p_ledger bigint,
    p_kind text, p_usage_date date, p_usage_minor bigint, p_usage_cash bigint,
    p_usage_count integer, p_usage_month date, p_month_debit bigint, p_day_credit bigint,
    p_month_credit bigint)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    h wallet.holds%ROWTYPE;
    v_found boolean;
    a record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_parent_key, 0));
    IF p_hold > 0 THEN
        SELECT * INTO h FROM wallet.holds y WHERE y.request_key = p_parent_key FOR UPDATE;
        v_found := FOUND;
        IF NOT v_found OR h.parent_hold_id IS NOT NULL OR h.wallet_id <> p_wallet_id
           OR h.status <> 'active' OR h.expires_at <= now() THEN
            p_rc := CASE WHEN v_found THEN '12' ELSE '25' END;
            p_auth := NULL;
            p_hold := 0;
            p_usage_date := NULL;
        END IF;
    END IF;
    SELECT * INTO a FROM wallet.sim_apply(p_key, p_wallet_id, p_xmin, p_mti, p_pcode, p_amount,
        p_rrn, p_rc, p_auth, p_pin_tries, p_hold, p_ledger, p_kind, p_usage_date, p_usage_minor,
        p_usage_cash, p_usage_count, p_usage_month, p_month_debit, p_day_credit, p_month_credit);
    IF a.outcome = 'applied' AND p_hold > 0 THEN
        UPDATE wallet.holds y SET parent_hold_id = h.hold_id, expires_at = h.expires_at
         WHERE y.request_key = p_key;
    END IF;
    RETURN QUERY SELECT a.outcome, a.rc, a.auth_code, a.balance_minor, a.available_minor;
END
$$;

-- wallet.sim_reverse of 0008 (same signature and answers) with the pre-auth's cases:
-- * the reversal of a pre-auth releases its hold and its increments' active holds (the whole
--   authorization is undone); of an increment, that increment's hold only;
-- * the reversal of a completion credits the capture back ('reversal' entry, as for any debit)
--   and restores the holds it captured as they were (amount, expiry, parent): 'active' again,
--   or 'expired' when their expiry has passed meanwhile (released: nothing to hold any more),
--   or 'released' when the wallet no longer has the money to hold them (spent since the
--   completion: a reversal is never refused). The capture leaves the counters, the holds
--   restored active count again;
-- * the reversal of a pre-auth whose hold was captured changes nothing (00): the completion
--   stands until it is reversed itself — money never moves twice.
-- Counters are given back per hold, in the day and month the hold was counted in.
CREATE OR REPLACE FUNCTION wallet.sim_reverse(p_orig_key text, p_mti text, p_pcode text,
                                              p_amount bigint, p_rrn text)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := 'rev:' || p_orig_key;
    o wallet.requests%ROWTYPE;
    r wallet.requests%ROWTYPE;
    e wallet.ledger%ROWTYPE;
    w wallet.wallets%ROWTYPE;
    x wallet.holds%ROWTYPE;
    v_parent bigint;
    v_released boolean := false;
    v_amount bigint := 0;
    v_rc text := '00';
    v_outcome text := 'applied';
    v_bal bigint;
    v_held bigint;
    v_day date;
    v_month date;
    v_cash boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_orig_key, 0));
    SELECT * INTO r FROM wallet.requests q WHERE q.request_key = v_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, r.response_code::text, r.auth_code,
                            r.balance_minor, r.available_minor;
        RETURN;
    END IF;
    SELECT * INTO o FROM wallet.requests q WHERE q.request_key = p_orig_key;
    IF NOT FOUND OR o.wallet_id IS NULL THEN
        v_outcome := CASE WHEN FOUND THEN 'applied' ELSE 'not_found' END;
        INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                     response_code)
        VALUES (v_key, NULL, p_mti, p_pcode, p_amount, '00');
        RETURN QUERY SELECT v_outcome, '00'::text, NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO w FROM wallet.wallets y WHERE y.wallet_id = o.wallet_id FOR UPDATE;
    v_cash := left(o.processing_code, 2) = '01';

    -- A hold: the original's, and with a pre-auth's its increments'.
    SELECT y.hold_id INTO v_parent FROM wallet.holds y
     WHERE y.request_key = p_orig_key AND y.parent_hold_id IS NULL;
    FOR x IN UPDATE wallet.holds y SET status = 'released', closed_at = now()
              WHERE y.status = 'active'
                AND (y.request_key = p_orig_key OR y.parent_hold_id = v_parent)
              RETURNING * LOOP
        v_released := true;
        IF o.response_code = '00' THEN
            PERFORM wallet.usage_debit(w.wallet_id, (x.created_at AT TIME ZONE 'UTC')::date,
                                       -x.amount_minor, -1, v_cash);
        END IF;
    END LOOP;
    IF NOT v_released THEN
        SELECT * INTO e FROM wallet.ledger l WHERE l.request_key = p_orig_key;
        IF FOUND THEN
            IF e.amount_minor > 0 AND w.balance_minor - w.held_minor < e.amount_minor THEN
                v_rc := '51';
            ELSE
                INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor,
                                           reverses_entry_id, mti, processing_code, rrn)
                VALUES (e.wallet_id, v_key, 'reversal', -e.amount_minor, e.entry_id, p_mti,
                        p_pcode, p_rrn);
                v_amount := -e.amount_minor;
            END IF;
        END IF;
    END IF;
    -- Give back what the original consumed of the limits (0008's rule, holds done above).
    IF v_rc = '00' AND v_amount <> 0 AND o.response_code = '00' THEN
        v_day := (o.created_at AT TIME ZONE 'UTC')::date;
        v_month := date_trunc('month', v_day)::date;
        UPDATE wallet.wallets y
           SET usage_minor = CASE WHEN v_amount > 0 AND y.usage_date = v_day
                                  THEN greatest(y.usage_minor - v_amount, 0) ELSE y.usage_minor END,
               usage_cash_minor = CASE WHEN v_amount > 0 AND y.usage_date = v_day AND v_cash
                                       THEN greatest(y.usage_cash_minor - v_amount, 0)
                                       ELSE y.usage_cash_minor END,
               usage_count = CASE WHEN v_amount > 0 AND y.usage_date = v_day
                                  THEN greatest(y.usage_count - 1, 0) ELSE y.usage_count END,
               month_debit_minor = CASE WHEN v_amount > 0 AND y.usage_month = v_month
                                        THEN greatest(y.month_debit_minor - v_amount, 0)
                                        ELSE y.month_debit_minor END,
               day_credit_minor = CASE WHEN v_amount < 0 AND y.usage_date = v_day
                                       THEN greatest(y.day_credit_minor + v_amount, 0)
                                       ELSE y.day_credit_minor END,
               month_credit_minor = CASE WHEN v_amount < 0 AND y.usage_month = v_month
                                         THEN greatest(y.month_credit_minor + v_amount, 0)
                                         ELSE y.month_credit_minor END,
               updated_at = now()
         WHERE y.wallet_id = w.wallet_id
           AND (y.usage_date = v_day OR y.usage_month = v_month);
    END IF;
    -- A completion credited back: the holds it captured come back as they were, when they can.
    IF v_rc = '00' AND e.kind = 'capture' THEN
        FOR x IN SELECT * FROM wallet.holds y WHERE y.captured_by = p_orig_key
                    AND y.status = 'captured' ORDER BY y.hold_id FOR UPDATE LOOP
            SELECT y.balance_minor, y.held_minor INTO v_bal, v_held
              FROM wallet.wallets y WHERE y.wallet_id = w.wallet_id;
            IF x.expires_at <= now() THEN
                UPDATE wallet.holds y SET status = 'expired', closed_at = now()
                 WHERE y.hold_id = x.hold_id;
            ELSIF v_bal - v_held < x.amount_minor THEN
                UPDATE wallet.holds y SET status = 'released', closed_at = now()
                 WHERE y.hold_id = x.hold_id;
            ELSE
                UPDATE wallet.holds y SET status = 'active', closed_at = NULL
                 WHERE y.hold_id = x.hold_id;
                PERFORM wallet.usage_debit(w.wallet_id, (now() AT TIME ZONE 'UTC')::date,
                                           x.amount_minor, 1, v_cash);
            END IF;
        END LOOP;
    END IF;
    SELECT y.balance_minor, y.held_minor INTO v_bal, v_held
      FROM wallet.wallets y WHERE y.wallet_id = w.wallet_id;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, balance_minor, available_minor)
    VALUES (v_key, w.wallet_id, p_mti, p_pcode, p_amount, v_rc, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, v_rc, NULL::text, v_bal, v_bal - v_held;
END
$$;
