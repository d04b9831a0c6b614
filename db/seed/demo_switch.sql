-- Demo reference data for switchd (README "The demo world"): four wallet issuers, one per
-- country group, each routed its own BIN; one acquirer and four terminals. Keys are the documented
-- LAB keys, written here only encrypted under the Thales test LMK (hsmtool key --type T --clear K)
-- with their KCVs; run.sh and the tests start each issuer-sim with its issuer's ZPK and ZAK read
-- from these rows (a zone key is shared by both ends of the link). Idempotent.

INSERT INTO switch.keys (key_id, key_type, scheme, key_under_lmk, kcv) VALUES
    ('WALLET1.ZPK',   'ZPK', 'TDES-2KEY', 'U9D961F6AF1D24B38AB37B320022FF57D', '77800C'),
    ('WALLET1.ZAK',   'ZAK', 'TDES-2KEY', 'U828E5DD415D1228FCC2D07D9D794942F', '30825B'),
    ('WALLET2.ZPK',   'ZPK', 'TDES-2KEY', 'U3840C48244C93E87683428C6561E153D', '40826A'),
    ('WALLET2.ZAK',   'ZAK', 'TDES-2KEY', 'UABB3C520661176F218910934DB64224B', 'CDACE9'),
    ('WALLET3.ZPK',   'ZPK', 'TDES-2KEY', 'UBEFF7C265CD0A5A0B29838A15FA60160', 'ADC67D'),
    ('WALLET3.ZAK',   'ZAK', 'TDES-2KEY', 'U9A9AA827A8C1D94BADD649BDA6061AAC', 'E878DD'),
    ('WALLET4.ZPK',   'ZPK', 'TDES-2KEY', 'UD46D514CB29E20648EECE42B11702289', 'D2DB51'),
    ('WALLET4.ZAK',   'ZAK', 'TDES-2KEY', 'UA6092B7AC1A0F08B9631A260F0FD005A', '070EDB'),
    ('TERM0001.TPK',  'TPK', 'TDES-2KEY', 'U610850E0A6E572AEB21830C67D9FCAF9', '45303C'),
    ('TERM0001.TAK',  'TAK', 'TDES-2KEY', 'U069486B014C17A557263DD5DB7F8A418', 'F5DDDA'),
    ('TERM0002.BDK',  'BDK', 'TDES-2KEY', 'U8E3D3E2FD5919657F05A1AA90D32A014', '08D7B4'),
    ('TERM0002.TAK',  'TAK', 'TDES-2KEY', 'U6B08E2FE3B226CD18FF7E54E1CE84340', 'CD7969'),
    ('TERM0003.BDK',  'BDK', 'AES-128',   'A659483D9621F3C58E85B059547BE1E3A', 'ED6429'),
    ('TERM0003.TAK',  'TAK', 'TDES-2KEY', 'U1AB0EA0E98462BE88285552D50B335DD', '69B752'),
    ('TERM0004.TPK',  'TPK', 'TDES-2KEY', 'U62F4DA09BF791097D5AD85E4EB54BAC5', 'F8E1CF'),
    ('TERM0004.TAK',  'TAK', 'TDES-2KEY', 'U41B7B36A7E391345990DFDB00A88CA69', '54E04A'),
    -- card authentication on the issuers' behalf (docs/emv.md): IMK-AC and CVK per issuer
    ('WALLET1.IMKAC','MK-AC', 'TDES-2KEY', 'UCECC0F253370EFF585EC44A12579F460', '11843A'),
    ('WALLET1.CVK',  'CVK',   'TDES-2KEY', 'U2767A76D80DE24E6D3A44C5E02FBCD2B', 'EE597E'),
    ('WALLET2.IMKAC','MK-AC', 'TDES-2KEY', 'U736F66270874ADFB18582419D5D466AB', '2FF38A'),
    ('WALLET2.CVK',  'CVK',   'TDES-2KEY', 'UAC74E7F3B6A9C9AEF329D225E87E8C0D', '189A0A'),
    ('WALLET3.IMKAC','MK-AC', 'TDES-2KEY', 'UC8B193C5B253AF7255F4EF66CEFC8FC0', '8D397D'),
    ('WALLET3.CVK',  'CVK',   'TDES-2KEY', 'U91958BC7E54081E761AEBB2E26D786F4', 'A0D632'),
    ('WALLET4.IMKAC','MK-AC', 'TDES-2KEY', 'U0CAE65724EF4438F2E81F60DFF685CED', 'B1D113'),
    ('WALLET4.CVK',  'CVK',   'TDES-2KEY', 'UA93009BF3531AD544736AA2A5D11C75B', '676113'),
    -- zone master keys: wrap the new ZPK/ZAK of a key change (docs/keys.md); random lab keys,
    -- shared with each issuer-sim (--zmk) through the same lab LMK
    ('WALLET1.ZMK',   'ZMK', 'TDES-2KEY', 'UCE385FA1F081065353418ED6B4BFB4AD', 'D0DBCF'),
    ('WALLET2.ZMK',   'ZMK', 'TDES-2KEY', 'U9B06406022878FD5F89EAA9E05905919', '2A6AF9'),
    ('WALLET3.ZMK',   'ZMK', 'TDES-2KEY', 'U3FDD986FE24A9520EDF8D9803BE7D45C', '436BA5'),
    ('WALLET4.ZMK',   'ZMK', 'TDES-2KEY', 'U03D836D28D9BFDE931ADEDD918A19C94', 'F17BA0'),
    -- terminal master keys: wrap a terminal's new TPK/TAK of a key download (docs/keys.md); the
    -- documented lab values acquirer-sim holds in clear (sim/acquirer/terminal.c)
    ('TERM0001.TMK',  'TMK', 'TDES-2KEY', 'U665CDCEACB144A55D6196D51C02ED4C3', '500E8E'),
    ('TERM0002.TMK',  'TMK', 'TDES-2KEY', 'U61A5253DC371F0EE5E845051F1B4C200', 'D59D65'),
    ('TERM0003.TMK',  'TMK', 'TDES-2KEY', 'UE86E931DEE4AF0D5577CC33D3F2DE274', 'CF82A4'),
    ('TERM0004.TMK',  'TMK', 'TDES-2KEY', 'U90739926C862B27B998243D26AB335DF', '3D74CD')
