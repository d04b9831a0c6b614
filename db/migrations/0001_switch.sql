-- 0001: schema `switch` — reference data the switch loads at start (issuers, BIN routes, acquirers,
-- terminals, keys under the LMK), the authorization journal (partitioned by day) and the
-- store-and-forward reversal queue. Applied by `atlas-db migrate` inside one transaction.

CREATE SCHEMA switch;

-- Keys exist here only encrypted under the HSM's Local Master Key, as hex (an optional leading
-- scheme letter, payShield style, e.g. 'U' for a double-length variant key), with their KCV.
CREATE TABLE switch.keys (
    key_id        text PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    key_type      text NOT NULL CHECK (key_type IN ('ZMK', 'ZPK', 'TPK', 'TAK', 'ZAK', 'BDK',
                                                    'PVK', 'CVK')),
    scheme        text NOT NULL CHECK (scheme IN ('TDES-2KEY', 'TDES-3KEY', 'AES-128', 'AES-192',
                                                  'AES-256')),
    key_under_lmk text NOT NULL CHECK (key_under_lmk ~ '^[A-Z]?[0-9A-F]{16,128}$'),
    kcv           text NOT NULL CHECK (kcv ~ '^[0-9A-F]{6}$'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE switch.issuers (
    issuer_id   text PRIMARY KEY CHECK (issuer_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        text NOT NULL,
    link        text NOT NULL,                      -- name of the issuer link in switchd's config
    zpk_key_id  text REFERENCES switch.keys,        -- PIN zone switch -> issuer
    zak_key_id  text REFERENCES switch.keys,        -- MAC on the issuer link
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Longest matching prefix wins (see switch.route_for_pan).
CREATE TABLE switch.bin_routes (
    prefix     text PRIMARY KEY CHECK (prefix ~ '^[0-9]{6,11}$'),
    issuer_id  text NOT NULL REFERENCES switch.issuers,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bin_routes_issuer ON switch.bin_routes (issuer_id);

CREATE TABLE switch.acquirers (
    acquirer_id text PRIMARY KEY CHECK (acquirer_id ~ '^[0-9A-Za-z]{1,11}$'), -- as DE 32
    name        text NOT NULL,
    zak_key_id  text REFERENCES switch.keys,        -- host-to-host acquirers: MAC key
    zpk_key_id  text REFERENCES switch.keys,        -- host-to-host acquirers: PIN zone
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A terminal protects PINs either with a TPK (and MACs with a TAK) or with DUKPT from a BDK
-- (TDES or AES; PIN and MAC keys are derived per transaction from the BDK and the KSN).
CREATE TABLE switch.terminals (
    acquirer_id text NOT NULL REFERENCES switch.acquirers,
    terminal_id text NOT NULL CHECK (terminal_id ~ '^[ -~]{8}$'),  -- DE 41, ans 8
    merchant_id text CHECK (merchant_id ~ '^[ -~]{1,15}$'),        -- DE 42
    key_scheme  text NOT NULL CHECK (key_scheme IN ('TPK', 'DUKPT-TDES', 'DUKPT-AES')),
    tpk_key_id  text REFERENCES switch.keys,
    tak_key_id  text REFERENCES switch.keys,
    bdk_key_id  text REFERENCES switch.keys,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (acquirer_id, terminal_id),
    CHECK ((key_scheme = 'TPK' AND tpk_key_id IS NOT NULL AND tak_key_id IS NOT NULL)
        OR (key_scheme <> 'TPK' AND bdk_key_id IS NOT NULL))
);

-- BIN routing for operators (switchd keeps the same rule in memory).
CREATE FUNCTION switch.route_for_pan(pan text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT r.issuer_id FROM switch.bin_routes r
     WHERE r.enabled AND left(pan, length(r.prefix)) = r.prefix
     ORDER BY length(r.prefix) DESC LIMIT 1
$$;

-- The journal: one row per request the switch answered. Partitioned by request_date, the UTC
-- date of the request's transmission time (DE 7, year inferred by the switch from its clock).
-- The primary key is the request's identity; it must contain the partition key (PostgreSQL
-- enforces uniqueness per partition), which is why request_date is part of it. mti_class folds
-- a repeat (0xx1) onto its original (0xx0), so a repeat or a replayed insert is a no-op, while a
-- reversal (04xx) is a row of its own next to the request it reverses. Identifier columns use the
-- "C" collation: byte order, and no locale work on every index comparison of the hot insert path.
-- Field formats (digits, lengths) are checked by the writer before insert (db_auth_record_check);
-- the table keeps only cheap CHECKs: regular-expression CHECKs cost ~20% of the insert path.
-- There is no surrogate id: the primary key is the row's identity, and a sequence default cost
-- about a quarter of the per-row insert time (measured).
CREATE TABLE switch.authorizations (
    request_date       date NOT NULL,
    acquirer_id        text COLLATE "C" NOT NULL,
    terminal_id        text COLLATE "C" NOT NULL,   -- DE 41
    stan               char(6) COLLATE "C" NOT NULL, -- DE 11
    transmission_time  char(10) COLLATE "C" NOT NULL, -- DE 7, MMDDhhmmss (GMT)
    mti                char(4) COLLATE "C" NOT NULL, -- the request's MTI
    mti_class          char(3) COLLATE "C" GENERATED ALWAYS AS (substr(mti, 1, 3)) STORED,
    rrn                text COLLATE "C",             -- DE 37
    issuer_id          text,
    issuer_stan        char(6),                      -- STAN used towards the issuer
    processing_code    char(6),                      -- DE 3
    amount_minor       bigint CHECK (amount_minor >= 0),            -- DE 4
    currency           smallint CHECK (currency BETWEEN 0 AND 999), -- DE 49, ISO 4217 numeric
    response_code      char(2),                      -- DE 39 sent to the terminal
    auth_code          text,                         -- DE 38
    pan_masked         text,                         -- first 6, '*', last 4
    pan_hmac           bytea CHECK (octet_length(pan_hmac) = 32), -- HMAC-SHA256(key, PAN)
    outcome            text NOT NULL CHECK (outcome IN ('approved', 'declined', 'rejected',
                                                        'timeout', 'unavailable', 'error')),
    original_stan      char(6),                      -- reversals: DE 90 original STAN
    original_transmission_time char(10),             -- reversals: DE 90 original DE 7
    created_at         timestamptz NOT NULL,         -- the switch received the request
    recorded_at        timestamptz NOT NULL DEFAULT now(), -- the transaction that stored the row
    lat_total_us       integer,      -- receipt -> journal submit
    lat_mac_us         integer,      -- HSM MAC verification
    lat_pin_us         integer,      -- HSM PIN translation
    lat_issuer_us      integer,      -- issuer round trip
    PRIMARY KEY (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class)
) PARTITION BY RANGE (request_date);

-- Rows whose day has no partition land here instead of failing (a failed insert would stall the
-- writer). It should stay empty: `atlas-db partitions` creates days ahead and reports its size.
CREATE TABLE switch.authorizations_default PARTITION OF switch.authorizations DEFAULT;

-- Operators look transactions up by card (pan_hmac) and by RRN; by time, the partition (day) and
-- the primary key's leading request_date do. Every extra index slows the journal's inserts; the
-- card lookup is equality only, so a hash index (no random inserts into a wide B-tree).
CREATE INDEX authorizations_pan ON switch.authorizations USING hash (pan_hmac);
CREATE INDEX authorizations_rrn ON switch.authorizations (rrn);

-- Creates the daily partitions switch.authorizations_YYYYMMDD for days [first, first + days).
-- Existing partitions are skipped. Returns how many were created.
CREATE FUNCTION switch.create_authorization_partitions(first date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    n integer := 0;
    part text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        part := 'authorizations_' || to_char(d, 'YYYYMMDD');
        IF to_regclass('switch.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE switch.%I PARTITION OF switch.authorizations '
                           'FOR VALUES FROM (%L) TO (%L)', part, d, d + 1);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Detaches (does not drop) the daily partitions of days before `before`; the detached tables
-- stay as ordinary tables switch.authorizations_YYYYMMDD for archiving. Returns their names.
CREATE FUNCTION switch.detach_authorization_partitions(before date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE i.inhparent = 'switch.authorizations'::regclass
           AND c.relname ~ '^authorizations_[0-9]{8}$'
           AND to_date(substr(c.relname, 16), 'YYYYMMDD') < before
         ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE switch.authorizations DETACH PARTITION switch.%I', r.relname);
        RETURN NEXT r.relname;
    END LOOP;
END
$$;

SELECT switch.create_authorization_partitions(current_date - 1, 9);

-- Store-and-forward reversals towards issuers (timeouts, late responses, terminal reversals the
-- issuer has not acknowledged). One row per original request; the switch sends 0420 first and
-- 0421 on each retry until an 0430 arrives. It holds what is needed to rebuild the message —
-- never a PIN block, track data or CVV. The PAN itself is needed in DE 2, so it is stored only
-- sealed (AES-256-GCM under the switch's data key, see db_pan_seal) next to its mask and HMAC.
CREATE TABLE switch.reversal_queue (
    reversal_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- identity of the original request (as journaled)
    request_date      date NOT NULL,
    acquirer_id       text NOT NULL,
    terminal_id       text NOT NULL,
    stan              char(6) NOT NULL,
    transmission_time char(10) NOT NULL,
    mti               char(4) NOT NULL,     -- original MTI (DE 90 positions 1-4)
    -- what the issuer saw: its link, the switch-assigned STAN and DE 7 sent to it
    issuer_id         text NOT NULL,
    issuer_stan       char(6) NOT NULL,
    issuer_transmission_time char(10) NOT NULL,
    rrn               text,
    processing_code   char(6) NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor >= 0),
    currency          smallint NOT NULL CHECK (currency BETWEEN 0 AND 999),
    auth_code         text,
    pan_masked        text NOT NULL,
    pan_hmac          bytea NOT NULL CHECK (octet_length(pan_hmac) = 32),
    pan_sealed        bytea NOT NULL,
    extra_fields      jsonb NOT NULL DEFAULT '{}'     -- other DEs to echo, e.g. {"32":"..","42":".."}
                      CHECK (NOT (extra_fields ?| ARRAY['2', '35', '36', '45', '52', '55'])),
    reason            text NOT NULL CHECK (reason IN ('timeout', 'late_response', 'terminal', 'error')),
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'acked', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    last_response_code char(2),
    created_at        timestamptz NOT NULL DEFAULT now(),
    acked_at          timestamptz,
    UNIQUE (request_date, acquirer_id, terminal_id, stan, transmission_time, mti)
);
CREATE INDEX reversal_queue_due ON switch.reversal_queue (next_attempt_at) WHERE state = 'pending';
