-- 0008: the regulator's limits by KYC tier (issue 13). wallet.kyc_tiers holds, per tier and
-- currency (limits are amounts in the wallet's currency), the maximum balance and the daily and
-- monthly debit and credit amount limits (NULL = no limit). Each wallet names its tier; the
-- monthly counters and the credit counters sit on the wallet row next to the daily ones, so the
-- decision stays O(1) per request (no SUM over the ledger on the hot path). The balance cap is
-- also enforced here, by the ledger trigger, so that a wrong decision cannot create an over-cap
-- wallet. wallet.sim_apply takes the new counters (new signature: the old one is dropped).

CREATE TABLE wallet.kyc_tiers (
    tier                     smallint NOT NULL CHECK (tier BETWEEN 1 AND 99),
    currency                 wallet.currency NOT NULL,
    name                     text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,31}$'),
    max_balance_minor        bigint CHECK (max_balance_minor >= 0),
    debit_daily_limit_minor  bigint CHECK (debit_daily_limit_minor >= 0),
    debit_monthly_limit_minor bigint CHECK (debit_monthly_limit_minor >= 0),
    credit_daily_limit_minor bigint CHECK (credit_daily_limit_minor >= 0),
    credit_monthly_limit_minor bigint CHECK (credit_monthly_limit_minor >= 0),
    PRIMARY KEY (tier, currency),
    -- A day's flow cannot exceed the month's it belongs to.
    CHECK (debit_daily_limit_minor <= debit_monthly_limit_minor),
    CHECK (credit_daily_limit_minor <= credit_monthly_limit_minor)
);

-- Illustrative figures, in the spirit of the tiered mobile-money accounts of Bank Al-Maghrib
-- (MAD), the Banque Centrale de Mauritanie (MRU), the BCEAO (XOF) and the BEAC (XAF): tier 1
-- "basic" (light KYC: a low balance cap and low flows), tier 2 "full" (identity verified), tier 9
-- "load" (the load harness's wallets: no limit bites). They are data: an operator changes them
-- with UPDATE, without a release. Amounts are minor units (MAD, MRU: 2 decimals; XOF, XAF: 0).
INSERT INTO wallet.kyc_tiers VALUES
    -- MAD: basic 5,000.00 balance, 2,000.00/day and 10,000.00/month out, 5,000.00/20,000.00 in
    (1, 504, 'basic',      500000,    200000,   1000000,    500000,   2000000),
    (2, 504, 'full',     20000000,   2000000,  10000000,   5000000,  20000000),
    (9, 504, 'load',  10000000000,      NULL,      NULL,      NULL,      NULL),
    -- MRU: basic 20,000.00 balance, 10,000.00/day and 50,000.00/month out
    (1, 929, 'basic',     2000000,   1000000,   5000000,   2000000,  10000000),
    (2, 929, 'full',     50000000,  10000000,  50000000,  20000000, 100000000),
    (9, 929, 'load',  10000000000,      NULL,      NULL,      NULL,      NULL),
    -- XOF: basic 200,000 balance, 100,000/day and 1,000,000/month out
    (1, 952, 'basic',      200000,    100000,   1000000,    200000,   1000000),
    (2, 952, 'full',      2000000,   1000000,  10000000,   2000000,  10000000),
    (9, 952, 'load',  10000000000,      NULL,      NULL,      NULL,      NULL),
    -- XAF: the same as XOF (the two CFA francs are at par)
    (1, 950, 'basic',      200000,    100000,   1000000,    200000,   1000000),
    (2, 950, 'full',      2000000,   1000000,  10000000,   2000000,  10000000),
    (9, 950, 'load',  10000000000,      NULL,      NULL,      NULL,      NULL);

-- usage_date (0002) is the day of the daily counters, now the credits' too; usage_month (the
-- first day of a month) is the month of the monthly ones. The first request of a new day or
-- month resets them in the same UPDATE that records it. The foreign key refuses a wallet whose
-- tier is not defined for its currency (its checks run only when tier or currency change).
-- A domain, not a table CHECK: checked only when the column is assigned (see 0005).
CREATE DOMAIN wallet.month_start AS date CHECK (VALUE = date_trunc('month', VALUE)::date);
ALTER TABLE wallet.wallets
    ADD COLUMN kyc_tier smallint NOT NULL DEFAULT 1,
    ADD COLUMN usage_month wallet.month_start,
    ADD COLUMN month_debit_minor wallet.minor_nonneg NOT NULL DEFAULT 0,
    ADD COLUMN day_credit_minor wallet.minor_nonneg NOT NULL DEFAULT 0,
    ADD COLUMN month_credit_minor wallet.minor_nonneg NOT NULL DEFAULT 0,
    ADD CONSTRAINT wallets_kyc_tier_fkey FOREIGN KEY (kyc_tier, currency)
        REFERENCES wallet.kyc_tiers (tier, currency);

