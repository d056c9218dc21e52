/* slot.h -- Redis Cluster's key to hash slot mapping (CRC16 of the key, or
 * of its {hash tag}, modulo 16384), as the cluster specification gives it. */
#ifndef GPUQ_SLOT_H
#define GPUQ_SLOT_H

#include <stddef.h>

#define GPUQ_SLOTS 16384

/* The slot of key: CRC16-CCITT (XMODEM) over the part between the first
 * '{' and the next '}' when that part is not empty, else over all of it. */
int gpuq_key_slot(const char *key, size_t len);

#endif
