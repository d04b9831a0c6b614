/* The meanings of the DE 39 response codes Atlas uses (ISO 8583:1987), short
 * enough for an aligned console column; one table for every tool that shows them. */
#include "iso8583.h"

static const struct {
    char rc[3];
    const char *text;
} rc_texts[] = {
    { "00", "approved" },
    { "05", "do not honour" },
    { "12", "invalid transaction" },
    { "13", "invalid amount" },
    { "14", "invalid card number" },
    { "15", "no such issuer" },
    { "30", "format error" },
    { "51", "insufficient funds" },
    { "54", "expired card" },
    { "55", "incorrect PIN" },
    { "57", "not permitted (card)" },
    { "58", "not permitted (term)" },
    { "61", "exceeds amount limit" },
    { "62", "restricted card" },
    { "63", "security violation" },
    { "65", "exceeds count limit" },
    { "68", "response too late" },
    { "75", "PIN tries exceeded" },
    { "82", "card cryptogram bad" }, /* Visa: negative CAM, dCVV, iCVV or CVV result (ARQC) */
    { "91", "issuer unavailable" },
    { "94", "duplicate request" },
    { "96", "system malfunction" },
    { "N7", "CVV2 mismatch" }, /* Visa: decline for CVV2 failure */
};

const char *iso_rc_text(const char *rc)
{
    if (!rc || !rc[0] || !rc[1])
        return NULL;
    for (size_t i = 0; i < sizeof rc_texts / sizeof rc_texts[0]; i++)
        if (rc[0] == rc_texts[i].rc[0] && rc[1] == rc_texts[i].rc[1])
            return rc_texts[i].text;
    return NULL;
}
