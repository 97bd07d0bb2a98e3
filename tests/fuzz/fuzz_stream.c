// SPDX-License-Identifier: MIT
/*
 * libFuzzer target: the input is a state stream (a snapshot file or a
 * migration stream) read the way `vmm restore` reads it: header, CONFIG
 * (checked and applied to options), then sections until END, MEMORY read
 * into a small guest RAM and STATE trees checked.  The bytes come through
 * a memfd so the reader's real fd paths run.
 */
#include <libfdt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest_mem.h"
#include "log.h"
#include "options.h"
#include "state.h"
#include "stream.h"
#include "vm_stream.h"

#define FUZZ_RAM (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct guest_mem mem;
	static int fd = -1;
	struct vm_options opts;
	char err[512];
	uint32_t type;
	uint64_t len;
	void *tree;

	if (!mem.host_base) {
		if (guest_mem_init(&mem, FUZZ_RAM))
			abort();
		fd = memfd_create("fuzz-stream", 0);
		if (fd < 0)
			abort();
		log_verbosity = -1;
	}
	if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size ||
	    lseek(fd, 0, SEEK_SET) != 0)
		abort();
	memset(&opts, 0, sizeof(opts));
	opts.ncpus = 1;
	if (vm_stream_recv_config(fd, &opts, NULL, err, sizeof(err)))
		return 0;
	/* What vm_stream_recv_state does before it needs a VM. */
	for (int sections = 0; sections < 64; sections++) {
		if (stream_read_section(fd, &type, &len, NULL) || type == STREAM_SEC_END)
			break;
		if (type == STREAM_SEC_MEMORY) {
			if (stream_read_memory(fd, len, &mem, NULL))
				break;
		} else {
			if (stream_read_payload(fd, len, &tree, NULL))
				break;
			if (len >= sizeof(struct fdt_header))
				(void)state_tree_check(tree, len);
			free(tree);
		}
	}
	return 0;
}
