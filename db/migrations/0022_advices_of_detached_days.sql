-- 0022: a stand-in advice of a day the journal no longer holds is never "recovered"; finished
-- advices leave the advice queue as finished reversals do (0021). docs/db.md
-- "switch.advice_queue".
--
-- switch.recover_advices (0014) queues the reversal of every advice of an instance whose
-- stand-in approval the journal does not hold (switchd stopped between the advice's commit and
-- the journal row's: the terminal never got the approval). It runs at every start of switchd,
-- over every advice the instance ever decided — acked ones included, as the queue kept them for
-- ever. Once the journal's upkeep detaches a day (atlas-db partitions --retain-days N), that
-- day's approvals are no longer in switch.authorizations, so every advice of the day looked
-- orphaned: the next start of switchd would have reversed, at the issuer, stand-in approvals
-- the terminals had received (test_db_partitions advices_of_detached_days_not_recovered).
-- The upkeep detaches whole days from the oldest on: an advice of a day before the journal's
-- oldest attached day partition is left as it is (the journal cannot tell whether its approval
-- was recorded). A later day without a partition of its own (the upkeep late: the journal
-- refused its rows) is recovered as before: there the journal cannot hold the approval.

-- The oldest day the journal holds: the earliest day partition (switch.create_authorization_
-- partitions' names) attached to switch.authorizations; NULL when there is none.
CREATE FUNCTION switch.journal_first_day() RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT min(to_date(substr(c.relname, 16), 'YYYYMMDD'))
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'switch.authorizations'::regclass
       AND c.relname ~ '^authorizations_[0-9]{8}$'
$$;

CREATE OR REPLACE FUNCTION switch.recover_advices(p_owner text)
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
           AND q.request_date >= (SELECT coalesce(switch.journal_first_day(), '-infinity'))
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

-- Finished advices and advice reversals (acked, failed) of the days before p_before move to
-- switch.advice_archive, without their sealed PAN (as 0021 does for reversals; a pending row is
-- work still owed and stays). Returns how many.
CREATE TABLE switch.advice_archive (
    advice_id         bigint PRIMARY KEY,
    kind              text NOT NULL,
    request_date      date NOT NULL,
    acquirer_id       text COLLATE "C" NOT NULL,
    terminal_id       text COLLATE "C" NOT NULL,
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
    auth_code         text NOT NULL,
    stand_in_rc       char(2),
    pan_masked        text NOT NULL,
    pan_hmac          bytea NOT NULL CHECK (octet_length(pan_hmac) = 32),
    reason            text NOT NULL,
    owner             text NOT NULL,
    queued_at         timestamptz NOT NULL,
    state             text NOT NULL CHECK (state IN ('acked', 'failed')),
    attempts          integer NOT NULL,
    last_attempt_at   timestamptz,
    last_response_code char(2),
    created_at        timestamptz NOT NULL,
    acked_at          timestamptz,
    archived_at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION switch.archive_advices(p_before date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    WITH moved AS (
        DELETE FROM switch.advice_queue q
         WHERE q.request_date < p_before AND q.state <> 'pending'
        RETURNING q.*)
    INSERT INTO switch.advice_archive (
        advice_id, kind, request_date, acquirer_id, terminal_id, stan, transmission_time, mti,
        mti_class, issuer_id, issuer_stan, issuer_transmission_time, rrn, processing_code,
        amount_minor, currency, billing_amount_minor, conversion_rate, billing_currency,
        auth_code, stand_in_rc, pan_masked, pan_hmac, reason, owner, queued_at, state, attempts,
        last_attempt_at, last_response_code, created_at, acked_at)
    SELECT m.advice_id, m.kind, m.request_date, m.acquirer_id, m.terminal_id, m.stan,
           m.transmission_time, m.mti, m.mti_class, m.issuer_id, m.issuer_stan,
           m.issuer_transmission_time, m.rrn, m.processing_code, m.amount_minor, m.currency,
           m.billing_amount_minor, m.conversion_rate, m.billing_currency, m.auth_code,
           m.stand_in_rc, m.pan_masked, m.pan_hmac, m.reason, m.owner, m.queued_at, m.state,
           m.attempts, m.last_attempt_at, m.last_response_code, m.created_at, m.acked_at
      FROM moved m;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
