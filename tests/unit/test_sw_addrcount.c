/* Connections per peer address: the cap per address, IPv4 and its mapped
 * IPv6 form counting as one address, the table's capacity, and deletions
 * (backward shift) keeping every other address reachable under churn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addrcount.h"

static const uint8_t key[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

static struct sw_peer_addr v4(const char *ip)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(1234) };
    struct sw_peer_addr a;
    assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
    assert_true(sw_peer_addr_of((struct sockaddr *)&sin, sizeof sin, &a));
    return a;
}

static struct sw_peer_addr v6(const char *ip)
{
    struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(4321) };
    struct sw_peer_addr a;
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    assert_true(sw_peer_addr_of((struct sockaddr *)&sin6, sizeof sin6, &a));
    return a;
}

static void test_cap_per_address(void **state)
{
    struct sw_addrcount *c = sw_addrcount_new(8, key);
    assert_non_null(c);
    struct sw_peer_addr a = v4("10.0.0.1"), b = v4("10.0.0.2");
    for (int i = 0; i < 3; i++)
        assert_int_equal(sw_addrcount_take(c, &a, 3), 0);
    assert_int_equal(sw_addrcount_take(c, &a, 3), -1); /* the 4th from a */
    assert_int_equal(sw_addrcount_get(c, &a), 3);      /* a refusal counts nothing */
    assert_int_equal(sw_addrcount_take(c, &b, 3), 0);  /* another address is not affected */
    assert_int_equal(sw_addrcount_addresses(c), 2);
    sw_addrcount_drop(c, &a);
    assert_int_equal(sw_addrcount_take(c, &a, 3), 0); /* a slot freed is a slot again */
    for (int i = 0; i < 3; i++)
        sw_addrcount_drop(c, &a);
    assert_int_equal(sw_addrcount_get(c, &a), 0);
    assert_int_equal(sw_addrcount_addresses(c), 1);
    assert_int_equal(sw_addrcount_get(c, &b), 1);
    sw_addrcount_free(c);
}

static void test_families(void **state)
{
    struct sw_peer_addr a = v4("192.0.2.7"), m = v6("::ffff:192.0.2.7"), o = v6("2001:db8::7");
    assert_memory_equal(&a, &m, sizeof a); /* one host, whatever the socket family */
    assert_memory_not_equal(&a, &o, sizeof a);
    struct sw_addrcount *c = sw_addrcount_new(4, key);
    assert_int_equal(sw_addrcount_take(c, &a, 2), 0);
    assert_int_equal(sw_addrcount_take(c, &m, 2), 0);
    assert_int_equal(sw_addrcount_take(c, &m, 2), -1);
    assert_int_equal(sw_addrcount_take(c, &o, 2), 0);
    sw_addrcount_free(c);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    struct sw_peer_addr x;
    assert_false(sw_peer_addr_of((struct sockaddr *)&un, sizeof un, &x));
    struct sockaddr_in sin = { .sin_family = AF_INET };
    assert_false(sw_peer_addr_of((struct sockaddr *)&sin, 4, &x)); /* truncated */
}

static void test_capacity(void **state)
{
    struct sw_addrcount *c = sw_addrcount_new(3, key);
    struct sw_peer_addr a = v4("10.1.0.1"), b = v4("10.1.0.2"), d = v4("10.1.0.3"),
                        e = v4("10.1.0.4");
    assert_int_equal(sw_addrcount_take(c, &a, 5), 0);
    assert_int_equal(sw_addrcount_take(c, &b, 5), 0);
    assert_int_equal(sw_addrcount_take(c, &d, 5), 0);
    assert_int_equal(sw_addrcount_take(c, &e, 5), -1); /* a 4th address does not fit */
    assert_int_equal(sw_addrcount_take(c, &a, 5), 0);  /* a known one still does */
    sw_addrcount_drop(c, &b);
    assert_int_equal(sw_addrcount_take(c, &e, 5), 0);
    sw_addrcount_free(c);
}

/* Random takes and drops against a model: after every step each address has
 * exactly the count the model says (a broken backward shift loses entries). */
static void test_churn_matches_model(void **state)
{
    enum { ADDRS = 600, CAP = 4 };
    static uint32_t model[ADDRS];
    static struct sw_peer_addr addrs[ADDRS];
    struct sw_addrcount *c = sw_addrcount_new(ADDRS, key);
    memset(model, 0, sizeof model);
    for (int i = 0; i < ADDRS; i++) {
        memset(&addrs[i], 0, sizeof addrs[i]);
        addrs[i].b[0] = 0x20;
        addrs[i].b[14] = (uint8_t)(i >> 8);
        addrs[i].b[15] = (uint8_t)i;
    }
    srand(42);
    size_t live = 0;
    for (int step = 0; step < 200000; step++) {
        int i = rand() % ADDRS;
        if (rand() % 2) {
            int rc = sw_addrcount_take(c, &addrs[i], CAP);
            assert_int_equal(rc, model[i] < CAP ? 0 : -1);
            if (rc == 0 && model[i]++ == 0)
                live++;
        } else if (model[i] > 0) {
            sw_addrcount_drop(c, &addrs[i]);
            if (--model[i] == 0)
                live--;
        }
        if (step % 997 == 0) {
            for (int k = 0; k < ADDRS; k++)
                assert_int_equal(sw_addrcount_get(c, &addrs[k]), model[k]);
            assert_int_equal(sw_addrcount_addresses(c), live);
        }
    }
    sw_addrcount_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_per_address),
        cmocka_unit_test(test_families),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_churn_matches_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