ON CONFLICT (key_id) DO UPDATE
    SET key_type = EXCLUDED.key_type, scheme = EXCLUDED.scheme,
        key_under_lmk = EXCLUDED.key_under_lmk, kcv = EXCLUDED.kcv, status = 'active',
        valid_to = NULL;  -- in force again after key changes (docs/keys.md)

INSERT INTO switch.issuers (issuer_id, name, link, zpk_key_id, zak_key_id) VALUES
    ('WALLET1', 'Morocco wallets, MAD (issuer-sim)',                 'WALLET1', 'WALLET1.ZPK', 'WALLET1.ZAK'),
    ('WALLET2', 'West Africa (UEMOA) wallets, XOF (issuer-sim)',     'WALLET2', 'WALLET2.ZPK', 'WALLET2.ZAK'),
    ('WALLET3', 'Central Africa (CEMAC) wallets, XAF (issuer-sim)',  'WALLET3', 'WALLET3.ZPK', 'WALLET3.ZAK'),
    ('WALLET4', 'Mauritania wallets, MRU (issuer-sim)',              'WALLET4', 'WALLET4.ZPK', 'WALLET4.ZAK')
ON CONFLICT (issuer_id) DO UPDATE
    SET name = EXCLUDED.name, link = EXCLUDED.link, zpk_key_id = EXCLUDED.zpk_key_id,
        zak_key_id = EXCLUDED.zak_key_id, enabled = true;
UPDATE switch.issuers SET zmk_key_id = issuer_id || '.ZMK'
 WHERE issuer_id IN ('WALLET1', 'WALLET2', 'WALLET3', 'WALLET4');

INSERT INTO switch.bin_routes (prefix, issuer_id) VALUES
    ('489001', 'WALLET1'), ('489002', 'WALLET2'), ('489003', 'WALLET3'), ('489004', 'WALLET4')
ON CONFLICT (prefix) DO UPDATE SET issuer_id = EXCLUDED.issuer_id, enabled = true;
-- The currency each route's cards are billed in (the wallets' currency): a request in another
-- DE 49 is converted at switch.fx_rates (docs/fx.md). NULL would mean "billed in DE 49".
UPDATE switch.bin_routes r SET billing_currency = v.currency
  FROM (VALUES ('489001', 504), ('489002', 952), ('489003', 950), ('489004', 929))
       AS v(prefix, currency)
 WHERE r.prefix = v.prefix;
-- The keys switchd authenticates each route's cards with: chip ARQC/ARPC (IMK-AC) and CVV2 (CVK).
UPDATE switch.bin_routes r SET imk_ac_key = r.issuer_id || '.IMKAC', cvk_key = r.issuer_id || '.CVK'
 WHERE r.prefix IN ('489001', '489002', '489003', '489004');

