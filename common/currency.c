/* The ISO 4217 table (see currency.h): the demo's four wallet currencies first, then the ones
 * the simulator and the console have been asked to show. */
#include "currency.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct at_currency currencies[] = {
    { "MAD", "504", 2 }, { "XOF", "952", 0 }, { "XAF", "950", 0 }, { "MRU", "929", 2 },
    { "EUR", "978", 2 }, { "USD", "840", 2 }, { "GBP", "826", 2 }, { "TND", "788", 3 },
    { "NGN", "566", 2 }, { "GNF", "324", 0 },
};

const struct at_currency *at_currency_find(const char *code)
{
    for (size_t i = 0; i < sizeof currencies / sizeof currencies[0]; i++)
        if (strcasecmp(code, currencies[i].alpha) == 0 || strcmp(code, currencies[i].numeric) == 0)
            return &currencies[i];
    return NULL;
}

void at_format_minor(uint64_t minor, unsigned exponent, char *out, size_t cap)
{
    char digits[40];
    int n = snprintf(digits, sizeof digits, "%0*llu", (int)exponent + 1, (unsigned long long)minor);
    int whole = n - (int)exponent;
    if (exponent == 0)
        snprintf(out, cap, "%s", digits);
    else
        snprintf(out, cap, "%.*s.%s", whole, digits, digits + whole);
}
