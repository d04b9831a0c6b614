/* What every command-line program of Atlas shares: the usage convention. */
#ifndef ATLAS_CLI_H
#define ATLAS_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Prints a program's usage and gives the exit status that goes with it: asked for (--help),
 * on stdout and 0; a wrong option or argument, on stderr and 2. A getopt loop ends with
 * `case 'h': default: return at_usage(usage, c == 'h');`. */
int at_usage(void (*usage)(FILE *), bool asked);

#endif