-- Transfer corridors (docs/transfers.md): sender's currency -> recipient's, the fee in the
-- sender's currency (fixed minor units + basis points of the amount) and the most one transfer
-- may move. Illustrative tariffs; every ordered pair of the four currencies is served.
INSERT INTO switch.transfer_corridors (from_currency, to_currency, fee_fixed_minor, fee_bp,
                                       max_amount_minor) VALUES
    (504, 504,  200,   0,   500000),  -- MAD -> MAD: 2.00 MAD, at most 5,000.00
    (952, 952,  100,   0,   500000),  -- XOF -> XOF: 100 XOF, at most 500,000
    (950, 950,  100,   0,   500000),  -- XAF -> XAF: 100 XAF, at most 500,000
    (929, 929, 1000,   0,  5000000),  -- MRU -> MRU: 10.00 MRU, at most 50,000.00
    (504, 952,  500, 100,   200000),  -- MAD -> XOF: 5.00 MAD + 1 %, at most 2,000.00
    (952, 504,  300, 100,   300000),  -- XOF -> MAD: 300 XOF + 1 %, at most 300,000
    (952, 950,  200,  50,   500000),  -- XOF -> XAF: 200 XOF + 0.5 %, at most 500,000
    (950, 952,  200,  50,   500000),  -- XAF -> XOF: 200 XAF + 0.5 %, at most 500,000
    (504, 929,  500, 100,   200000),  -- MAD -> MRU: 5.00 MAD + 1 %, at most 2,000.00
    (929, 504, 2000, 100,  2000000),  -- MRU -> MAD: 20.00 MRU + 1 %, at most 20,000.00
    (504, 950,  500, 100,   200000),  -- MAD -> XAF: 5.00 MAD + 1 %, at most 2,000.00
    (950, 504,  300, 100,   300000),  -- XAF -> MAD: 300 XAF + 1 %, at most 300,000
    (952, 929,  300, 100,   300000),  -- XOF -> MRU: 300 XOF + 1 %, at most 300,000
    (950, 929,  300, 100,   300000),  -- XAF -> MRU: 300 XAF + 1 %, at most 300,000
    (929, 952, 2000, 100,  2000000),  -- MRU -> XOF: 20.00 MRU + 1 %, at most 20,000.00
    (929, 950, 2000, 100,  2000000)   -- MRU -> XAF: 20.00 MRU + 1 %, at most 20,000.00
ON CONFLICT (from_currency, to_currency) DO UPDATE
    SET fee_fixed_minor = EXCLUDED.fee_fixed_minor, fee_bp = EXCLUDED.fee_bp,
        max_amount_minor = EXCLUDED.max_amount_minor, enabled = true;

INSERT INTO switch.acquirers (acquirer_id, name) VALUES ('100001', 'Demo acquirer')
ON CONFLICT (acquirer_id) DO UPDATE SET name = EXCLUDED.name, enabled = true;

INSERT INTO switch.terminals (acquirer_id, terminal_id, merchant_id, key_scheme, tpk_key_id,
                              tak_key_id, bdk_key_id) VALUES
    ('100001', 'TERM0001', 'MERCHANT0000001', 'TPK',        'TERM0001.TPK', 'TERM0001.TAK', NULL),
    ('100001', 'TERM0002', 'MERCHANT0000001', 'DUKPT-TDES', NULL, 'TERM0002.TAK', 'TERM0002.BDK'),
    ('100001', 'TERM0003', 'MERCHANT0000002', 'DUKPT-AES',  NULL, 'TERM0003.TAK', 'TERM0003.BDK'),
    ('100001', 'TERM0004', 'MERCHANT0000003', 'TPK',        'TERM0004.TPK', 'TERM0004.TAK', NULL)
ON CONFLICT (acquirer_id, terminal_id) DO UPDATE
    SET merchant_id = EXCLUDED.merchant_id, key_scheme = EXCLUDED.key_scheme,
        tpk_key_id = EXCLUDED.tpk_key_id, tak_key_id = EXCLUDED.tak_key_id,
        bdk_key_id = EXCLUDED.bdk_key_id, enabled = true;
UPDATE switch.terminals SET tmk_key_id = terminal_id || '.TMK'
 WHERE acquirer_id = '100001' AND terminal_id IN ('TERM0001', 'TERM0002', 'TERM0003', 'TERM0004');
