-- 0015: keys that change without downtime (issue 16, docs/keys.md).
--
-- Working keys (an issuer's ZPK/ZAK, a terminal's TPK/TAK) are replaced over the network,
-- wrapped under a key-encrypting key: the issuer's ZMK (0800, DE 70 = 161) or the terminal's TMK
-- (terminal key download, DE 70 = 162). Every generation stays in switch.keys with its validity:
-- valid_from when it took over, valid_to when the next one did plus the grace window in which
-- messages still in flight under it are accepted (NULL = current). The issuer / terminal row
-- names the current generation; the older ones are 'retired' and kept for the audit.
-- A rotation asked for by an operator (`atlas-keys rotate`) is a row of key_change_requests,
-- claimed and answered by a running switchd (docs/keys.md, "Reaching switchd").

ALTER TABLE switch.keys DROP CONSTRAINT keys_key_type_check;
ALTER TABLE switch.keys ADD CONSTRAINT keys_key_type_check
    CHECK (key_type IN ('ZMK', 'TMK', 'ZPK', 'TPK', 'TAK', 'ZAK', 'BDK', 'PVK', 'CVK', 'MK-AC'));

ALTER TABLE switch.keys
    ADD COLUMN valid_from timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN valid_to   timestamptz,
    ADD COLUMN owner      text;   -- the issuer or 'acquirer/terminal' a generation belongs to

ALTER TABLE switch.issuers  ADD COLUMN zmk_key_id text REFERENCES switch.keys;  -- wraps its ZPK/ZAK
ALTER TABLE switch.terminals ADD COLUMN tmk_key_id text REFERENCES switch.keys; -- wraps its TPK/TAK

CREATE TABLE switch.key_change_requests (
    request_id   bigserial PRIMARY KEY,
    issuer_id    text NOT NULL REFERENCES switch.issuers,
    requested_at timestamptz NOT NULL DEFAULT now(),
    requested_by text NOT NULL DEFAULT current_user,
    -- requested → claimed (a switchd took it) → done | failed
    status       text NOT NULL DEFAULT 'requested'
                 CHECK (status IN ('requested', 'claimed', 'done', 'failed')),
    claimed_at   timestamptz,
    finished_at  timestamptz,
    result       text          -- KCVs of the new keys, or why it failed (never a key)
);
CREATE INDEX key_change_requests_open ON switch.key_change_requests (requested_at)
    WHERE status IN ('requested', 'claimed');
