-- 0006: write-ahead forwarding (docs/ARCHITECTURE.md, "The money invariant").
--
-- Before switchd forwards a request to an issuer, what is needed to reverse it there is made
-- durable: a row of switch.inflight (the issuer-side identity, the sealed PAN, the amount). The
-- row lives while the request is in flight and goes away in the same transaction that settles it:
--   * the journal row of an answer that needs no reversal (an approval, or a decline the issuer
--     authenticated) deletes it;
--   * the reversal_queue row of a reversal deletes it.
-- A switchd that stops at any instruction leaves rows here; at its next start,
-- switch.recover_inflight() turns each of them into a journal row (outcome 'lost' when there was
-- none) and a reversal, unless the journal already holds its approval — the terminal may have it,
-- and a terminal that did not get it reverses it itself. The insert of the row is also the durable
-- duplicate check: it is refused when the journal already holds a request with the same identity
-- that reached an issuer (a refusal the switch answered itself does not count: nothing moved).

CREATE TABLE switch.inflight (
    -- the request's identity, as in switch.authorizations
    request_date      date NOT NULL,
    acquirer_id       text COLLATE "C" NOT NULL,
    terminal_id       text COLLATE "C" NOT NULL,
    stan              char(6) COLLATE "C" NOT NULL,
    transmission_time char(10) COLLATE "C" NOT NULL,
    mti_class         char(3) COLLATE "C" NOT NULL,
    mti               char(4) NOT NULL,
    owner             text NOT NULL,               -- the switchd instance (instance_id) forwarding it
    -- what the issuer saw, and what its reversal needs
    issuer_id         text NOT NULL,
    issuer_stan       char(6) NOT NULL,
    issuer_transmission_time char(10) NOT NULL,
    rrn               text,
    processing_code   char(6) NOT NULL,
    amount_minor      bigint NOT NULL CHECK (amount_minor >= 0),
    currency          smallint NOT NULL CHECK (currency BETWEEN 0 AND 999),
    pan_masked        text NOT NULL,
    pan_hmac          bytea NOT NULL,
    pan_sealed        bytea NOT NULL,              -- db_pan_seal: AES-256-GCM, key never stored here
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class)
);
-- A queue-shaped table: every row is deleted within seconds of its insert. Vacuum it often so
-- that it stays a few pages long.
ALTER TABLE switch.inflight SET (autovacuum_vacuum_scale_factor = 0,
                                 autovacuum_vacuum_threshold = 5000,
                                 autovacuum_vacuum_cost_delay = 0);

-- A request forwarded and never answered because switchd stopped: recovered at the next start.
ALTER TABLE switch.authorizations DROP CONSTRAINT authorizations_outcome_check;
ALTER TABLE switch.authorizations ADD CONSTRAINT authorizations_outcome_check
    CHECK (outcome IN ('approved', 'declined', 'rejected', 'timeout', 'unavailable', 'error',
                       'lost'));

-- One reversal per request identity, whatever the MTI of the request (0200 or its repeat 0201).
ALTER TABLE switch.reversal_queue
    ADD COLUMN mti_class char(3) GENERATED ALWAYS AS (substr(mti, 1, 3)) STORED;
DO $$
DECLARE
    c text;
BEGIN
    FOR c IN SELECT conname FROM pg_constraint
              WHERE conrelid = 'switch.reversal_queue'::regclass AND contype = 'u' LOOP
        EXECUTE format('ALTER TABLE switch.reversal_queue DROP CONSTRAINT %I', c);
    END LOOP;
END
$$;
ALTER TABLE switch.reversal_queue ADD CONSTRAINT reversal_queue_identity
    UNIQUE (request_date, acquirer_id, terminal_id, stan, transmission_time, mti_class);
ALTER TABLE switch.reversal_queue DROP CONSTRAINT reversal_queue_reason_check;
ALTER TABLE switch.reversal_queue ADD CONSTRAINT reversal_queue_reason_check
    CHECK (reason IN ('timeout', 'late_response', 'terminal', 'error', 'recovery'));
-- Never read (switchd keeps due times in memory), and it made every acknowledgement a non-HOT
-- update because state is in its predicate.
DROP INDEX switch.reversal_queue_due;

-- Settles the in-flight rows a stopped switchd instance left behind. Run by switchd at start
-- (before it accepts terminals, after its journal spool is replayed) for its own instance_id,
-- or by an operator for an instance that will not come back. Returns how many reversals were
-- queued and how many rows needed none (their approval is journaled).
CREATE FUNCTION switch.recover_inflight(p_owner text)
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
                    outcome, created_at)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, rrn,
               issuer_id, issuer_stan, issuer_transmission_time, processing_code, amount_minor,
               currency, '96', pan_masked, pan_hmac, 'lost', created_at
          FROM seen WHERE j_outcome IS NULL
        ON CONFLICT DO NOTHING
        RETURNING 1
    ), queued AS (
        INSERT INTO switch.reversal_queue (request_date, acquirer_id, terminal_id, stan,
                    transmission_time, mti, issuer_id, issuer_stan, issuer_transmission_time, rrn,
                    processing_code, amount_minor, currency, auth_code, pan_masked, pan_hmac,
                    pan_sealed, reason)
        SELECT request_date, acquirer_id, terminal_id, stan, transmission_time, mti, issuer_id,
               issuer_stan, issuer_transmission_time, rrn, processing_code, amount_minor,
               currency, j_auth, pan_masked, pan_hmac, pan_sealed, 'recovery'
          FROM seen WHERE j_outcome IS DISTINCT FROM 'approved'
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    -- (journaled runs although nothing reads it: data-modifying WITH parts always do.)
    SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM orphan) - (SELECT count(*) FROM queued)
$$;
