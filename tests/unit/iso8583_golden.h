/* Golden ISO 8583 messages shared by the codec unit test and the isodump round-trip test.
 * Every frame is written by hand from the dialect definitions, element by element, in a small
 * notation: hex bytes, with 'quoted' runs meaning their ASCII bytes (spaces are ignored outside
 * quotes). The values each frame carries are listed beside it (b fields as hex). */
#ifndef ATLAS_TEST_ISO8583_GOLDEN_H
#define ATLAS_TEST_ISO8583_GOLDEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct golden_field {
    int f;
    const char *v; /* canonical text; for b fields upper-case hex */
};

struct golden {
    const char *name;
    const char *dialect; /* built-in name, or NULL for the spec text below */
    const char *spec;
    const char *mti;
    unsigned flags; /* ISO_MSG_* the message carries */
    struct golden_field fields[24];
    const char *wire; /* hand-written frame in the notation above */
};

/* DE 55 used in the 0200s: 9F26 (AC, 8 bytes), 9F27 (CID), 9F36 (ATC), 95 (TVR) = 27 bytes. */
#define G_DE55                                                                                     \
    "9F26080102030405060708"                                                                       \
    "9F270180"                                                                                     \
    "9F36020001"                                                                                   \
    "95058000048000"

/* The values of the typical 0200 in the ascii87/ascii87b/bcd87 goldens. */
#define G_0200_FIELDS                                                                              \
    {                                                                                              \
        { 2, "4761739001010010" }, { 3, "000000" }, { 4, "000000001000" }, { 7, "1126151230" },    \
            { 11, "000123" }, { 12, "151230" }, { 13, "1126" }, { 14, "2512" }, { 22, "051" },     \
            { 23, "001" }, { 25, "00" }, { 35, "4761739001010010=2512201123456789" },              \
            { 37, "123456789012" }, { 41, "TERM0001" }, { 42, "MERCHANT0000001" },                 \
            { 43, "ATLAS TEST SHOP       NAIROBI         KE" }, { 49, "404" },                     \
            { 52, "1122334455667788" }, { 55, G_DE55 },                                            \
        {                                                                                          \
            0, NULL                                                                                \
        }                                                                                          \
    }

/* Bitmap of that 0200: DE 2,3,4,7 = 0x72 | 11,12,13,14 = 0x3C | 22,23 = 0x06 | 25 = 0x80 |
 * 35,37 = 0x28 | 41,42,43 = 0xE0 | 49,52,55 = 0x92 | none = 0x00. */

/* Tertiary-bitmap dialect used below: ascii87 plus fields 130 and 192. */
#define G_TERTIARY_SPEC                                                                            \
    "name tert87\nbase ascii87\ntertiary yes\nfield 130 ans LLL999\nfield 192 b 8 mask=all\n"

/* Every length kind and encoding in one dialect. */
#define G_KITCHEN_SPEC                                                                             \
    "name kitchen\n"                                                                               \
    "mti ascii\nbitmap binary\nlengths ascii\nnumeric ascii\ntext ascii\nbinary binary\n"          \
    "field 2 n LL19 lenc=bcd enc=bcd pad=rightf mask=pan\n"                                        \
    "field 3 n 5 enc=bcd pad=left0\n"                                                              \
    "field 4 n 5 enc=bcd pad=rightf\n"                                                             \
    "field 5 ans LLLL9999\n"                                                                       \
    "field 6 ans LLL999 lenc=binary\n"                                                             \
    "field 7 ans LL99 lenc=ebcdic enc=ebcdic\n"                                                    \
    "field 8 b LLLL9999 lenc=bcd\n"                                                                \
    "field 9 z LL37 enc=bcd pad=rightf mask=track2\n"                                              \
    "field 10 x+n 9 enc=bcd\n"                                                                     \
    "field 11 b LL255 lenc=binary enc=hex\n"                                                       \
    "field 12 ans LLLL9999 lenc=binary\n"                                                          \
    "field 13 ans LLLL9999 lenc=ebcdic\n"

