/* Stands for the advice queue (switch/advice.h) until its implementation, advice.c, is in the
 * tree (switch/CMakeLists.txt picks one): no advice can be stored, so stand-in never approves
 * (it answers 91, as switchd did before stand-in). Never a pretend-durable advice. */
#include "advice.h"

#include "log.h"

void sw_advice_store(struct sw_txn *t, void (*done)(struct sw_txn *t, bool durable))
{
    at_log(AT_LOG_WARN, "advice_not_stored", AT_STR("reason", "no advice queue in this build"));
    done(t, false);
}
