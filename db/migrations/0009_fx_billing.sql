-- 0009: currency conversion wired into switchd (issue 13, docs/fx.md "Wiring").
--
-- A BIN route names the currency its cards are billed in. When a request's DE 49 differs from
-- it, switchd converts at the rate in force (switch.fx_rates) and forwards DE 6 (the cardholder
-- billing amount), DE 10 (the conversion rate) and DE 51 (the billing currency). NULL: the
-- route's cards are billed in whatever DE 49 says, and nothing is converted.
ALTER TABLE switch.bin_routes
    ADD COLUMN billing_currency smallint CHECK (billing_currency BETWEEN 1 AND 999);

-- The conversion is durable with the request: the write-ahead row, the journal row and the
-- reversal keep the DE 6/10/51 the issuer saw, so that a reversal repeats the original's
-- conversion (never today's rate) and settlement totals the issuer side per billing currency.
-- All three or none.
ALTER TABLE switch.authorizations
    ADD COLUMN billing_amount_minor bigint CHECK (billing_amount_minor >= 0),   -- DE 6
    ADD COLUMN conversion_rate char(8) CHECK (conversion_rate ~ '^[0-7][0-9]{7}$'), -- DE 10
    ADD COLUMN billing_currency smallint CHECK (billing_currency BETWEEN 1 AND 999), -- DE 51
    ADD CONSTRAINT authorizations_billing_whole CHECK (
        (billing_amount_minor IS NULL) = (conversion_rate IS NULL)
        AND (billing_amount_minor IS NULL) = (billing_currency IS NULL));
ALTER TABLE switch.inflight
    ADD COLUMN billing_amount_minor bigint CHECK (billing_amount_minor >= 0),
    ADD COLUMN conversion_rate char(8) CHECK (conversion_rate ~ '^[0-7][0-9]{7}$'),
    ADD COLUMN billing_currency smallint CHECK (billing_currency BETWEEN 1 AND 999),
    ADD CONSTRAINT inflight_billing_whole CHECK (
        (billing_amount_minor IS NULL) = (conversion_rate IS NULL)
        AND (billing_amount_minor IS NULL) = (billing_currency IS NULL));
ALTER TABLE switch.reversal_queue
    ADD COLUMN billing_amount_minor bigint CHECK (billing_amount_minor >= 0),
    ADD COLUMN conversion_rate char(8) CHECK (conversion_rate ~ '^[0-7][0-9]{7}$'),
    ADD COLUMN billing_currency smallint CHECK (billing_currency BETWEEN 1 AND 999),
    ADD CONSTRAINT reversal_queue_billing_whole CHECK (
        (billing_amount_minor IS NULL) = (conversion_rate IS NULL)
        AND (billing_amount_minor IS NULL) = (billing_currency IS NULL));

-- recover_inflight (0006) carries the conversion into the 'lost' journal row and the reversal.
CREATE OR REPLACE FUNCTION switch.recover_inflight(p_owner text)
RETURNS TABLE (reversed bigint, settled bigint)
LANGUAGE sql AS $$
    WITH orphan AS (
        DELETE FROM switch.inflight f WHERE f.owner = p_owner RETURNING f.*
    ), seen AS (
        SELECT o.*, a.outcome AS j_outcome, a.auth_code AS j_auth
          FROM orphan o
          LEFT JOIN switch.authorizations a
            ON a.request_date = o.request_date AND a.acquirer_id = o.acquirer_id
           AND a.terminal_id = o.terminal_id AND a.stan = o.stan
           AND a.transmission_time = o.transmission_time AND a.mti_class = o.mti_class
    ), journaled AS (
        INSERT INTO switch.authorizations (request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, rrn, issuer_id, issuer_stan, issuer_transmission_time,
                    processing_code, amount_minor, currency, response_code, pan_masked, pan_hmac,
                    outcome, created_at, billing_amount_minor, conversion_rate, billing_currency)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, rrn,
               issuer_id, issuer_stan, issuer_transmission_time, processing_code, amount_minor,
               currency, '96', pan_masked, pan_hmac, 'lost', created_at, billing_amount_minor,
               conversion_rate, billing_currency
          FROM seen WHERE j_outcome IS NULL
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), queued AS (
        INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,
                    processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac,
                    pan_sealed, reason, billing_amount_minor, conversion_rate, billing_currency)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, issuer_id,
               issuer_stan, issuer_transmission_time, rrn, processing_code, amount_minor,
               currency, j_auth, pan_masked, pan_hmac, pan_sealed, 'recovery',
               billing_amount_minor, conversion_rate, billing_currency
          FROM seen WHERE j_outcome IS DISTINCT FROM 'approved'
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    -- (journaled runs although nothing reads it: data-modifying WITH parts always do.)
    SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM orphan) - (SELECT count(*) FROM queued)
$$;
