-- 0021: finished reversals leave the reversal queue (docs/db.md "switch.reversal_queue").
--
-- switch.reversal_queue kept every reversal it ever held, acked or failed, for ever: the sender
-- reads it through its partial index of pending rows only, but the identity index, the vacuum
-- passes and the table grew with every reversal sent (1.1 million rows, 669 MB in the
-- benchmark's curves cluster), and each finished row kept its sealed PAN (db_pan_seal,
-- AES-256-GCM) although nothing would ever send it again.
--
-- The journal's upkeep (atlas-db partitions), with the day cutoff of the partitions it detaches,
-- now moves the finished reversals (acked, failed) of the days before that cutoff to
-- switch.reversal_archive: the same record without the sealed PAN — the masked PAN and its keyed
-- hash stay, as in the journal — indexed by its id only, for the operators' archive (pg_dump it,
-- then empty it, as with a detached partition). A pending reversal is never moved: it is money
-- still owed to a wallet. The days moved are out of atlas-settle's and atlas-reconcile's reach,
-- as the journal's detached days are.

CREATE TABLE switch.reversal_archive (
    reversal_id       bigint PRIMARY KEY,
    request_date      date NOT NULL,
    acquirer_id       text NOT NULL,
    terminal_id       text NOT NULL,
    stan              char(6) NOT NULL,
    transmission_time char(10) NOT NULL,
    mti               char(4) NOT NULL,
    mti_class         char(3),
    issuer_id         text NOT NULL,
    issuer_stan       char(6) NOT NULL,
    issuer_transmission_time char(10) NOT NULL,
    rrn               text,
    processing_code   char(6) NOT NULL,
    amount_minor      bigint NOT NULL,
    currency          smallint NOT NULL,
    billing_amount_minor bigint,
    conversion_rate   char(8),
    billing_currency  smallint,
    auth_code         text,
    pan_masked        text NOT NULL,
    pan_hmac          bytea NOT NULL CHECK (octet_length(pan_hmac) = 32),
    extra_fields      jsonb NOT NULL,
    reason            text NOT NULL,
    state             text NOT NULL CHECK (state IN ('acked', 'failed')),
    attempts          integer NOT NULL,
    next_attempt_at   timestamptz NOT NULL,
    last_attempt_at   timestamptz,
    last_response_code char(2),
    created_at        timestamptz NOT NULL,
    acked_at          timestamptz,
    claimed_by        text,
    archived_at       timestamptz NOT NULL DEFAULT now()
);

-- Moves the finished reversals of the days before p_before; returns how many. One statement:
-- a row is in the queue or in the archive, never in both nor in neither.
CREATE FUNCTION switch.archive_reversals(p_before date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    WITH moved AS (
        DELETE FROM switch.reversal_queue q
         WHERE q.request_date < p_before AND q.state <> 'pending'
        RETURNING q.*)
    INSERT INTO switch.reversal_archive (
        reversal_id, request_date, acquirer_id, terminal_id, stan, transmission_time, mti,
        mti_class, issuer_id, issuer_stan, issuer_transmission_time, rrn, processing_code,
        amount_minor, currency, billing_amount_minor, conversion_rate, billing_currency,
        auth_code, pan_masked, pan_hmac, extra_fields, reason, state, attempts, next_attempt_at,
        last_attempt_at, last_response_code, created_at, acked_at, claimed_by)
    SELECT m.reversal_id, m.request_date, m.acquirer_id, m.terminal_id, m.stan,
           m.transmission_time, m.mti, m.mti_class, m.issuer_id, m.issuer_stan,
           m.issuer_transmission_time, m.rrn, m.processing_code, m.amount_minor, m.currency,
           m.billing_amount_minor, m.conversion_rate, m.billing_currency, m.auth_code,
           m.pan_masked, m.pan_hmac, m.extra_fields, m.reason, m.state, m.attempts,
           m.next_attempt_at, m.last_attempt_at, m.last_response_code, m.created_at, m.acked_at,
           m.claimed_by
      FROM moved m;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
