/* ISO 4217 currencies: alphabetic code, numeric code (as DE 49 carries it) and minor-unit digits.
 * Amounts travel in minor units (12.50 MAD is 1250, 500 XOF is 500); this table is the one place
 * that says how many digits follow the decimal point, for every program that shows or parses
 * amounts (atlas-console, acquirer-sim). */
#ifndef ATLAS_CURRENCY_H
#define ATLAS_CURRENCY_H

#include <stddef.h>
#include <stdint.h>

struct at_currency {
    char alpha[4];   /* "MAD" */
    char numeric[4]; /* "504" */
    int exponent;    /* minor-unit digits: 2 for MAD, 0 for XOF, 3 for TND */
};

/* The currency named by its alphabetic code (any case) or its numeric code, or NULL. */
const struct at_currency *at_currency_find(const char *code);

/* minor / 10^exponent in plain decimal ("1250", 2 → "12.50"; 500, 0 → "500"; 5, 3 → "0.005"),
 * no currency code: the one place amounts get their decimal point (exponent 0..18). */
void at_format_minor(uint64_t minor, unsigned exponent, char *out, size_t cap);

#endif
