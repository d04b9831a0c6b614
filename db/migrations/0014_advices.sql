-- 0014: stand-in advices (issue 14; docs/switchd.md "Advices", docs/RELIABILITY.md "Advices").
--
-- When switchd approves a request in its issuer's place (stand-in), it owes that issuer an advice:
-- an 0120 (for an 0100: a hold) or an 0220 (for an 0200: a forced post), delivered exactly once
-- and in order per issuer, repeated as 0121/0221 until acknowledged. A stand-in approval the
-- terminal never received, or that the terminal reverses, is undone by a reversal of the advice
-- (0420, DE 90 naming the advice) delivered after it in the same per-issuer order.
--
-- switch.advice_queue holds both: kind 'advice' and kind 'reversal' (of an advice). It is a
-- sibling of switch.reversal_queue rather than a kind column in it because every reader of
-- reversal_queue (settlement, atlas-reconcile, the journal's "reversed" lookup, recover_inflight,
-- the transfer recovery, switchd's reversal loader) takes each of its rows to be a reversal of a
-- forwarded request; an advice row there would be counted as money given back. And a stand-in
-- after a timeout has both a reversal of the forwarded request (reversal_queue) and an advice
-- under the same request identity: one unique key could not hold both.
--
-- Rows are written through the journal writer (record kind ADVICE): committed with the journal
-- rows of the same moment, or fsync'd to its spool while PostgreSQL is away and replayed exactly
-- once (the unique key). queued_at is switchd's clock when the advice was decided: the per-issuer
-- order (a spool replay may commit rows out of their advice_id order).

CREATE TABLE switch.advice_queue (
    advice_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('advice', 'reversal')),
    -- the stand-in request's identity (as journaled)
    request_date      date NOT NULL,
    acquirer_id       text COLLATE "C" NOT NULL,
    terminal_id       text COLLATE "C" NOT NULL,
    stan              char(6) NOT NULL,
    transmission_time char(10) NOT NULL,
    mti               char(4) NOT NULL,       -- the terminal's request MTI (0100 / 0200)
    mti_class         char(3) GENERATED ALWAYS AS (substr(mti, 1, 3)) STORED,
    -- the advice as the issuer sees it: its link, the STAN and DE 7 chosen when it was stored
    -- (repeats carry the same: the issuer's request key); a reversal names them in DE 90
    issuer_id         text NOT NULL,
    issuer_stan       char(6) NOT NULL,
    issuer_transmission_time char(10) NOT NULL,
    rrn               text,
    processing_code   char(6) NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor >= 0),
    currency          smallint NOT NULL CHECK (currency BETWEEN 0 AND 999),
    billing_amount_minor bigint CHECK (billing_amount_minor >= 0),
    conversion_rate   char(8) CHECK (conversion_rate ~ '^[0-7][0-9]{7}$'),
    billing_currency  smallint CHECK (billing_currency BETWEEN 1 AND 999),
    auth_code         text NOT NULL CHECK (length(auth_code) BETWEEN 1 AND 6), -- DE 38: S + 5 digits
    stand_in_rc       char(2),                -- DE 39 of the stand-in decision (advices)
    pan_masked        text NOT NULL,
    pan_hmac          bytea NOT NULL CHECK (octet_length(pan_hmac) = 32),
    pan_sealed        bytea NOT NULL,
    reason            text NOT NULL
                      CHECK (reason IN ('stand_in', 'terminal', 'withdrawn', 'recovery')),
    owner             text NOT NULL DEFAULT '', -- switchd instance that decided it
    queued_at         timestamptz NOT NULL,
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acked', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    last_attempt_at   timestamptz,
    last_response_code char(2),
    created_at        timestamptz NOT NULL DEFAULT now(),
    acked_at          timestamptz,
    CONSTRAINT advice_queue_billing_whole CHECK (
        (billing_amount_minor IS NULL) = (conversion_rate IS NULL)
        AND (billing_amount_minor IS NULL) = (billing_currency IS NULL)),
    CONSTRAINT advice_queue_kind_reason CHECK ((kind = 'advice') = (reason = 'stand_in')),
    CONSTRAINT advice_queue_identity
        UNIQUE (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class, kind)
);
CREATE INDEX advice_queue_pending ON switch.advice_queue (queued_at, advice_id)
    WHERE state = 'pending';

