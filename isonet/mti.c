/* The response MTI of a request: written once, so that what a sender waits for and what a
 * responder sends cannot drift apart. */
#include "isonet.h"

#include <string.h>

/* ISO 8583's third MTI digit is the function (0 request, 1 its response, 2 advice, 3 its
 * response, ...), the fourth the origin (0 acquirer, 1 acquirer repeat, 2 issuer, ...). A repeat
 * is answered like its original: 0 for 0 and 1, as jPOS does (ISOMsg.setResponseMTI). Atlas's
 * links carry acquirer-originated requests only; for other origins jPOS keeps the pair (xx02 →
 * xx12) where this gives xx10, which is what switchd has always answered an unsupported MTI of
 * such an origin with (its refusal, 12). */
void isonet_response_mti(const char req[4], char out[5])
{
    memcpy(out, req, 4);
    out[2] = (char)(req[2] + 1);
    out[3] = '0';
    out[4] = '\0';
}
