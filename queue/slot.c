/* slot.c -- key to hash slot, bit by bit: the keys are short and this runs
 * once per reply list per transaction, never per byte of a result. */
#include "queue/slot.h"

#include <stdint.h>
#include <string.h>

static uint16_t crc16(const char *p, size_t len) {
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)p[i] << 8);
        for (int b = 0; b < 8; b++) crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

int gpuq_key_slot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(key + from, '}', len - from);
        if (close && close > key + from) return crc16(key + from, (size_t)(close - key) - from) % GPUQ_SLOTS;
    }
    return crc16(key, len) % GPUQ_SLOTS;
}