-- Applies a ledger row to its wallet, as in 0002, and refuses (check_violation, naming
-- wallet_over_tier_cap) a positive entry that would take the balance above the wallet's tier cap:
-- an opening balance, a credit, a refund, an adjustment. Exempt is only the reversal of a debit
-- entry (reverses_entry_id names it, amount its exact opposite): it gives back what that debit
-- took and must never be refused, even when credits since then have filled the wallet to its
-- cap. Debits are never refused by the cap either. The cap is looked up for positive entries
-- only: the hot path's debits pay nothing for it.
CREATE OR REPLACE FUNCTION wallet.ledger_apply() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_cap bigint;
BEGIN
    UPDATE wallet.wallets SET balance_minor = balance_minor + NEW.amount_minor, updated_at = now()
     WHERE wallet_id = NEW.wallet_id
    RETURNING balance_minor INTO NEW.balance_after_minor;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet % does not exist', NEW.wallet_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NEW.amount_minor > 0 AND NOT (NEW.kind = 'reversal' AND EXISTS (
            SELECT 1 FROM wallet.ledger l
             WHERE l.entry_id = NEW.reverses_entry_id AND l.wallet_id = NEW.wallet_id
               AND l.amount_minor = -NEW.amount_minor)) THEN
        SELECT t.max_balance_minor INTO v_cap
          FROM wallet.wallets w
          JOIN wallet.kyc_tiers t ON t.tier = w.kyc_tier AND t.currency = w.currency
         WHERE w.wallet_id = NEW.wallet_id;
        IF v_cap IS NOT NULL AND NEW.balance_after_minor > v_cap THEN
            RAISE EXCEPTION 'wallet % would hold % above its tier cap %', NEW.wallet_id,
                NEW.balance_after_minor, v_cap
                USING ERRCODE = 'check_violation', CONSTRAINT = 'wallet_over_tier_cap';
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- Moving a wallet to a tier (or currency) whose cap is below its balance is refused: lower the
-- balance first. (Lowering a tier's cap in wallet.kyc_tiers is not refused: the wallets above
-- the new cap can spend, and receive nothing, until they are under it.)
CREATE FUNCTION wallet.wallets_tier_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_cap bigint;
BEGIN
    SELECT t.max_balance_minor INTO v_cap FROM wallet.kyc_tiers t
     WHERE t.tier = NEW.kyc_tier AND t.currency = NEW.currency;
    IF v_cap IS NOT NULL AND NEW.balance_minor > v_cap THEN
        RAISE EXCEPTION 'wallet % holds % above the cap % of tier %', NEW.wallet_id,
            NEW.balance_minor, v_cap, NEW.kyc_tier
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallet_over_tier_cap';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wallets_tier_guard BEFORE UPDATE OF kyc_tier, currency ON wallet.wallets
    FOR EACH ROW WHEN (NEW.kyc_tier <> OLD.kyc_tier OR NEW.currency <> OLD.currency)
    EXECUTE FUNCTION wallet.wallets_tier_guard();

-- wallet.sim_apply of 0005 with the monthly and credit counters: p_usage_date non-NULL sets
-- every counter (the daily ones for p_usage_date, the monthly ones for p_usage_month).
DROP FUNCTION wallet.sim_apply(text, bigint, text, text, text, bigint, text, text, text, integer,
                               bigint, bigint, text, date, bigint, bigint, integer);
CREATE FUNCTION wallet.sim_apply(
    p_key text, p_wallet_id bigint, p_xmin text, p_mti text, p_pcode text, p_amount bigint,
    p_rrn text, p_rc text, p_auth text, p_pin_tries integer, p_hold bigint, p_ledger bigint,
    p_kind text, p_usage_date date, p_usage_minor bigint, p_usage_cash bigint,
    p_usage_count integer, p_usage_month date, p_month_debit bigint, p_day_credit bigint,
    p_month_credit bigint)
RETURNS TABLE (outcome text, rc text, auth_code text, balance_minor bigint,
               available_minor bigint)
LANGUAGE plpgsql AS $$
DECLARE
    cur_xmin text;
    r wallet.requests%ROWTYPE;
    v_reversed boolean := false;
    v_bal bigint;
    v_held bigint;
    v_currency smallint;
    v_outcome text := 'applied';
