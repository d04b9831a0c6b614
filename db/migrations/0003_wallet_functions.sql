-- 0003: issuer-sim's wallet operations. The decision (approve / which decline) is taken in C by
-- issuer-sim on a snapshot of the wallet row (sim/issuer/decide.c); these functions apply it
-- atomically, or refuse when the row changed since the snapshot (optimistic concurrency on the
-- row's xmin), so concurrent requests on one wallet are serialised and can never overdraw it.
-- Every request is recorded in wallet.requests: a repeat gets the recorded answer, never a second
-- movement. No table of 0002 changes meaning; nothing is added to them.

-- Applies the decision taken for request p_key on wallet p_wallet_id (NULL: no such card) whose
-- snapshot had row version p_xmin. Effects: PIN try counter (p_pin_tries, NULL = unchanged), daily
-- usage counters (p_usage_date NULL = unchanged), a hold (p_hold > 0) or a ledger movement
-- (p_ledger <> 0, kind p_kind). Returns one row:
--   outcome 'applied'   the decision was recorded (and its effects applied),
--           'duplicate' the request was answered before: rc/auth/balances are that answer,
--           'reversed'  a reversal for it arrived first: recorded as declined 12, no effect,
--           'retry'     the wallet changed since the snapshot: decide again on a fresh one.
CREATE FUNCTION wallet.sim_apply(
    p_key text, p_wallet_id bigint, p_xmin text, p_mti text, p_pcode text, p_amount bigint,
    p_rrn text, p_rc text, p_auth text, p_pin_tries integer, p_hold bigint, p_ledger bigint,
    p_kind text, p_usage_date date, p_usage_minor bigint, p_usage_cash bigint,
    p_usage_count integer)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cur_xmin text;
    r wallet.requests%ROWTYPE;
    v_hold bigint;
    v_bal bigint;
    v_held bigint;
    v_outcome text := 'applied';
BEGIN
    -- Serialises this request with its repeats and with its reversal (same key hash), whatever
    -- wallet they name; held until commit.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.xmin::text INTO cur_xmin FROM wallet.wallets w
         WHERE w.wallet_id = p_wallet_id FOR UPDATE;
    END IF;
    SELECT * INTO r FROM wallet.requests q WHERE q.request_key = p_key;
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate'::text, r.response_code::text, r.auth_code,
                            r.balance_minor, r.available_minor;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM wallet.requests q WHERE q.request_key = 'rev:' || p_key) THEN
        v_outcome := 'reversed';
        p_rc := '12';
        p_auth := NULL;
        p_pin_tries := NULL;
        p_usage_date := NULL;
        p_hold := 0;
        p_ledger := 0;
    ELSIF p_wallet_id IS NOT NULL AND cur_xmin IS DISTINCT FROM p_xmin THEN
        RETURN QUERY SELECT 'retry'::text, NULL::text, NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;

    IF p_wallet_id IS NOT NULL AND (p_pin_tries IS NOT NULL OR p_usage_date IS NOT NULL) THEN
        UPDATE wallet.wallets w
           SET pin_tries = coalesce(p_pin_tries, w.pin_tries),
               usage_date = coalesce(p_usage_date, w.usage_date),
               usage_minor = CASE WHEN p_usage_date IS NULL THEN w.usage_minor ELSE p_usage_minor END,
               usage_cash_minor = CASE WHEN p_usage_date IS NULL THEN w.usage_cash_minor
                                       ELSE p_usage_cash END,
               usage_count = CASE WHEN p_usage_date IS NULL THEN w.usage_count ELSE p_usage_count END,
               updated_at = now()
         WHERE w.wallet_id = p_wallet_id;
    END IF;
    IF p_hold > 0 THEN
        INSERT INTO wallet.holds (wallet_id, request_key, amount_minor, currency, auth_code, rrn,
                                  expires_at)
        SELECT p_wallet_id, p_key, p_hold, w.currency, p_auth, p_rrn, now() + interval '7 days'
          FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id
        RETURNING hold_id INTO v_hold;
    END IF;
    IF p_ledger <> 0 THEN
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, mti,
                                   processing_code, rrn, auth_code)
        VALUES (p_wallet_id, p_key, p_kind, p_ledger, p_mti, p_pcode, p_rrn, p_auth);
    END IF;
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.balance_minor, w.held_minor INTO v_bal, v_held
          FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id;
    END IF;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, auth_code, balance_minor, available_minor)
    VALUES (p_key, p_wallet_id, p_mti, p_pcode, p_amount, p_rc, p_auth, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, p_rc, p_auth, v_bal, v_bal - v_held;
END
$$;

-- Reverses the request p_orig_key (0420/0421, identified by DE 90 or by the reversal's own
-- DE 11/7/41) exactly once: an active hold is released, a ledger movement gets its opposite entry
-- (reverses_entry_id is unique), the day's usage counters are given back. The reversal itself is
-- recorded under 'rev:' || p_orig_key, so every repeat (0421, with any STAN) gets the same answer.
-- An unknown original is acknowledged (00) and the record stays as a tombstone: if the original
-- arrives later, wallet.sim_apply declines it without effect. A credit that can no longer be taken
-- back without overdrawing the wallet is answered 51 and left in place (for an operator).
-- Returns the same row shape as wallet.sim_apply (outcome 'applied', 'duplicate', 'not_found').
CREATE FUNCTION wallet.sim_reverse(p_orig_key text, p_mti text, p_pcode text, p_amount bigint,
                                   p_rrn text)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_key text := 'rev:' || p_orig_key;
    o wallet.requests%ROWTYPE;
    r wallet.requests%ROWTYPE;
    e wallet.ledger%ROWTYPE;
    w wallet.wallets%ROWTYPE;
    v_hold wallet.holds%ROWTYPE;
    v_amount bigint := 0;
    v_rc text := '00';
    v_outcome text := 'applied';
    v_bal bigint;
    v_held bigint;
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
    SELECT * INTO w FROM wallet.wallets x WHERE x.wallet_id = o.wallet_id FOR UPDATE;

    UPDATE wallet.holds h SET status = 'released', closed_at = now()
     WHERE h.request_key = p_orig_key AND h.status = 'active'
    RETURNING * INTO v_hold;
    IF FOUND THEN
        v_amount := v_hold.amount_minor;
    ELSE
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
    -- Give back the day's usage a debit consumed (only if it was counted today).
    IF v_rc = '00' AND v_amount > 0 AND o.response_code = '00'
       AND w.usage_date = (o.created_at AT TIME ZONE 'UTC')::date THEN
        UPDATE wallet.wallets x
           SET usage_minor = greatest(x.usage_minor - v_amount, 0),
               usage_cash_minor = CASE WHEN left(o.processing_code, 2) = '01'
                                       THEN greatest(x.usage_cash_minor - v_amount, 0)
                                       ELSE x.usage_cash_minor END,
               usage_count = greatest(x.usage_count - 1, 0),
               updated_at = now()
         WHERE x.wallet_id = w.wallet_id;
    END IF;
    SELECT x.balance_minor, x.held_minor INTO v_bal, v_held
      FROM wallet.wallets x WHERE x.wallet_id = w.wallet_id;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, balance_minor, available_minor)
    VALUES (v_key, w.wallet_id, p_mti, p_pcode, p_amount, v_rc, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, v_rc, NULL::text, v_bal, v_bal - v_held;
END
$$;

-- Releases holds past their expiry (issuer-sim runs it periodically). Returns how many.
CREATE FUNCTION wallet.sim_expire_holds() RETURNS integer
LANGUAGE sql AS $$
    WITH x AS (UPDATE wallet.holds SET status = 'expired', closed_at = now()
                WHERE status = 'active' AND expires_at < now() RETURNING 1)
    SELECT count(*)::integer FROM x;
$$;
