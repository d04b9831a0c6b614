/* Reading switchd's /metrics (Prometheus text exposition format) for the
 * status line: issuer link states, journal database and backpressure
 * gauges. Only the few samples the console shows are looked at. */
#include "con.h"

#include <stdlib.h>
#include <string.h>

/* Value of label `name` in a label set "{a=\"x\",b=\"y\"}" (p .. end), unescaped
 * into out. Returns 0, or -1 if absent or malformed. */
static int label(const char *p, const char *end, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (p >= end || *p != '{')
        return -1;
    p++;
    while (p < end && *p != '}') {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || eq + 1 >= end || eq[1] != '"')
            return -1;
        bool want = (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0;
        size_t k = 0;
        for (p = eq + 2; p < end && *p != '"'; p++) {
            char c = *p;
            if (c == '\\' && p + 1 < end) {
                p++;
                c = *p == 'n' ? '?' : *p;
            }
            if (want && k + 1 < cap)
                out[k++] = (c >= 0x20 && c < 0x7f) ? c : '?';
        }
        if (p >= end)
            return -1;
        if (want) {
            out[k] = '\0';
            return 0;
        }
        p++; /* closing quote */
        if (p < end && *p == ',')
            p++;
    }
    return -1;
}

/* The sample value after the name/labels: "... 1" -> 1. */
static int value_of(const char *p, const char *end, double *v)
{
    char num[64];
    while (p < end && *p != ' ')
        p++;
    while (p < end && *p == ' ')
        p++;
    size_t n = 0;
    while (p < end && *p != ' ' && n + 1 < sizeof num)
        num[n++] = *p++;
    num[n] = '\0';
    char *e;
    *v = strtod(num, &e);
    return n > 0 && *e == '\0' ? 0 : -1;
}

static bool starts(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    return (size_t)(end - p) > n && memcmp(p, name, n) == 0 && (p[n] == '{' || p[n] == ' ');
}

int con_metrics_parse(const char *body, size_t len, struct con_metrics *m)
{
    const char *p = body, *stop = body + len;
    bool atlas = false;
    memset(m, 0, sizeof *m);
    m->db_up = -1;
    m->backpressure = -1;
    while (p < stop) {
        const char *end = memchr(p, '\n', (size_t)(stop - p));
        if (!end)
            end = stop;
        double v;
        if (end - p > 6 && memcmp(p, "atlas_", 6) == 0)
            atlas = true;
        if (starts(p, end, "atlas_issuer_link_up")) {
            const char *l = p + strlen("atlas_issuer_link_up");
            char issuer[24], state[16];
            if (label(l, end, "issuer", issuer, sizeof issuer) == 0 &&
                label(l, end, "state", state, sizeof state) == 0 && m->links.n < CON_MAX_ISSUERS) {
                snprintf(m->links.l[m->links.n].issuer, sizeof m->links.l[0].issuer, "%s", issuer);
                snprintf(m->links.l[m->links.n].state, sizeof m->links.l[0].state, "%s", state);
                m->links.n++;
            }
        } else if (starts(p, end, "atlas_journal_database_up") && value_of(p, end, &v) == 0) {
            m->db_up = v != 0;
        } else if (starts(p, end, "atlas_backpressure") && value_of(p, end, &v) == 0) {
            m->backpressure = v != 0;
        }
        p = end + 1;
    }
    return atlas ? 0 : -1;
}