BEGIN
    -- Serialises this request with its repeats and with its reversal (same key hash), whatever
    -- wallet they name; held until commit.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.xmin::text, w.balance_minor, w.held_minor, w.currency
          INTO cur_xmin, v_bal, v_held, v_currency
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

    IF p_wallet_id IS NOT NULL AND p_pin_tries IS NOT NULL AND p_usage_date IS NULL THEN
        UPDATE wallet.wallets w SET pin_tries = p_pin_tries, updated_at = now()
         WHERE w.wallet_id = p_wallet_id;
    ELSIF p_wallet_id IS NOT NULL AND p_usage_date IS NOT NULL THEN
        UPDATE wallet.wallets w
           SET pin_tries = coalesce(p_pin_tries, w.pin_tries),
               usage_date = p_usage_date, usage_minor = p_usage_minor,
               usage_cash_minor = p_usage_cash, usage_count = p_usage_count,
               usage_month = p_usage_month, month_debit_minor = p_month_debit,
               day_credit_minor = p_day_credit, month_credit_minor = p_month_credit,
               updated_at = now()
         WHERE w.wallet_id = p_wallet_id;
    END IF;
    IF p_hold > 0 THEN
        INSERT INTO wallet.holds (wallet_id, request_key, amount_minor, currency, auth_code, rrn,
                                  expires_at)
        VALUES (p_wallet_id, p_key, p_hold, v_currency, p_auth, p_rrn, now() + interval '7 days');
        v_held := v_held + p_hold;
    END IF;
    IF p_ledger <> 0 THEN
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, mti,
                                   processing_code, rrn, auth_code)
        VALUES (p_wallet_id, p_key, p_kind, p_ledger, p_mti, p_pcode, p_rrn, p_auth)
        RETURNING balance_after_minor INTO v_bal;
    END IF;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, auth_code, balance_minor, available_minor)
    VALUES (p_key, p_wallet_id, p_mti, p_pcode, p_amount, p_rc, p_auth, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, p_rc, p_auth, v_bal, v_bal - v_held;
END
$$;

-- wallet.sim_reverse of 0003 (same signature and answers), now giving back the monthly debit
-- counter and, for a reversed credit, the credit counters: limits count what was approved and
-- stands, and a reversal undoes the approval.
CREATE OR REPLACE FUNCTION wallet.sim_reverse(p_orig_key text, p_mti text, p_pcode text, p_amount bigint,
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
    v_day date;
    v_month date;
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
    -- Give back what the original consumed of the limits, in the counters of the day and month
    -- it was counted in (a counter that has since moved on to a new period is left alone): a
    -- debit's amount and count (v_amount > 0: a hold released or a debit credited back), a
    -- credit's amount (v_amount < 0: a credit taken back).
    IF v_rc = '00' AND v_amount <> 0 AND o.response_code = '00' THEN
        v_day := (o.created_at AT TIME ZONE 'UTC')::date;
        v_month := date_trunc('month', v_day)::date;
        UPDATE wallet.wallets x
           SET usage_minor = CASE WHEN v_amount > 0 AND x.usage_date = v_day
                                  THEN greatest(x.usage_minor - v_amount, 0) ELSE x.usage_minor END,
               usage_cash_minor = CASE WHEN v_amount > 0 AND x.usage_date = v_day
                                            AND left(o.processing_code, 2) = '01'
                                       THEN greatest(x.usage_cash_minor - v_amount, 0)
                                       ELSE x.usage_cash_minor END,
               usage_count = CASE WHEN v_amount > 0 AND x.usage_date = v_day
                                  THEN greatest(x.usage_count - 1, 0) ELSE x.usage_count END,
               month_debit_minor = CASE WHEN v_amount > 0 AND x.usage_month = v_month
                                        THEN greatest(x.month_debit_minor - v_amount, 0)
                                        ELSE x.month_debit_minor END,
               day_credit_minor = CASE WHEN v_amount < 0 AND x.usage_date = v_day
                                       THEN greatest(x.day_credit_minor + v_amount, 0)
                                       ELSE x.day_credit_minor END,
               month_credit_minor = CASE WHEN v_amount < 0 AND x.usage_month = v_month
                                         THEN greatest(x.month_credit_minor + v_amount, 0)
                                         ELSE x.month_credit_minor END,
               updated_at = now()
         WHERE x.wallet_id = w.wallet_id
           AND (x.usage_date = v_day OR x.usage_month = v_month);
    END IF;
    SELECT x.balance_minor, x.held_minor INTO v_bal, v_held
      FROM wallet.wallets x WHERE x.wallet_id = w.wallet_id;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, balance_minor, available_minor)
    VALUES (v_key, w.wallet_id, p_mti, p_pcode, p_amount, v_rc, v_bal, v_bal - v_held);
    RETURN QUERY SELECT v_outcome, v_rc, NULL::text, v_bal, v_bal - v_held;
END
$$;