static const struct golden goldens[] = {
    { "ascii87 0200 typical purchase with DE 55", "ascii87", NULL, "0200", 0, G_0200_FIELDS,
      "'0200'"                                      /* MTI */
      "'723C068028E09200'"                          /* primary bitmap as 16 hex characters */
      "'16' '4761739001010010'"                     /* DE 2 LLVAR n */
      "'000000'"                                    /* DE 3 */
      "'000000001000'"                              /* DE 4 */
      "'1126151230'"                                /* DE 7 MMDDhhmmss */
      "'000123' '151230' '1126' '2512'"             /* DE 11, 12, 13, 14 */
      "'051' '001' '00'"                            /* DE 22, 23, 25 */
      "'33' '4761739001010010=2512201123456789'"    /* DE 35 LLVAR z */
      "'123456789012' 'TERM0001' 'MERCHANT0000001'" /* DE 37, 41, 42 */
      "'ATLAS TEST SHOP       NAIROBI         KE'"  /* DE 43 ans 40 */
      "'404'"                                       /* DE 49 */
      "'1122334455667788'"                          /* DE 52 b 8 as 16 hex characters */
      "'027' '9F260801020304050607089F2701809F3602000195058000048000'" },
    { "ascii87b 0200 binary bitmap and b fields", "ascii87b", NULL, "0200", 0, G_0200_FIELDS,
      "'0200' 723C068028E09200"
      "'16' '4761739001010010' '000000' '000000001000' '1126151230'"
      "'000123' '151230' '1126' '2512' '051' '001' '00'"
      "'33' '4761739001010010=2512201123456789'"
      "'123456789012' 'TERM0001' 'MERCHANT0000001'"
      "'ATLAS TEST SHOP       NAIROBI         KE' '404'"
      "1122334455667788" /* DE 52 raw */
      "'027' 9F26080102030405060708 9F270180 9F36020001 95058000048000" /* DE 55 raw */ },
    { "bcd87 0200 BCD numerics and lengths", "bcd87", NULL, "0200", 0, G_0200_FIELDS,
      "0200"                                  /* MTI, 2 BCD bytes */
      "723C068028E09200"                      /* binary bitmap */
      "16 4761739001010010"                   /* DE 2: BCD LL 0x16, 8 bytes */
      "000000 000000001000 1126151230"        /* DE 3, 4, 7 */
      "000123 151230 1126 2512"               /* DE 11, 12, 13, 14 */
      "0051 0001 00"                          /* DE 22, 23 odd: left pad nibble 0; DE 25 */
      "33 4761739001010010D25122011234567890" /* DE 35: 33 chars, '=' as nibble D, right pad 0 */
      "'123456789012' 'TERM0001' 'MERCHANT0000001'"
      "'ATLAS TEST SHOP       NAIROBI         KE' '404'"
      "1122334455667788" /* DE 52 */
      "0027 9F26080102030405060708 9F270180 9F36020001 95058000048000" /* DE 55 BCD LLL */ },
    { "ebcdic87 0200 cp037 text",
      "ebcdic87",
      NULL,
      "0200",
      0,
      { { 2, "4761739001010010" },
        { 3, "000000" },
        { 4, "000000001000" },
        { 11, "000123" },
        { 35, "4761739001010010=2512201123456789" },
        { 41, "TERM0001" },
        { 49, "404" },
        { 52, "1122334455667788" },
        { 55, G_DE55 },
        { 0, NULL } },
      "F0F2F0F0"                              /* MTI in EBCDIC */
      "7020000020809200"                      /* DE 2,3,4 | 11 | - | - | 35 | 41 | 49,52,55 */
      "F1F6 F4F7F6F1F7F3F9F0F0F1F0F1F0F0F1F0" /* DE 2 */
      "F0F0F0F0F0F0"                          /* DE 3 */
      "F0F0F0F0F0F0F0F0F1F0F0F0"              /* DE 4 */
      "F0F0F0F1F2F3"                          /* DE 11 */
      "F3F3 F4F7F6F1F7F3F9F0F0F1F0F1F0F0F1F0 7E F2F5F1F2F2F0F1F1F2F3F4F5F6F7F8F9" /* DE 35 */
      "E3C5D9D4F0F0F0F1" /* DE 41 "TERM0001" */
      "F4F0F4"           /* DE 49 */
      "1122334455667788" /* DE 52 raw */
      "F0F2F7 9F26080102030405060708 9F270180 9F36020001 95058000048000" /* DE 55 */ },
    { "ebcdic87 0800 echo with secondary bitmap",
      "ebcdic87",
      NULL,
      "0800",
      ISO_MSG_SECONDARY,
      { { 7, "1126151230" }, { 11, "000123" }, { 41, "TERM0001" }, { 70, "301" }, { 0, NULL } },
      "F0F8F0F0"
      "8220000000800000" /* bit 1 (secondary), 7, 11, 41 */
      "0400000000000000" /* bit 70 */
      "F1F1F2F6F1F5F1F2F3F0 F0F0F0F1F2F3 E3C5D9D4F0F0F0F1 F3F0F1" },
    { "ascii87 0800 echo (jPOS/Wireshark style)",
      "ascii87",
      NULL,
      "0800",
      ISO_MSG_SECONDARY,
      { { 7, "1126151230" }, { 11, "000123" }, { 70, "301" }, { 0, NULL } },
      "'0800' '8220000000000000' '0400000000000000' '1126151230' '000123' '301'" },
    { "ascii87 0800 with all-zero secondary bitmap",
      "ascii87",
      NULL,
      "0800",
      ISO_MSG_SECONDARY,
      { { 7, "1126151230" }, { 11, "000123" }, { 0, NULL } },
      "'0800' '8220000000000000' '0000000000000000' '1126151230' '000123'" },
    { "ascii87 0110 approval",
      "ascii87",
      NULL,
      "0110",
      0,
      { { 2, "4761739001010010" },
        { 3, "000000" },
        { 4, "000000001000" },
        { 7, "1126151230" },
        { 11, "000123" },
        { 12, "151230" },
        { 13, "1126" },
        { 37, "123456789012" },
        { 38, "A1B2C3" },
        { 39, "00" },
        { 41, "TERM0001" },
        { 49, "404" },
        { 0, NULL } },
      "'0110' '723800000E808000'" /* 2,3,4,7 | 11,12,13 | - | - | 37,38,39 | 41 | 49 | - */
      "'16' '4761739001010010' '000000' '000000001000' '1126151230' '000123' '151230' '1126'"
      "'123456789012' 'A1B2C3' '00' 'TERM0001' '404'" },
    { "ascii87 0200 with x+n fee and DE 90/95",
      "ascii87",
      NULL,
      "0200",
      ISO_MSG_SECONDARY,
      { { 3, "000000" },
        { 28, "D00000150" },
        { 90, "020000012311261512300000000012300000000000" },
        { 95, "000000000500000000000000000000000000000000" },
        { 0, NULL } },
      "'0200' 'A000001000000000'" /* bit 1, 3 | - | - | 28 = 0x10 | ... */
      "'0000004200000000'"        /* secondary byte 4 (89-96): 90 = 0x40, 95 = 0x02 */
      "'000000' 'D00000150'"
      "'020000012311261512300000000012300000000000'"
      "'000000000500000000000000000000000000000000'" },
    { "tertiary bitmap: DE 130 after DE 3",
      NULL,
      G_TERTIARY_SPEC,
      "0200",
      ISO_MSG_SECONDARY | ISO_MSG_TERTIARY,
      { { 3, "000000" }, { 130, "HELLO" }, { 0, NULL } },
      "'0200' 'A000000000000000'" /* bit 1, 3 */
      "'8000000000000000'"        /* bit 65: a tertiary bitmap follows in DE 65's place */
      "'000000'"                  /* DE 3 */
      "'4000000000000000'"        /* tertiary bitmap: bit 130 */
      "'005' 'HELLO'" },
    { "all-zero tertiary bitmap kept",
      NULL,
      G_TERTIARY_SPEC,
      "0200",
      ISO_MSG_SECONDARY | ISO_MSG_TERTIARY,
      { { 3, "000000" }, { 0, NULL } },
      "'0200' 'A000000000000000' '8000000000000000' '000000' '0000000000000000'" },
    { "every length kind and encoding",
      NULL,
      G_KITCHEN_SPEC,
      "0100",
      0,
      { { 2, "4761739001010010123" },
        { 3, "12345" },
        { 4, "12345" },
        { 5, "HI" },
        { 6, "ABC" },
        { 7, "ok" },
        { 8, "DEADBE" },
        { 9, "12=3456" },
        { 10, "D00001234" },
        { 11, "ABCD" },
        { 12, "XY" },
        { 13, "Z" },
        { 0, NULL } },
      "'0100' 7FF8000000000000"  /* 2-8 | 9-13 */
      "19 47617390010100101 23F" /* DE 2: BCD LL 19, odd: right pad F */
      "012345"                   /* DE 3: left pad 0 */
      "12345F"                   /* DE 4: right pad F */
      "'0002' 'HI'"              /* DE 5: ASCII LLLL */
      "0003 'ABC'"               /* DE 6: binary LLL (2 bytes) */
      "F0F2 9692"                /* DE 7: EBCDIC LL, EBCDIC "ok" */
      "0003 DEADBE"              /* DE 8: BCD LLLL, raw bytes */
      "'07' 12D3456F"            /* DE 9: z, '=' as D, right pad F */
      "44 00001234"              /* DE 10: x+n, ASCII sign then BCD digits */
      "02 'ABCD'"                /* DE 11: binary LL, b as hex characters */
      "0002 'XY'"                /* DE 12: binary LLLL (2 bytes) */
      "F0F0F0F1 'Z'" /* DE 13: EBCDIC LLLL, ASCII text */ },
};

#define N_GOLDENS (sizeof(goldens) / sizeof(goldens[0]))

/* Decodes the notation into out; returns the byte count or -1. */
static inline long golden_bytes(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int hi = -1;
    while (*s) {
        char c = *s++;
        if (c == ' ')
            continue;
        if (c == '\'') {
            while (*s && *s != '\'') {
                if (n >= cap)
                    return -1;
                out[n++] = (uint8_t)*s++;
            }
            if (*s != '\'')
                return -1;
            s++;
            continue;
        }
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (v < 0)
            return -1;
        if (hi < 0) {
            hi = v;
        } else {
            if (n >= cap)
                return -1;
            out[n++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return hi < 0 ? (long)n : -1;
}

#endif