-- An advice whose stand-in approval the journal does not hold (switchd stopped between the
-- advice's commit and the journal row's, so the terminal was never approved) gets its reversal:
-- the advice may already have reached the issuer. Run by switchd at start for its own instance,
-- after its journal spool is replayed, before it loads the queue. Returns how many were queued.
CREATE FUNCTION switch.recover_advices(p_owner text)
RETURNS bigint
LANGUAGE sql AS $$
    WITH orphan AS (
        SELECT q.* FROM switch.advice_queue q
         WHERE q.kind = 'advice' AND q.owner = p_owner
           AND NOT EXISTS (SELECT 1 FROM switch.advice_queue r
                            WHERE r.kind = 'reversal' AND r.request_date = q.request_date
                              AND r.acquirer_id = q.acquirer_id AND r.terminal_id = q.terminal_id
                              AND r.stan = q.stan AND r.transmission_time = q.transmission_time
                              AND r.mti_class = q.mti_class)
           AND NOT EXISTS (SELECT 1 FROM switch.authorizations a
                            WHERE a.request_date = q.request_date
                              AND a.acquirer_id = q.acquirer_id AND a.terminal_id = q.terminal_id
                              AND a.stan = q.stan AND a.transmission_time = q.transmission_time
                              AND a.mti_class = q.mti_class AND a.outcome = 'approved'
                              AND a.auth_code = q.auth_code)
    ), queued AS (
        INSERT INTO switch.advice_queue (kind, request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,
                    processing_code, amount_minor, currency, billing_amount_minor,
                    conversion_rate, billing_currency, auth_code, pan_masked, pan_hmac,
                    pan_sealed, reason, owner, queued_at)
        SELECT 'reversal', request_date, acquirer_id, terminal_id, stan, transmission_time, mti,
               issuer_id, issuer_stan, issuer_transmission_time, rrn, processing_code,
               amount_minor, currency, billing_amount_minor, conversion_rate, billing_currency,
               auth_code, pan_masked, pan_hmac, pan_sealed, 'recovery', owner,
               greatest(queued_at + interval '1 microsecond', now())
          FROM orphan
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM queued
$$;

-- ---- wallet side (issuer-sim): advices are forced posts ----------------------------------------
--
-- The switch already approved a stand-in request for the card's owner, so the issuer applies its
-- advice whatever the wallet's funds: an 0120 places a hold, an 0220 moves the ledger. When the
-- wallet cannot cover it, the wallet goes below zero — only through an advice — by raising its
-- forced_minor: the depth below zero the advices have allowed. The wallet's checks become
-- balance >= -forced_minor and held <= balance + forced_minor, and every later balance or hold
-- change shrinks forced_minor to what is still uncovered: an ordinary request can never take a
-- wallet lower than it is (its decision needs available funds, and the checks refuse anything
-- below the floor), and once the wallet is covered again the original checks hold exactly.
-- Each applied advice is recorded in wallet.advices with what it could not cover.

ALTER TABLE wallet.wallets ADD COLUMN forced_minor bigint NOT NULL DEFAULT 0;
ALTER TABLE wallet.wallets DROP CONSTRAINT wallet_not_overdrawn;
ALTER TABLE wallet.wallets DROP CONSTRAINT wallet_holds_covered;
ALTER TABLE wallet.wallets
    ADD CONSTRAINT wallet_not_overdrawn CHECK (balance_minor >= -forced_minor),
    ADD CONSTRAINT wallet_holds_covered
        CHECK (held_minor >= 0 AND held_minor <= balance_minor + forced_minor),
    ADD CONSTRAINT wallet_forced_nonneg CHECK (forced_minor >= 0);

CREATE TABLE wallet.advices (
    request_key    text PRIMARY KEY REFERENCES wallet.requests,
    wallet_id      bigint NOT NULL REFERENCES wallet.wallets,
    kind           text NOT NULL CHECK (kind IN ('hold', 'debit', 'credit')),
    amount_minor   bigint NOT NULL CHECK (amount_minor > 0),
    auth_code      text,                 -- the switch's stand-in approval code (DE 38)
    shortfall_minor bigint NOT NULL CHECK (shortfall_minor >= 0), -- what funds did not cover
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The floor shrinks as the wallet recovers (run by the balance and hold triggers' UPDATEs).
CREATE FUNCTION wallet.forced_shrink() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.forced_minor := least(NEW.forced_minor,
                              greatest(0, -NEW.balance_minor, NEW.held_minor - NEW.balance_minor));
    RETURN NEW;
END
$$;
CREATE TRIGGER wallets_forced_shrink BEFORE UPDATE OF balance_minor, held_minor ON wallet.wallets
    FOR EACH ROW WHEN (NEW.forced_minor > 0) EXECUTE FUNCTION wallet.forced_shrink();

-- An advice (parameters as wallet.sim_apply's; p_rc is the stand-in decision's DE 39, p_auth its
-- approval code). Exactly once by request key: a repeat (0121/0221) finds the recorded answer. An
-- advice whose reversal came first ('rev:' + key recorded) is acknowledged and not applied.
-- Answers '00' whenever it is recorded; '14' (no wallet for the card) and '57' (not the wallet's
-- currency) refuse it for good (the switch keeps it as failed, atlas-reconcile lists it).
CREATE FUNCTION wallet.sim_advice(
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
    v_forced bigint;
    v_need bigint;
    v_outcome text := 'applied';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    IF p_wallet_id IS NOT NULL THEN
        SELECT w.xmin::text, w.balance_minor, w.held_minor, w.forced_minor
          INTO cur_xmin, v_bal, v_held, v_forced
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
    IF v_reversed OR p_rc <> '00' THEN
        -- Reversed before it arrived (nothing to apply: acknowledged), or refused for good.
        v_outcome := CASE WHEN v_reversed THEN 'reversed' ELSE 'applied' END;
        p_rc := CASE WHEN v_reversed THEN '00' ELSE p_rc END;
        INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                     response_code, auth_code, balance_minor, available_minor)
        VALUES (p_key, p_wallet_id, p_mti, p_pcode, p_amount, p_rc, p_auth, v_bal, v_bal - v_held);
        RETURN QUERY SELECT v_outcome, p_rc, p_auth, v_bal, v_bal - v_held;
        RETURN;
    END IF;
    IF cur_xmin IS DISTINCT FROM p_xmin THEN
        RETURN QUERY SELECT 'retry'::text, NULL::text, NULL::text, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF p_usage_date IS NOT NULL THEN
        UPDATE wallet.wallets w
           SET usage_date = p_usage_date, usage_minor = p_usage_minor,
               usage_cash_minor = p_usage_cash, usage_count = p_usage_count,
               usage_month = p_usage_month, month_debit_minor = p_month_debit,
               day_credit_minor = p_day_credit, month_credit_minor = p_month_credit,
               updated_at = now()
         WHERE w.wallet_id = p_wallet_id;
    END IF;
    -- What the funds do not cover becomes the wallet's floor before the change is made.
    v_need := greatest(0, (v_held + greatest(p_hold, 0)) - (v_bal + least(p_ledger, 0)));
    IF v_need > v_forced THEN
        UPDATE wallet.wallets w SET forced_minor = v_need WHERE w.wallet_id = p_wallet_id;
    END IF;
    INSERT INTO wallet.requests (request_key, wallet_id, mti, processing_code, amount_minor,
                                 response_code, auth_code)
    VALUES (p_key, p_wallet_id, p_mti, p_pcode, p_amount, '00', p_auth);
    IF p_hold > 0 THEN
        INSERT INTO wallet.holds (wallet_id, request_key, amount_minor, currency, auth_code, rrn,
                                  expires_at)
        SELECT p_wallet_id, p_key, p_hold, w.currency, p_auth, p_rrn, now() + interval '7 days'
          FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id;
    END IF;
    IF p_ledger <> 0 THEN
        INSERT INTO wallet.ledger (wallet_id, request_key, kind, amount_minor, mti,
                                   processing_code, rrn, auth_code)
        VALUES (p_wallet_id, p_key, p_kind, p_ledger, p_mti, p_pcode, p_rrn, p_auth);
    END IF;
    SELECT w.balance_minor, w.held_minor INTO v_bal, v_held
      FROM wallet.wallets w WHERE w.wallet_id = p_wallet_id;
    UPDATE wallet.requests q SET balance_minor = v_bal, available_minor = v_bal - v_held
     WHERE q.request_key = p_key;
    IF p_hold > 0 OR p_ledger <> 0 THEN
        INSERT INTO wallet.advices (request_key, wallet_id, kind, amount_minor, auth_code,
                                    shortfall_minor)
        VALUES (p_key, p_wallet_id,
                CASE WHEN p_hold > 0 THEN 'hold' WHEN p_ledger < 0 THEN 'debit' ELSE 'credit' END,
                greatest(p_hold, abs(p_ledger)), p_auth, v_need);
    END IF;
    RETURN QUERY SELECT v_outcome, '00'::text, p_auth, v_bal, v_bal - v_held;
END
$$;
