/* Helper of test_load: issuer-sim's seed function behind a neutral signature, in its own
 * translation unit because issuer.h and acquirer.h both define sim_* names. */
#include <string.h>

#include "issuer.h"

int tl_seed_card(uint64_t index, char pan[20], char pin[5], int *currency);

int tl_seed_card(uint64_t index, char pan[20], char pin[5], int *currency)
{
    struct sim_seed_spec sp;
    if (sim_seed_spec(index, &sp) != 0)
        return -1;
    memcpy(pan, sp.pan, 20);
    memcpy(pin, sp.pin, 5);
    *currency = sp.currency;
    memset(&sp, 0, sizeof sp);
    return 0;
}
