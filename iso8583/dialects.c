/* The built-in dialects: ISO 8583:1987 field definitions (as jPOS's ISO87APackager and
 * ISO87BPackager define them, with DE 35 as z, DE 54 as an and DE 55 as b LLL 255) combined
 * with each dialect's encodings. Pure data, expanded at compile time. */
#include "iso_internal.h"

#include <string.h>

/* F(field, type, length kind, length or maximum, describe mask) */
/* clang-format off */
#define ISO87_FIELDS(F) \
    F(2, N, LL, 19, PAN) \
    F(3, N, FIXED, 6, NONE) \
    F(4, N, FIXED, 12, NONE) \
    F(5, N, FIXED, 12, NONE) \
    F(6, N, FIXED, 12, NONE) \
    F(7, N, FIXED, 10, NONE) \
    F(8, N, FIXED, 8, NONE) \
    F(9, N, FIXED, 8, NONE) \
    F(10, N, FIXED, 8, NONE) \
    F(11, N, FIXED, 6, NONE) \
    F(12, N, FIXED, 6, NONE) \
    F(13, N, FIXED, 4, NONE) \
    F(14, N, FIXED, 4, ALL) \
    F(15, N, FIXED, 4, NONE) \
    F(16, N, FIXED, 4, NONE) \
    F(17, N, FIXED, 4, NONE) \
    F(18, N, FIXED, 4, NONE) \
    F(19, N, FIXED, 3, NONE) \
    F(20, N, FIXED, 3, NONE) \
    F(21, N, FIXED, 3, NONE) \
    F(22, N, FIXED, 3, NONE) \
    F(23, N, FIXED, 3, NONE) \
    F(24, N, FIXED, 3, NONE) \
    F(25, N, FIXED, 2, NONE) \
    F(26, N, FIXED, 2, NONE) \
    F(27, N, FIXED, 1, NONE) \
    F(28, XN, FIXED, 9, NONE) \
    F(29, XN, FIXED, 9, NONE) \
    F(30, XN, FIXED, 9, NONE) \
    F(31, XN, FIXED, 9, NONE) \
    F(32, N, LL, 11, NONE) \
    F(33, N, LL, 11, NONE) \
    F(34, ANS, LL, 28, PAN) \
    F(35, Z, LL, 37, TRACK2) \
    F(36, Z, LLL, 104, ALL) \
    F(37, AN, FIXED, 12, NONE) \
    F(38, AN, FIXED, 6, NONE) \
    F(39, AN, FIXED, 2, NONE) \
    F(40, AN, FIXED, 3, NONE) \
    F(41, ANS, FIXED, 8, NONE) \
    F(42, ANS, FIXED, 15, NONE) \
    F(43, ANS, FIXED, 40, NONE) \
    F(44, ANS, LL, 25, NONE) \
    F(45, ANS, LL, 76, TRACK1) \
    F(46, ANS, LLL, 999, NONE) \
    F(47, ANS, LLL, 999, NONE) \
    F(48, ANS, LLL, 999, NONE) \
    F(49, AN, FIXED, 3, NONE) \
    F(50, AN, FIXED, 3, NONE) \
    F(51, AN, FIXED, 3, NONE) \
    F(52, B, FIXED, 8, ALL) \
    F(53, N, FIXED, 16, NONE) \
    F(54, AN, LLL, 120, NONE) \
    F(55, B, LLL, 255, TLV) \
    F(56, ANS, LLL, 999, NONE) \
    F(57, ANS, LLL, 999, NONE) \
    F(58, ANS, LLL, 999, NONE) \
    F(59, ANS, LLL, 999, NONE) \
    F(60, ANS, LLL, 999, NONE) \
    F(61, ANS, LLL, 999, NONE) \
    F(62, ANS, LLL, 999, NONE) \
    F(63, ANS, LLL, 999, NONE) \
    F(64, B, FIXED, 8, ALL) \
    F(65, B, FIXED, 1, NONE) \
    F(66, N, FIXED, 1, NONE) \
    F(67, N, FIXED, 2, NONE) \
    F(68, N, FIXED, 3, NONE) \
    F(69, N, FIXED, 3, NONE) \
    F(70, N, FIXED, 3, NONE) \
    F(71, N, FIXED, 4, NONE) \
    F(72, N, FIXED, 4, NONE) \
    F(73, N, FIXED, 6, NONE) \
    F(74, N, FIXED, 10, NONE) \
    F(75, N, FIXED, 10, NONE) \
    F(76, N, FIXED, 10, NONE) \
    F(77, N, FIXED, 10, NONE) \
    F(78, N, FIXED, 10, NONE) \
    F(79, N, FIXED, 10, NONE) \
    F(80, N, FIXED, 10, NONE) \
    F(81, N, FIXED, 10, NONE) \
    F(82, N, FIXED, 12, NONE) \
    F(83, N, FIXED, 12, NONE) \
    F(84, N, FIXED, 12, NONE) \
    F(85, N, FIXED, 12, NONE) \
    F(86, N, FIXED, 16, NONE) \
    F(87, N, FIXED, 16, NONE) \
    F(88, N, FIXED, 16, NONE) \
    F(89, N, FIXED, 16, NONE) \
    F(90, N, FIXED, 42, NONE) \
    F(91, AN, FIXED, 1, NONE) \
    F(92, AN, FIXED, 2, NONE) \
    F(93, AN, FIXED, 6, NONE) \
    F(94, AN, FIXED, 7, NONE) \
    F(95, AN, FIXED, 42, NONE) \
    F(96, B, FIXED, 16, ALL) \
    F(97, XN, FIXED, 17, NONE) \
    F(98, ANS, FIXED, 25, NONE) \
    F(99, N, LL, 11, NONE) \
    F(100, N, LL, 11, NONE) \
    F(101, ANS, LL, 17, NONE) \
    F(102, ANS, LL, 28, PAN) \
    F(103, ANS, LL, 28, PAN) \
    F(104, ANS, LLL, 100, NONE) \
    F(105, ANS, LLL, 999, NONE) \
    F(106, ANS, LLL, 999, NONE) \
    F(107, ANS, LLL, 999, NONE) \
    F(108, ANS, LLL, 999, NONE) \
    F(109, ANS, LLL, 999, NONE) \
    F(110, ANS, LLL, 999, NONE) \
    F(111, ANS, LLL, 999, NONE) \
    F(112, ANS, LLL, 999, NONE) \
    F(113, ANS, LLL, 999, NONE) \
    F(114, ANS, LLL, 999, NONE) \
    F(115, ANS, LLL, 999, NONE) \
    F(116, ANS, LLL, 999, NONE) \
    F(117, ANS, LLL, 999, NONE) \
    F(118, ANS, LLL, 999, NONE) \
    F(119, ANS, LLL, 999, NONE) \
    F(120, ANS, LLL, 999, NONE) \
    F(121, ANS, LLL, 999, NONE) \
    F(122, ANS, LLL, 999, NONE) \
    F(123, ANS, LLL, 999, NONE) \
    F(124, ANS, LLL, 999, NONE) \
    F(125, ANS, LLL, 999, NONE) \
    F(126, ANS, LLL, 999, NONE) \
    F(127, ANS, LLL, 999, NONE) \
    F(128, B, FIXED, 8, ALL)

