/* issuer-sim's private glue between the daemon (main.c) and its offline tools (seed.c): the
 * lab key constants, the PAN HMAC key from the environment, and the subcommand entry points. */
#ifndef ATLAS_SIM_ISSUER_TOOLS_H
#define ATLAS_SIM_ISSUER_TOOLS_H

#include <stddef.h>
#include <stdint.h>

/* The WALLET1 lab keys of the README's demo world, encrypted under the Thales test LMK (scheme U),
 * as `issuer-sim keys` prints them; the daemon never holds them in clear. */
#define SIM_LAB_ZPK_LMK "U9D961F6AF1D24B38AB37B320022FF57D" /* KCV 77800C */
#define SIM_LAB_ZAK_LMK "U828E5DD415D1228FCC2D07D9D794942F" /* KCV 30825B */
#define SIM_LAB_PVK_LMK "U1750CDFB0757D3B3994430636DBB281B" /* KCV 08D7B4 */
/* WALLET1's zone master key (a random lab key; db/seed/demo_switch.sql's WALLET1.ZMK). */
#define SIM_LAB_ZMK_LMK "UCE385FA1F081065353418ED6B4BFB4AD" /* KCV D0DBCF */

/* IBM 3624 decimalization table (docs/issuer-sim.md, "Decisions"). */
#define SIM_IBM_DECTAB "0123456789012345"

/* Lab default of ATLAS_PAN_HMAC_KEY (bytes 00..1F), the value run.sh exports for switchd too. */
#define SIM_LAB_PAN_HMAC_KEY "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

/* Reads ATLAS_PAN_HMAC_KEY (hex, 32..128 characters) or takes the lab default, into key.
 * Returns 0, or -1 after printing why on stderr (the value itself is never printed). */
__attribute__((warn_unused_result)) int sim_pan_hmac_key(uint8_t *key, size_t cap, size_t *len);

/* `issuer-sim seed ...` and `issuer-sim keys`: argv[0] is the subcommand. Exit codes. */
int sim_seed_main(int argc, char **argv);
int sim_keys_main(int argc, char **argv);

#endif
