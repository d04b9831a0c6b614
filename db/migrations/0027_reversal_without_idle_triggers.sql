-- 0027: a lone reversal (wallet.sim_reverse) runs no trigger that has nothing to do (issue 17;
-- docs/db.md "The set-based ledger").
--
-- issuer-sim applies a reversal that is alone in its batch with one sim_reverse call (two or
-- more in a row go through sim_reverse_batch, 0019, which already avoids both). At 2,000/s that
-- was ~7 % of a core, ~420 us a call, and two of its trigger runs did nothing useful:
--  * its UPDATE of the original's active holds ran the statement trigger holds_settle_update
--    even when it matched no hold — a purchase's or a refund's reversal has none. The UPDATE
--    now runs only when such a hold exists (one probe of the same predicate first);
--  * its ledger row left balance_after_minor to the per-row trigger ledger_fill (a plpgsql call,
--    a wallet lookup, the transaction-local running sum). The function holds the wallet's row
--    lock since its start and nothing before the INSERT moves the balance (the hold branch and
--    the ledger branch exclude each other), so it gives the value itself: the locked balance
--    plus the row's amount. ledger_settle still checks the chain: a wrong value would refuse the
--    reversal (23514), never move money.
-- Same answers and effects (test_db_wallet_ledger test_reversal_batch_answers_as_sim_reverse
-- compares it with sim_reverse_batch, and counts the triggers it runs). pgbench, a purchase and
-- its reversal per transaction, synchronous_commit off: sim_reverse 0.323-0.325 -> 0.260-0.265
-- ms.
-- The function is given whole (0012's, with those two changes).

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
    IF EXISTS (SELECT 1 FROM wallet.holds y
                WHERE y.status = 'active'
                  AND (y.request_key = p_orig_key OR y.parent_hold_id = v_parent)) THEN
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
    END IF;
    IF NOT v_released THEN
        SELECT * INTO e FROM wallet.ledger l WHERE l.request_key = p_orig_key;
        IF FOUND THEN
            IF e.amount_minor > 0 AND w.balance_minor - w.held_minor < e.amount_minor THEN
                v_rc := '51';
            ELSE
                INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor,
                                           balance_after_minor, reverses_entry_id, mti,
                                           processing_code, rrn)
                VALUES (e.wallet_id, v_key, 'reversal', -e.amount_minor,
                        w.balance_minor - e.amount_minor, e.entry_id, p_mti, p_pcode, p_rrn);
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
