// SPDX-License-Identifier: MIT
/*
 * Fuzz the virtqueue walker: the input becomes the guest's rings and
 * descriptor tables (a hostile driver controls all of them).  The walker
 * must never touch memory outside guest RAM, loop forever or crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtqueue.h"

#define MEM (1ULL << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static struct virtq_chain chain;
	static int ready;
	struct virtq vq;
	uint8_t hdr[24];
	int i, ret;

	if (!ready) {
		if (guest_mem_init(&mem, MEM))
			abort();
		ready = 1;
	}
	if (size < sizeof(hdr))
		return 0;
	memcpy(hdr, data, sizeof(hdr));
	data += sizeof(hdr);
	size -= sizeof(hdr);
	memset(mem.host_base, 0, 0x40000);
	/* The rest of the input is the first 256 KiB of guest RAM: rings, tables, data. */
	memcpy(mem.host_base, data, size < 0x40000 ? size : 0x40000);

	virtq_reset(&vq);
	vq.size = (uint16_t)(1u << (hdr[0] % 16));
	vq.desc_gpa = (uint64_t)(hdr[1] | hdr[2] << 8) << 4;
	vq.avail_gpa = (uint64_t)(hdr[3] | hdr[4] << 8) << 1;
	vq.used_gpa = (uint64_t)(hdr[5] | hdr[6] << 8) << 2;
	vq.indirect = hdr[7] & 1;
	vq.event_idx = hdr[7] & 2;
	if (hdr[7] & 4) /* sometimes hostile addresses at the edges of RAM */
		vq.desc_gpa = MEM - 16ULL * (hdr[8] + 1);
	if (virtq_enable(&vq, &mem))
		return 0;
	vq.last_avail_idx = (uint16_t)(hdr[9] | hdr[10] << 8);
	for (i = 0; i < 64; i++) {
		ret = virtq_pop(&vq, &mem, &chain);
		if (ret <= 0)
			break;
		uint8_t buf[64];
		virtq_chain_read(&chain, hdr[11], buf, sizeof(buf));
		virtq_chain_write(&chain, &mem, hdr[12], buf, hdr[13] % sizeof(buf));
		virtq_push(&vq, &mem, chain.head, (uint32_t)chain.in_len);
		virtq_should_notify(&vq, &mem);
		virtq_update_avail_event(&vq, &mem);
	}
	return 0;
}
