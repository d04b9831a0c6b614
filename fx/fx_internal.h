/* Private to libatlas_fx: what its files share. */
#ifndef ATLAS_FX_INTERNAL_H
#define ATLAS_FX_INTERNAL_H

#include "fx.h"

/* Fills err (when not NULL) with code, why and a formatted message; returns code. */
__attribute__((format(printf, 4, 5))) int fx_fail(struct fx_error *err, int code, enum fx_why why,
                                                  const char *fmt, ...);

#endif
