-- Stand-in processing (STIP, docs/switchd.md "Stand-in"): when an issuer's link is down or it does
-- not answer in time, and its [issuer] section says stand_in = on, switchd decides in its place
-- by the rules below, read per decision (stand-in is rare; nothing here is cached).
--
--   stand_in_rules      per issuer: processing codes allowed, maximum per transaction and per
--                       card per business day (in the card's billing currency: DE 6 when the
--                       request was converted, else DE 4), whether to verify the PIN and with
--                       which PVK (switch.keys, under the LMK).
--   negative_file       the issuer's cards that must not be approved: PAN keyed hash -> status.
--                       Maintained by the issuer (atlas-db negative add|remove).
--   stand_in_pvv        the PVV (and PVKI) of cards whose PIN the switch may verify in stand-in,
--                       published by the issuer (atlas-db negative pvv);
--   stand_in_pin_offset the same for IBM 3624 cards: the PIN offset (atlas-db negative ibm), with
--                       the issuer's decimalization table in its rules. The validation data is
--                       derived from the PAN at decision time (never stored: it holds PAN
--                       digits): the account number's first 11 digits and N.
--   stand_in_decisions  every approval reserved in stand-in (the per-card day totals are counted
--                       from it, under a per-card lock: two concurrent stand-in requests of one
--                       card cannot both pass the day's maximum).

CREATE TABLE switch.stand_in_rules (
    issuer_id         text PRIMARY KEY REFERENCES switch.issuers,
    processing_codes  text[] NOT NULL DEFAULT '{00}'
                      CHECK (array_position(processing_codes, NULL) IS NULL),
    max_amount_minor  bigint NOT NULL CHECK (max_amount_minor >= 0),
    max_daily_minor   bigint NOT NULL CHECK (max_daily_minor >= 0),
    verify_pin        boolean NOT NULL DEFAULT false,
    pvk_key_id        text REFERENCES switch.keys,
    decimalization_table text CHECK (decimalization_table ~ '^[0-9]{16}$'), -- IBM 3624 cards
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT verify_pin OR pvk_key_id IS NOT NULL)
);

CREATE TABLE switch.negative_file (
    issuer_id   text NOT NULL REFERENCES switch.issuers,
    pan_hmac    bytea NOT NULL CHECK (length(pan_hmac) = 32),
    status      text NOT NULL CHECK (status IN ('blocked', 'lost', 'stolen', 'expired', 'closed',
                                                'fraud')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer_id, pan_hmac)
);

CREATE TABLE switch.stand_in_pvv (
    issuer_id   text NOT NULL REFERENCES switch.issuers,
    pan_hmac    bytea NOT NULL CHECK (length(pan_hmac) = 32),
    pvki        smallint NOT NULL CHECK (pvki BETWEEN 0 AND 9),
    pvv         char(4) NOT NULL CHECK (pvv ~ '^[0-9]{4}$'),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer_id, pan_hmac)
);

CREATE TABLE switch.stand_in_pin_offset (
    issuer_id        text NOT NULL REFERENCES switch.issuers,
    pan_hmac         bytea NOT NULL CHECK (length(pan_hmac) = 32),
    pin_offset       text NOT NULL CHECK (pin_offset ~ '^[0-9]{4,12}$'),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer_id, pan_hmac)
);

CREATE TABLE switch.stand_in_decisions (
    -- the request's identity, as in switch.authorizations
    request_date      date NOT NULL,
    acquirer_id       text COLLATE "C" NOT NULL,
    terminal_id       text COLLATE "C" NOT NULL,
    stan              char(6) COLLATE "C" NOT NULL,
    transmission_time char(10) COLLATE "C" NOT NULL,
    mti_class         char(3) COLLATE "C" NOT NULL,
    issuer_id         text NOT NULL,
    pan_hmac          bytea NOT NULL,
    business_day      date NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor >= 0), -- billing currency
    currency          smallint NOT NULL,
    -- reserved: counted in the day's total (also when switchd stopped before answering: the
    -- total errs on the safe side); void: the advice could not be stored, nothing approved.
    state             text NOT NULL DEFAULT 'reserved' CHECK (state IN ('reserved', 'void')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class)
);
CREATE INDEX stand_in_decisions_card ON switch.stand_in_decisions (issuer_id, pan_hmac,
                                                                   business_day);

-- The journal says which rows were decided in stand-in (approvals and declines alike); every
-- other column keeps its meaning.
ALTER TABLE switch.authorizations ADD COLUMN stand_in boolean NOT NULL DEFAULT false;

-- Reserves amount for the card's business day when the day's total stays within p_max: takes a
-- per-card lock for the transaction, counts the card's reserved decisions of the day, and
-- inserts this one. Returns (ok, the day's total before this one, duplicate). An identity that
-- holds a reservation already is a duplicate (a repeat, or a copy decided by another instance):
-- not ok, nothing counted — the caller answers it from the journal, never approves it twice.
CREATE FUNCTION switch.stand_in_reserve(p_date date, p_acquirer text, p_terminal text,
                                        p_stan text, p_de7 text, p_mti_class text,
                                        p_issuer text, p_pan_hmac bytea, p_day date,
                                        p_amount bigint, p_currency smallint, p_max bigint)
RETURNS TABLE (ok boolean, day_total bigint, duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_total bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_issuer || ':' || encode(p_pan_hmac, 'hex')
                                                   || ':' || p_day::text, 13));
    IF EXISTS (SELECT 1 FROM switch.stand_in_decisions d
                WHERE d.request_date = p_date AND d.acquirer_id = p_acquirer
                  AND d.terminal_id = p_terminal AND d.stan = p_stan
                  AND d.transmission_time = p_de7 AND d.mti_class = p_mti_class
                  AND d.state = 'reserved') THEN
        RETURN QUERY SELECT false, NULL::bigint, true;
        RETURN;
    END IF;
    SELECT coalesce(sum(d.amount_minor), 0) INTO v_total
      FROM switch.stand_in_decisions d
     WHERE d.issuer_id = p_issuer AND d.pan_hmac = p_pan_hmac AND d.business_day = p_day
       AND d.state = 'reserved';
    IF v_total + p_amount > p_max THEN
        RETURN QUERY SELECT false, v_total, false;
        RETURN;
    END IF;
    INSERT INTO switch.stand_in_decisions (request_date, acquirer_id, terminal_id, stan,
                transmission_time, mti_class, issuer_id, pan_hmac, business_day, amount_minor,
                currency)
    VALUES (p_date, p_acquirer, p_terminal, p_stan, p_de7, p_mti_class, p_issuer, p_pan_hmac,
            p_day, p_amount, p_currency)
    ON CONFLICT (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class)
    DO UPDATE SET state = 'reserved', amount_minor = EXCLUDED.amount_minor,
                  business_day = EXCLUDED.business_day, created_at = now();
    RETURN QUERY SELECT true, v_total, false;
END
$$;
