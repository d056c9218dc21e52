/* test_slot.c -- key to Redis Cluster slot, against the values Redis gives
 * (CLUSTER KEYSLOT) and the hash tag rules of the cluster specification. */
#include "check.h"
#include "queue/slot.h"

static int slot(const char *key) { return gpuq_key_slot(key, strlen(key)); }

int main(void) {
    CHECK(slot("foo") == 12182);
    CHECK(slot("bar") == 5061);
    CHECK(slot("123456789") == 0x31C3 % GPUQ_SLOTS);
    CHECK(slot("{user1000}.following") == slot("user1000"));
    CHECK(slot("gpuq:{default}:jobs") == slot("default"));
    CHECK(slot("foo{}{bar}") != slot("bar"));      /* an empty first tag: the whole key */
    CHECK(slot("foo{}{bar}") == gpuq_key_slot("foo{}{bar}", 10));
    CHECK(slot("foo{{bar}}zap") == slot("{bar"));  /* the tag runs to the first '}' */
    CHECK(slot("foo{bar}{zap}") == slot("bar"));
    CHECK(slot("no{close") == gpuq_key_slot("no{close", 8));
    CHECK(slot("") == 0);
    return check_done("test_slot");
}
