/* placeholder: filled in by the next commit. */
#include "hsm_internal.h"
