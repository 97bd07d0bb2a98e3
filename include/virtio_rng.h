/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng (virtio 1.2, 5.4): one request queue; every chain's writable
 * buffers are filled from getrandom() and handed back.  No rate limit.  No
 * device-specific config or features; its saved state is the transport's.
 */
#ifndef VMM_VIRTIO_RNG_H
#define VMM_VIRTIO_RNG_H

#include <stdbool.h>

#include "virtio.h"

#define VIRTIO_RNG_QUEUE_SIZE 256
#define VIRTIO_RNG_MAX_FILL   (64 * 1024) /* bytes per request; the rest is left unwritten */

struct virtio_rng {
	struct virtio_dev vdev;
	pthread_mutex_t lock; /* against activate/reset */
	bool active;	      /* DRIVER_OK and not reset */
	struct virtq_chain *chain;
	unsigned long requests, bytes; /* served so far */
};

/* Create the device and put it on env->pci (slot -1: next free).  0 or -errno. */
int virtio_rng_create(struct virtio_rng **out, const struct virtio_env *env, int slot);
void virtio_rng_destroy(struct virtio_rng *rng);

int virtio_rng_save(struct virtio_rng *rng, void *fdt);
int virtio_rng_load(struct virtio_rng *rng, const void *fdt, int node);

#endif
