// SPDX-License-Identifier: MIT
/* virtio-rng: guest buffers filled from getrandom(). */
#include "virtio_rng.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RNG_QUEUE 0

/* Fill a chain's writable buffers (up to VIRTIO_RNG_MAX_FILL bytes); bytes written. */
static uint32_t fill(struct virtio_rng *rng, const struct virtq_chain *c)
{
	uint8_t buf[4096];
	uint64_t want = c->in_len < VIRTIO_RNG_MAX_FILL ? c->in_len : VIRTIO_RNG_MAX_FILL;
	uint64_t done = 0;

	while (done < want) {
		size_t n = want - done < sizeof(buf) ? want - done : sizeof(buf);
		ssize_t got = getrandom(buf, n, 0);

		if (got <= 0) {
			if (got < 0 && errno == EINTR)
				continue;
			break;
		}
		done += virtq_chain_write(c, rng->vdev.env.mem, done, buf, (uint64_t)got);
	}
	return (uint32_t)done;
}

static void rng_notify(struct virtio_dev *vdev, unsigned q)
{
	struct virtio_rng *rng = vdev->opaque;
	struct virtq *vq = virtio_queue(vdev, RNG_QUEUE);
	bool pushed = false, broken = false;
	uint32_t n;
	int ret;

	if (q != RNG_QUEUE)
		return;
	pthread_mutex_lock(&rng->lock);
	while (rng->active) {
		ret = virtq_pop(vq, vdev->env.mem, rng->chain);
		if (ret == 0) {
			/* Empty: ask for the next notification (event index), look again. */
			virtq_update_avail_event(vq, vdev->env.mem);
			ret = virtq_pop(vq, vdev->env.mem, rng->chain);
			if (ret == 0)
				break;
		}
		n = ret < 0 ? 0 : fill(rng, rng->chain);
		if (ret < 0 || virtq_push(vq, vdev->env.mem, rng->chain->head, n)) {
			broken = true;
			rng->active = false;
			break;
		}
		rng->requests++;
		rng->bytes += n;
		pushed = true;
	}
	pthread_mutex_unlock(&rng->lock);
	if (broken)
		virtio_set_needs_reset(vdev);
	if (pushed)
		virtio_queue_interrupt(vdev, RNG_QUEUE);
}

static int rng_activate(struct virtio_dev *vdev)
{
	struct virtio_rng *rng = vdev->opaque;

	pthread_mutex_lock(&rng->lock);
	rng->active = true;
	pthread_mutex_unlock(&rng->lock);
	return 0;
}

static void rng_reset(struct virtio_dev *vdev)
{
	struct virtio_rng *rng = vdev->opaque;

	pthread_mutex_lock(&rng->lock);
	rng->active = false;
	pthread_mutex_unlock(&rng->lock);
}

static const struct virtio_device_ops rng_ops = {
    .queue_notify = rng_notify,
    .activate = rng_activate,
    .reset = rng_reset,
};

int virtio_rng_create(struct virtio_rng **out, const struct virtio_env *env, int slot)
{
	static const struct virtio_dev_info info = {
	    .name = "virtio-rng",
	    .device_id = VIRTIO_ID_RNG,
	    .nr_queues = 1,
	    .queue_size = VIRTIO_RNG_QUEUE_SIZE,
	};
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	if (!rng)
		return -ENOMEM;
	rng->chain = malloc(sizeof(*rng->chain));
	if (!rng->chain) {
		free(rng);
		return -ENOMEM;
	}
	pthread_mutex_init(&rng->lock, NULL);
	ret = virtio_pci_init(&rng->vdev, &info, &rng_ops, rng, env);
	if (ret) {
		pthread_mutex_destroy(&rng->lock);
		free(rng->chain);
		free(rng);
		return ret;
	}
	ret = virtio_pci_register(&rng->vdev, slot);
	if (ret) {
		virtio_rng_destroy(rng);
		return ret;
	}
	*out = rng;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_pci_destroy(&rng->vdev);
	pthread_mutex_destroy(&rng->lock);
	free(rng->chain);
	free(rng);
}

int virtio_rng_save(struct virtio_rng *rng, void *fdt)
{
	return virtio_pci_save(&rng->vdev, fdt);
}

int virtio_rng_load(struct virtio_rng *rng, const void *fdt, int node)
{
	uint8_t s;
	int ret = virtio_pci_load(&rng->vdev, fdt, node);

	if (ret)
		return ret;
	pthread_mutex_lock(&rng->vdev.lock);
	s = rng->vdev.t.status;
	pthread_mutex_unlock(&rng->vdev.lock);
	pthread_mutex_lock(&rng->lock);
	rng->active = (s & VIRTIO_CONFIG_S_DRIVER_OK) && !(s & VIRTIO_CONFIG_S_NEEDS_RESET);
	pthread_mutex_unlock(&rng->lock);
	return 0;
}
