-- 0010: wallet-to-wallet transfers as a durable saga (issue 13; docs/transfers.md).
--
-- A terminal's 0200 with processing code 40 names a sender (DE 2) and a recipient (DE 103: a PAN,
-- or a mobile number registered in switch.aliases). switchd runs it as two legs, each a request
-- of the switch's own with an identity of its own (journaled, written ahead and reversed like any
-- terminal's request): an AFT (processing code 10) debiting the sender's wallet at the sender's
-- issuer for the amount plus the corridor's fee, then an OCT (26) crediting the recipient's wallet
-- at the recipient's issuer, converted to the recipient's currency. switch.transfers holds one
-- row per transfer, inserted (durably) before any leg leaves; its unique identity is the
-- durable duplicate check of the sender's request.

-- Mobile numbers (E.164, as customers know each other) -> the wallet card they pay to. The PAN
-- is stored sealed (db_pan_seal, AES-256-GCM under the switch's key), masked and hashed, never
-- in clear.
CREATE TABLE switch.aliases (
    msisdn      text COLLATE "C" PRIMARY KEY CHECK (msisdn ~ '^\+[1-9][0-9]{7,14}$'),
    pan_masked  text NOT NULL,
    pan_hmac    bytea NOT NULL CHECK (octet_length(pan_hmac) = 32),
    pan_sealed  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What a transfer from one currency to another costs and how much it may move. Domestic
-- transfers are the corridors of one currency to itself. No row (or not enabled): the corridor
-- is not served. The fee is in the sender's currency, minor units: fixed + amount x fee_bp /
-- 10,000, rounded half up. Data, changed with SQL and picked up at once (read per transfer).
CREATE TABLE switch.transfer_corridors (
    from_currency   smallint NOT NULL CHECK (from_currency BETWEEN 1 AND 999),
    to_currency     smallint NOT NULL CHECK (to_currency BETWEEN 1 AND 999),
    fee_fixed_minor bigint NOT NULL DEFAULT 0 CHECK (fee_fixed_minor >= 0),
    fee_bp          integer NOT NULL DEFAULT 0 CHECK (fee_bp BETWEEN 0 AND 1000),
    max_amount_minor bigint NOT NULL CHECK (max_amount_minor > 0),
    enabled         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (from_currency, to_currency)
);

CREATE TABLE switch.transfers (
    transfer_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- the sender's request (the terminal's identity, as journaled)
    request_date      date NOT NULL,
    acquirer_id       text COLLATE "C" NOT NULL,
    terminal_id       text COLLATE "C" NOT NULL,
    stan              char(6) COLLATE "C" NOT NULL,
    transmission_time char(10) COLLATE "C" NOT NULL,
    owner             text NOT NULL,  -- the switchd instance running it
    -- started: the row is durable, no leg has an answer yet; aft: the AFT approved, the OCT is
    -- being sent; completed: both legs approved, the sender answered 00; failed: a leg declined
    -- or timed out (every leg that was applied is being reversed); reversed: the sender's
    -- terminal reversed a completed transfer (both legs are being reversed).
    state             text NOT NULL DEFAULT 'started'
                      CHECK (state IN ('started', 'aft', 'completed', 'failed', 'reversed')),
    sender_issuer     text NOT NULL,
    sender_pan_masked text NOT NULL,
    sender_pan_hmac   bytea NOT NULL CHECK (octet_length(sender_pan_hmac) = 32),
    sender_pan_sealed bytea NOT NULL,
    recipient_issuer  text NOT NULL,
    recipient_pan_masked text NOT NULL,
    recipient_pan_hmac bytea NOT NULL CHECK (octet_length(recipient_pan_hmac) = 32),
    recipient_pan_sealed bytea NOT NULL,
    recipient_msisdn  text,           -- when DE 103 named a mobile number
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),       -- DE 4, sender's currency
    currency          smallint NOT NULL CHECK (currency BETWEEN 1 AND 999), -- DE 49
    fee_minor         bigint NOT NULL CHECK (fee_minor >= 0),         -- DE 28, sender's currency
    recipient_currency smallint NOT NULL CHECK (recipient_currency BETWEEN 1 AND 999),
    recipient_amount_minor bigint CHECK (recipient_amount_minor >= 0), -- DE 6 of the OCT
    conversion_rate   char(8),        -- DE 10 of the OCT (NULL: same currency)
    -- the legs' identity: request date and DE 7 shared, terminal ids derived from transfer_id
    -- (switch.transfer_leg_terminal), STAN = transfer_id mod 1,000,000
    leg_request_date  date NOT NULL,
    leg_transmission_time char(10) COLLATE "C" NOT NULL,
    aft_rc            char(2),
    oct_rc            char(2),
    auth_code         text,           -- DE 38 given to the sender (the AFT's)
    response_code     char(2),        -- DE 39 given to the sender
    failed_leg        text CHECK (failed_leg IN ('aft', 'oct', 'xfr')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (request_date, acquirer_id, terminal_id, stan, transmission_time)
);
CREATE INDEX transfers_open ON switch.transfers (owner) WHERE state IN ('started', 'aft');

-- DE 41 of a leg: 'XA' (AFT) or 'XO' (OCT) and six digits of transfer_id / 1,000,000; with the
-- STAN (transfer_id mod 1,000,000) a leg identity is unique for 10^12 transfers.
CREATE FUNCTION switch.transfer_leg_terminal(p_transfer_id bigint, p_leg text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_leg WHEN 'aft' THEN 'XA' ELSE 'XO' END
           || lpad(((p_transfer_id / 1000000) % 1000000)::text, 6, '0')
$$;
CREATE FUNCTION switch.transfer_leg_stan(p_transfer_id bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT lpad((p_transfer_id % 1000000)::text, 6, '0')
$$;

-- Begins a transfer: checks the corridor, computes the fee and inserts the row, in one
-- statement's transaction. Returns the new row's id and fee with response code '00'; or, with
-- no row inserted: '57' (corridor not served), '61' (over the corridor's maximum), '12' (the
-- recipient is the sender); or, when the sender's identity already has a row, '94' with that
-- row's id, state and answer (a repeat is answered from it, with the receipt time of the
-- sender's journal row for its DE 15).
CREATE FUNCTION switch.transfer_begin(
    p_request_date date, p_acquirer text, p_terminal text, p_stan text, p_tt text, p_owner text,
    p_sender_issuer text, p_sender_masked text, p_sender_hmac bytea, p_sender_sealed bytea,
    p_recipient_issuer text, p_recipient_masked text, p_recipient_hmac bytea,
    p_recipient_sealed bytea, p_msisdn text, p_amount bigint, p_currency smallint,
    p_recipient_currency smallint, p_leg_date date, p_leg_tt text)
RETURNS TABLE (transfer_id bigint, response_code text, fee_minor bigint, state text,
               answer_code text, auth_code text, recipient_amount_minor bigint,
               conversion_rate text, recipient_currency smallint, reason text,
               received_us bigint)
LANGUAGE plpgsql AS $$
DECLARE
    c switch.transfer_corridors%ROWTYPE;
    t switch.transfers%ROWTYPE;
    v_fee bigint;
    v_id bigint;
BEGIN
    SELECT * INTO t FROM switch.transfers x
     WHERE x.request_date = p_request_date AND x.acquirer_id = p_acquirer
       AND x.terminal_id = p_terminal AND x.stan = p_stan AND x.transmission_time = p_tt;
    IF FOUND THEN
        RETURN QUERY SELECT t.transfer_id, '94'::text, t.fee_minor, t.state, t.response_code::text,
                            t.auth_code, t.recipient_amount_minor, t.conversion_rate::text,
                            t.recipient_currency, 'duplicate'::text,
                            (SELECT (extract(epoch FROM a.created_at) * 1000000)::bigint
                               FROM switch.authorizations a
                              WHERE a.request_date = t.request_date
                                AND a.acquirer_id = t.acquirer_id
                                AND a.terminal_id = t.terminal_id AND a.stan = t.stan
                                AND a.transmission_time = t.transmission_time
                                AND a.mti_class = '020');
        RETURN;
    END IF;
    -- The identity taken by a request that is not a transfer (in flight, or answered after it
    -- reached an issuer): a duplicate, and nothing to answer it from here.
    IF EXISTS (SELECT 1 FROM switch.inflight f
                WHERE f.request_date = p_request_date AND f.acquirer_id = p_acquirer
                  AND f.terminal_id = p_terminal AND f.stan = p_stan
                  AND f.transmission_time = p_tt AND f.mti_class = '020')
       OR EXISTS (SELECT 1 FROM switch.authorizations a
                   WHERE a.request_date = p_request_date AND a.acquirer_id = p_acquirer
                     AND a.terminal_id = p_terminal AND a.stan = p_stan
                     AND a.transmission_time = p_tt AND a.mti_class = '020'
                     AND a.issuer_stan IS NOT NULL) THEN
        RETURN QUERY SELECT NULL::bigint, '94'::text, NULL::bigint, NULL::text, NULL::text,
                            NULL::text, NULL::bigint, NULL::text, NULL::smallint,
                            'identity taken by another request'::text, NULL::bigint;
        RETURN;
    END IF;
    IF p_sender_hmac = p_recipient_hmac THEN
        RETURN QUERY SELECT NULL::bigint, '12'::text, NULL::bigint, NULL::text, NULL::text,
                            NULL::text, NULL::bigint, NULL::text, NULL::smallint,
                            'recipient is the sender'::text, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO c FROM switch.transfer_corridors k
     WHERE k.from_currency = p_currency AND k.to_currency = p_recipient_currency AND k.enabled;
    IF NOT FOUND THEN
        RETURN QUERY SELECT NULL::bigint, '57'::text, NULL::bigint, NULL::text, NULL::text,
                            NULL::text, NULL::bigint, NULL::text, NULL::smallint,
                            'corridor not served'::text, NULL::bigint;
        RETURN;
    END IF;
    IF p_amount > c.max_amount_minor THEN
        RETURN QUERY SELECT NULL::bigint, '61'::text, NULL::bigint, NULL::text, NULL::text,
                            NULL::text, NULL::bigint, NULL::text, NULL::smallint,
                            'over the corridor''s maximum'::text, NULL::bigint;
        RETURN;
    END IF;
    v_fee := c.fee_fixed_minor + (p_amount * c.fee_bp + 5000) / 10000;
    INSERT INTO switch.transfers (request_date, acquirer_id, terminal_id, stan, transmission_time,
                owner, sender_issuer, sender_pan_masked, sender_pan_hmac, sender_pan_sealed,
                recipient_issuer, recipient_pan_masked, recipient_pan_hmac, recipient_pan_sealed,
                recipient_msisdn, amount_minor, currency, fee_minor, recipient_currency,
                leg_request_date, leg_transmission_time)
    VALUES (p_request_date, p_acquirer, p_terminal, p_stan, p_tt, p_owner, p_sender_issuer,
            p_sender_masked, p_sender_hmac, p_sender_sealed, p_recipient_issuer,
            p_recipient_masked, p_recipient_hmac, p_recipient_sealed, p_msisdn, p_amount,
            p_currency, v_fee, p_recipient_currency, p_leg_date, p_leg_tt)
    ON CONFLICT DO NOTHING
    RETURNING switch.transfers.transfer_id INTO v_id;
    IF v_id IS NULL THEN -- a concurrent insert of the same identity won
        RETURN QUERY SELECT NULL::bigint, '94'::text, NULL::bigint, 'started'::text, NULL::text,
                            NULL::text, NULL::bigint, NULL::text, NULL::smallint,
                            'duplicate'::text, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY SELECT v_id, '00'::text, v_fee, 'started'::text, NULL::text, NULL::text,
                        NULL::bigint, NULL::text, NULL::smallint, NULL::text, NULL::bigint;
END
$$;

-- Settles the transfers a stopped switchd instance left unfinished (run at its start, after
-- switch.recover_inflight, which has journaled and queued the reversal of every leg that was in
-- flight). A transfer whose sender was journaled an approval is completed: the sender may hold
-- it. Any other is failed: every leg the journal says was approved is reversed (a leg already
-- queued for reversal is left as it is), and the sender's request is journaled 'lost' if it
-- has no row. Returns how many were completed and how many failed.
CREATE FUNCTION switch.recover_transfers(p_owner text)
RETURNS TABLE (completed bigint, failed bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t switch.transfers%ROWTYPE;
    a switch.authorizations%ROWTYPE;
    v_leg text;
    v_journaled boolean;
    v_completed bigint := 0;
    v_failed bigint := 0;
BEGIN
    FOR t IN SELECT * FROM switch.transfers x
              WHERE x.owner = p_owner AND x.state IN ('started', 'aft') FOR UPDATE LOOP
        SELECT * INTO a FROM switch.authorizations j
         WHERE j.request_date = t.request_date AND j.acquirer_id = t.acquirer_id
           AND j.terminal_id = t.terminal_id AND j.stan = t.stan
           AND j.transmission_time = t.transmission_time AND j.mti_class = '020';
        v_journaled := FOUND;
        IF v_journaled AND a.outcome = 'approved' THEN
            UPDATE switch.transfers SET state = 'completed', response_code = '00',
                   updated_at = now() WHERE transfer_id = t.transfer_id;
            v_completed := v_completed + 1;
            CONTINUE;
        END IF;
        FOREACH v_leg IN ARRAY ARRAY['oct', 'aft'] LOOP
            INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,
                        transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time,
                        rrn, processing_code, amount_minor, currency, auth_code, pan_masked,
                        pan_hmac, pan_sealed, reason, billing_amount_minor, conversion_rate,
                        billing_currency)
            SELECT j.request_date, j.acquirer_id, j.terminal_id, j.stan, j.transmission_time,
                   j.mti, j.issuer_id, j.issuer_stan, j.issuer_transmission_time, j.rrn,
                   j.processing_code, j.amount_minor, j.currency, j.auth_code, j.pan_masked,
                   j.pan_hmac,
                   CASE v_leg WHEN 'aft' THEN t.sender_pan_sealed ELSE t.recipient_pan_sealed END,
                   'recovery', j.billing_amount_minor, j.conversion_rate, j.billing_currency
              FROM switch.authorizations j
             WHERE j.request_date = t.leg_request_date AND j.acquirer_id = t.acquirer_id
               AND j.terminal_id = switch.transfer_leg_terminal(t.transfer_id, v_leg)
               AND j.stan = switch.transfer_leg_stan(t.transfer_id)
               AND j.transmission_time = t.leg_transmission_time AND j.mti_class = '020'
               AND j.outcome = 'approved' AND j.issuer_stan IS NOT NULL
            ON CONFLICT DO NOTHING;
        END LOOP;
        IF NOT v_journaled THEN
            INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,
                        transmission_time, mti, issuer_id, processing_code, amount_minor,
                        currency, response_code, pan_masked, pan_hmac, outcome, created_at)
            VALUES (t.request_date, t.acquirer_id, t.terminal_id, t.stan, t.transmission_time,
                    '0200', t.sender_issuer, '400000', t.amount_minor, t.currency, '96',
                    t.sender_pan_masked, t.sender_pan_hmac, 'lost', t.created_at)
            ON CONFLICT DO NOTHING;
        END IF;
        UPDATE switch.transfers SET state = 'failed', response_code = CASE WHEN v_journaled THEN a.response_code ELSE '96' END,
               failed_leg = coalesce(failed_leg, 'xfr'), updated_at = now()
         WHERE transfer_id = t.transfer_id;
        v_failed := v_failed + 1;
    END LOOP;
    RETURN QUERY SELECT v_completed, v_failed;
END
$$;
