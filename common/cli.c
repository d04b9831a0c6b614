/* The usage convention of the command-line programs. */
#include "cli.h"

int at_usage(void (*usage)(FILE *), bool asked)
{
    usage(asked ? stdout : stderr);
    return asked ? 0 : 2;
}