/* clang-format on */

#define IS_NUMERIC(t) ((t) == ISO_T_N || (t) == ISO_T_Z || (t) == ISO_T_XN)

/* One field spec from the table row and the dialect's encodings. */
#define SPEC(num, t, k, m, mk, LENC, NENC, TENC, BENC, FPAD, VPAD)                                 \
    [num] = { ISO_T_##t,                                                                           \
              ISO_LEN_##k,                                                                         \
              ISO_LEN_##k == ISO_LEN_FIXED ? ISO_ENC_ASCII : LENC,                                 \
              ISO_T_##t == ISO_T_B    ? BENC                                                       \
              : IS_NUMERIC(ISO_T_##t) ? NENC                                                       \
                                      : TENC,                                                      \
              ISO_LEN_##k == ISO_LEN_FIXED ? FPAD : VPAD,                                          \
              ISO_MASK_##mk,                                                                       \
              m },

#define ASCII87(n, t, k, m, mk)                                                                    \
    SPEC(n, t, k, m, mk, ISO_ENC_ASCII, ISO_ENC_ASCII, ISO_ENC_ASCII, ISO_ENC_HEX, ISO_PAD_LEFT0,  \
         ISO_PAD_RIGHT0)
#define ASCII87B(n, t, k, m, mk)                                                                   \
    SPEC(n, t, k, m, mk, ISO_ENC_ASCII, ISO_ENC_ASCII, ISO_ENC_ASCII, ISO_ENC_BINARY,              \
         ISO_PAD_LEFT0, ISO_PAD_RIGHT0)
#define BCD87(n, t, k, m, mk)                                                                      \
    SPEC(n, t, k, m, mk, ISO_ENC_BCD, ISO_ENC_BCD, ISO_ENC_ASCII, ISO_ENC_BINARY, ISO_PAD_LEFT0,   \
         ISO_PAD_RIGHT0)
#define EBCDIC87(n, t, k, m, mk)                                                                   \
    SPEC(n, t, k, m, mk, ISO_ENC_EBCDIC, ISO_ENC_EBCDIC, ISO_ENC_EBCDIC, ISO_ENC_BINARY,           \
         ISO_PAD_LEFT0, ISO_PAD_RIGHT0)

static const struct iso_dialect d_ascii87 = {
    .name = "ascii87",
    .mti_enc = ISO_ENC_ASCII,
    .bitmap_enc = ISO_ENC_HEX,
    .def_len_enc = ISO_ENC_ASCII,
    .def_num_enc = ISO_ENC_ASCII,
    .def_text_enc = ISO_ENC_ASCII,
    .def_bin_enc = ISO_ENC_HEX,
    .field = { ISO87_FIELDS(ASCII87) },
};

static const struct iso_dialect d_ascii87b = {
    .name = "ascii87b",
    .mti_enc = ISO_ENC_ASCII,
    .bitmap_enc = ISO_ENC_BINARY,
    .def_len_enc = ISO_ENC_ASCII,
    .def_num_enc = ISO_ENC_ASCII,
    .def_text_enc = ISO_ENC_ASCII,
    .def_bin_enc = ISO_ENC_BINARY,
    .field = { ISO87_FIELDS(ASCII87B) },
};

static const struct iso_dialect d_bcd87 = {
    .name = "bcd87",
    .mti_enc = ISO_ENC_BCD,
    .bitmap_enc = ISO_ENC_BINARY,
    .def_len_enc = ISO_ENC_BCD,
    .def_num_enc = ISO_ENC_BCD,
    .def_text_enc = ISO_ENC_ASCII,
    .def_bin_enc = ISO_ENC_BINARY,
    .field = { ISO87_FIELDS(BCD87) },
};

static const struct iso_dialect d_ebcdic87 = {
    .name = "ebcdic87",
    .mti_enc = ISO_ENC_EBCDIC,
    .bitmap_enc = ISO_ENC_BINARY,
    .def_len_enc = ISO_ENC_EBCDIC,
    .def_num_enc = ISO_ENC_EBCDIC,
    .def_text_enc = ISO_ENC_EBCDIC,
    .def_bin_enc = ISO_ENC_BINARY,
    .field = { ISO87_FIELDS(EBCDIC87) },
};

static const struct iso_dialect *const builtins[] = { &d_ascii87, &d_ascii87b, &d_bcd87,
                                                      &d_ebcdic87 };

const char *const iso_dialect_names[] = { "ascii87", "ascii87b", "bcd87", "ebcdic87", NULL };

const struct iso_dialect *iso_dialect_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        if (strcmp(builtins[i]->name, name) == 0)
            return builtins[i];
    return NULL;
}
