-- 0016: many switchd instances on one database (issue 15; docs/switchd.md "Instances").
--
-- Instances share the reversal queue and the advice queue through PostgreSQL only. Each row (a
-- reversal) or each issuer's advices are *claimed* by exactly one live instance at a time:
--
--   * switch.instances holds one lease per instance: lease_until, renewed every lease / 3 by
--     the instance while it lives (switch.claim_reversals and switch.claim_advice_issuers renew
--     it). An instance is live while now() < lease_until.
--   * switch.reversal_queue.claimed_by names the instance that sends a reversal. The journal
--     writer inserts a row claimed by the instance that decided it; rows inserted by SQL
--     (recover_inflight, the transfer recovery, an operator) are unclaimed. A pending row whose
--     claimant is not live (or that has none) is taken by the next instance that claims (FOR
--     UPDATE SKIP LOCKED: two instances claiming at once take disjoint rows).
--   * switch.advice_leases gives each issuer's advices to one live instance: per-issuer order
--     across instances is the order the one holder sends them in (queued_at).
--
-- Why one lease per instance rather than a lease_until per row: renewal is one UPDATE of one
-- row per period whatever the backlog, and the rows themselves change only when their claimant
-- changes. A row "lease" is the pair (claimed_by, that instance's lease_until).

CREATE TABLE switch.instances (
    instance_id  text COLLATE "C" PRIMARY KEY,
    lease_until  timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    renewed_at   timestamptz NOT NULL DEFAULT now(),
    -- when a live instance first saw this lease expired (NULL while it is renewed): the takeover
    -- of its requests in flight and its stand-in advices counts from here, not from lease_until,
    -- so that time PostgreSQL itself was unreachable (when no one could renew) does not count
    expired_seen_at timestamptz,
    -- when a live instance settled its requests in flight and advices on its behalf (NULL again
    -- once it renews: it is back)
    settled_at   timestamptz
);

ALTER TABLE switch.reversal_queue ADD COLUMN claimed_by text COLLATE "C";
-- The claim scan reads pending rows only. The index puts state in a predicate, so an
-- acknowledgement is not a HOT update (0006 dropped reversal_queue_due for that reason on a
-- single instance); reversals are rare next to authorizations, and without it every claim
-- period would scan the whole queue's history.
CREATE INDEX reversal_queue_claimable ON switch.reversal_queue (reversal_id)
    WHERE state = 'pending';

CREATE TABLE switch.advice_leases (
    issuer_id   text COLLATE "C" PRIMARY KEY,
    claimed_by  text COLLATE "C" NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);

-- Renews p_owner's lease for p_lease_ms and returns the pending reversals it takes: those no
-- live instance holds (unclaimed, or their claimant's lease expired), at most p_limit, oldest
-- first; with p_all also the pending rows already claimed by p_owner (its first claim after a
-- start: a previous run of the same instance_id claimed them).
CREATE FUNCTION switch.claim_reversals(p_owner text, p_lease_ms bigint, p_takeover_ms bigint,
                                       p_all boolean, p_limit integer)
RETURNS SETOF switch.reversal_queue
LANGUAGE plpgsql AS $$
DECLARE
    dead text;
BEGIN
    INSERT INTO switch.instances (instance_id, lease_until)
    VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (instance_id) DO UPDATE
        SET lease_until = EXCLUDED.lease_until, renewed_at = now(), expired_seen_at = NULL,
            settled_at = NULL;
    -- A dead instance's requests in flight (its switch.inflight rows) are settled here as it
    -- would settle them at its own restart (recover_inflight: a reversal queued for each one not
    -- journaled as approved, claimed just below), and so are its stand-in advices whose approval
    -- the journal does not have (recover_advices: an advice reversal queued behind each), once
    -- its lease has been seen expired for p_takeover_ms (takeover_inflight_ms, 5 minutes by
    -- default): a terminal that reconnected to another instance gets its reversal of the lost
    -- request answered without waiting for the dead one to come back. Not sooner, because the one
    -- thing a live instance cannot see is the other's spool: an instance cut from PostgreSQL (or
    -- killed during an outage and not yet restarted) may hold, spooled only, the journal row of an
    -- approval it delivered — settling that request would reverse an approval the terminal holds.
    -- An instance restarted by systemd replays its spool and settles its own rows first, long
    -- before this fires. The delay counts from when a live instance first saw the lease expired
    -- (expired_seen_at), not from lease_until: after an outage of PostgreSQL itself every lease
    -- looks expired, and every instance needs time to replay its spool and renew
    -- (docs/switchd.md "Instances", docs/RELIABILITY.md).
    UPDATE switch.instances SET expired_seen_at = now()
     WHERE instance_id <> p_owner AND lease_until < now() AND expired_seen_at IS NULL;
    FOR dead IN SELECT i.instance_id FROM switch.instances i
                 WHERE i.instance_id <> p_owner AND i.lease_until < now()
                   AND i.expired_seen_at < now() - p_takeover_ms * interval '1 millisecond'
                   AND i.settled_at IS NULL
                   FOR UPDATE OF i SKIP LOCKED
    LOOP
        PERFORM * FROM switch.recover_inflight(dead);
        PERFORM switch.recover_advices(dead);
        UPDATE switch.instances SET settled_at = now() WHERE instance_id = dead;
    END LOOP;
    IF p_all THEN
        RETURN QUERY SELECT q.* FROM switch.reversal_queue q
                      WHERE q.state = 'pending' AND q.claimed_by = p_owner
                      ORDER BY q.reversal_id;
    END IF;
    RETURN QUERY
    WITH free AS (
        SELECT q.reversal_id FROM switch.reversal_queue q
          LEFT JOIN switch.instances i ON i.instance_id = q.claimed_by
         WHERE q.state = 'pending' AND q.claimed_by IS DISTINCT FROM p_owner
           AND (i.lease_until IS NULL OR i.lease_until < now())
         ORDER BY q.reversal_id
         LIMIT p_limit
           FOR UPDATE OF q SKIP LOCKED
    )
    UPDATE switch.reversal_queue q SET claimed_by = p_owner
      FROM free WHERE q.reversal_id = free.reversal_id
    RETURNING q.*;
END
$$;

-- Renews p_owner's lease and returns the issuers whose advices it may send: those it held, and
-- those that no live instance holds (taken now, SKIP LOCKED) among its own issuer links
-- (p_issuers; an instance without a link to an issuer never takes its advices, it could not send
-- them).
CREATE FUNCTION switch.claim_advice_issuers(p_owner text, p_lease_ms bigint, p_issuers text[])
RETURNS SETOF text
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO switch.instances (instance_id, lease_until)
    VALUES (p_owner, now() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (instance_id) DO UPDATE
        SET lease_until = EXCLUDED.lease_until, renewed_at = now(), expired_seen_at = NULL,
            settled_at = NULL;
    INSERT INTO switch.advice_leases (issuer_id, claimed_by)
    SELECT DISTINCT i, p_owner FROM unnest(p_issuers) AS u(i)
    ON CONFLICT (issuer_id) DO NOTHING;
    RETURN QUERY
    WITH free AS (
        SELECT l.issuer_id FROM switch.advice_leases l
          LEFT JOIN switch.instances i ON i.instance_id = l.claimed_by
         WHERE l.claimed_by <> p_owner AND (i.lease_until IS NULL OR i.lease_until < now())
           AND l.issuer_id = ANY (p_issuers)
           FOR UPDATE OF l SKIP LOCKED
    ), taken AS (
        UPDATE switch.advice_leases l SET claimed_by = p_owner, claimed_at = now()
          FROM free WHERE l.issuer_id = free.issuer_id
        RETURNING l.issuer_id
    )
    SELECT issuer_id FROM taken
    UNION
    SELECT issuer_id FROM switch.advice_leases
     WHERE claimed_by = p_owner AND issuer_id = ANY (p_issuers);
END
$$;

-- An instance that stops cleanly gives its claims up at once (the others take them at their
-- next claim instead of after the lease).
CREATE FUNCTION switch.release_instance(p_owner text)
RETURNS void
LANGUAGE sql AS $$
    -- Its queue rows move at the others' next claim (lease_until < now()); its requests in
    -- flight only after takeover_inflight_ms, like a dead instance's: a drain can end with
    -- records still in its spool.
    UPDATE switch.instances SET lease_until = now(), expired_seen_at = now()
     WHERE instance_id = p_owner;
$$;

-- Reference data changed: every switchd LISTENing on atlas_refdata reloads it (as on SIGHUP).
CREATE FUNCTION switch.notify_refdata() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atlas_refdata', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['issuers', 'bin_routes', 'acquirers', 'terminals', 'keys',
                             'fx_rates', 'stand_in_rules'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE'
                       ' ON switch.%I FOR EACH STATEMENT EXECUTE FUNCTION switch.notify_refdata()',
                       t || '_notify_refdata', t);
    END LOOP;
END
$$;

-- recover_inflight (0006, 0009) again: a stand-in approval journaled under the request's identity
-- (after its forwarded copy timed out) does not settle that forwarded copy. The issuer may have
-- applied it, and the stand-in reaches the issuer as an advice of its own, so the forwarded copy
-- is reversed (its inflight row names the STAN it was forwarded under), as the live timeout path
-- does; found in review: a kill -9 between the stand-in's ANSWER commit and the timeout reversal's
-- left the forwarded request applied.
CREATE OR REPLACE FUNCTION switch.recover_inflight(p_owner text)
RETURNS TABLE (reversed bigint, settled bigint)
LANGUAGE sql AS $$
    WITH orphan AS (
        DELETE FROM switch.inflight f WHERE f.owner = p_owner RETURNING f.*
    ), seen AS (
        SELECT o.*, a.outcome AS j_outcome, a.auth_code AS j_auth,
               coalesce(a.stand_in, false) AS j_stand_in
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
               currency, CASE WHEN j_stand_in THEN NULL ELSE j_auth END, pan_masked, pan_hmac,
               pan_sealed, 'recovery', billing_amount_minor, conversion_rate, billing_currency
          FROM seen WHERE j_outcome IS DISTINCT FROM 'approved' OR j_stand_in
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    -- (journaled runs although nothing reads it: data-modifying WITH parts always do.)
    SELECT (SELECT count(*) FROM queued), (SELECT count(*) FROM orphan) - (SELECT count(*) FROM queued)
$$;
