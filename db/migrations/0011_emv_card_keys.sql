-- 0011: card authentication keys per BIN route (issue 14, docs/emv.md).
--
-- switchd verifies a chip card's ARQC (payShield KQ) and a card-not-present request's CVV2 (CY)
-- itself, before forwarding, on behalf of the card's issuer: the issuer's master key for
-- application cryptograms (IMK-AC, payShield key type 109) and its CVK pair (402) are held by the
-- switch, under the LMK like every other key, and named by the BIN route whose cards they
-- serve. A route without them declines chip / CVV2 requests (docs/emv.md).

ALTER TABLE switch.keys DROP CONSTRAINT keys_key_type_check;
ALTER TABLE switch.keys ADD CONSTRAINT keys_key_type_check
    CHECK (key_type IN ('ZMK', 'ZPK', 'TPK', 'TAK', 'ZAK', 'BDK', 'PVK', 'CVK', 'MK-AC'));

ALTER TABLE switch.bin_routes
    ADD COLUMN imk_ac_key text REFERENCES switch.keys,  -- EMV IMK-AC (MK-AC): ARQC / ARPC
    ADD COLUMN cvk_key    text REFERENCES switch.keys;  -- CVK pair: CVV2
