// SPDX-License-Identifier: MIT
/* A whole VM into and out of the state stream: snapshot files, migration, restore. */
#include "vm_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mono_time.h"
#include "state.h"
#include "vm.h"
#include "vm_state.h"

int vm_stream_send_begin(struct vm *vm, int fd, struct stream_stats *st)
{
	void *config = NULL;
	size_t len;
	int ret = vm_config_save(vm, &config, &len);

	if (!ret)
		ret = stream_write_header(fd, vm->mem.ram_size, vm->ncpus, st);
	if (!ret)
		ret = stream_write_section(fd, STREAM_SEC_CONFIG, config, len, st);
	free(config);
	return ret;
}

int vm_stream_send_end(struct vm *vm, int fd, const uint64_t *dirty, struct stream_stats *st)
{
	void *state = NULL;
	size_t len;
	int ret;

	vm_state_quiesce(vm);
	ret = vm_state_save(vm, &state, &len);
	if (!ret)
		ret =
		    stream_write_memory(fd, &vm->mem, dirty, dirty ? STREAM_MEM_SEND_ZERO : 0, st);
	if (!ret)
		ret = stream_write_section(fd, STREAM_SEC_STATE, state, len, st);
	if (!ret)
		ret = stream_write_section(fd, STREAM_SEC_END, NULL, 0, st);
	vm_state_unquiesce(vm);
	free(state);
	return ret;
}

int vm_stream_send(struct vm *vm, int fd, struct stream_stats *st)
{
	int ret = vm_stream_send_begin(vm, fd, st);

	return ret ? ret : vm_stream_send_end(vm, fd, NULL, st);
}

int vm_snapshot(struct vm *vm, const char *path, bool stop, struct stream_stats *st, char *err,
		size_t errlen)
{
	char tmp[4200];
	uint64_t t0;
	int fd, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "snapshot path too long");
		return -ENAMETOOLONG;
	}
	/* Write beside the target and rename: a crash never leaves a half snapshot at path. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return ret;
	}
	t0 = mono_ns();
	ret = vm_pause(vm);
	if (!ret)
		ret = vm_stream_send(vm, fd, st);
	/* The file has the state: the guest need not wait for the disk. */
	if (!stop || ret)
		vm_resume(vm);
	if (st)
		st->pause_ns = mono_ns() - t0;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret) {
		unlink(tmp);
		snprintf(err, errlen, "snapshot to %s: %s", path, strerror(-ret));
	}
	return ret;
}

/* A received tree: intact as a tree before anything reads it. */
static int check_tree(const void *tree, uint64_t len, const char *what)
{
	if (state_tree_check(tree, (size_t)len)) {
		pr_err("state stream: the %s tree is malformed", what);
		return -EINVAL;
	}
	return 0;
}

int vm_stream_recv_config(int fd, struct vm_options *opts, struct stream_stats *st, char *err,
			  size_t errlen)
{
	struct stream_header h;
	uint32_t type;
	uint64_t len;
	void *tree = NULL;
	int ret;

	/* The stream helpers print the detail; err gets the one line main shows. */
	ret = stream_read_header(fd, &h, st);
	if (!ret)
		ret = stream_read_section(fd, &type, &len, st);
	if (!ret && type != STREAM_SEC_CONFIG) {
		pr_err("state stream: starts with a %s section, not CONFIG",
		       stream_section_name(type));
		ret = -EINVAL;
	}
	if (!ret)
		ret = stream_read_payload(fd, len, &tree, st);
	if (!ret)
		ret = check_tree(tree, len, "configuration");
	if (ret) {
		snprintf(err, errlen, "%s",
			 ret == -EPIPE || ret == -ECONNRESET
			     ? "the state stream ends early (the sender is gone)"
			 : ret == -EINVAL ? "the state stream is not valid"
					  : strerror(-ret));
		free(tree);
		return ret;
	}
	ret = vm_config_apply(tree, opts, err, errlen);
	if (!ret && (opts->mem_size != h.ram_size || opts->ncpus != h.ncpus)) {
		snprintf(err, errlen, "state stream: the header and the configuration disagree");
		ret = -EINVAL;
	}
	free(tree);
	return ret;
}

int vm_stream_recv_state(int fd, struct vm *vm, unsigned flags, bool ack_passes,
			 struct stream_stats *st)
{
	const char pass_ack = VM_STREAM_ACK_PASS;
	void *state = NULL;
	uint32_t type;
	uint64_t len;
	int ret;

	for (;;) {
		ret = stream_read_section(fd, &type, &len, st);
		if (ret)
			break;
		if (type == STREAM_SEC_MEMORY) {
			ret = stream_read_memory(fd, len, &vm->mem, st);
			if (!ret && ack_passes && send(fd, &pass_ack, 1, MSG_NOSIGNAL) != 1)
				ret = -errno;
		} else if (type == STREAM_SEC_STATE && !state) {
			ret = stream_read_payload(fd, len, &state, st);
			if (!ret)
				ret = check_tree(state, len, "state");
		} else if (type == STREAM_SEC_END && state) {
			void *none = NULL;

			/*
			 * Its checksum too: a peer that closes with bytes unread
			 * resets the connection, and the reset can destroy the
			 * answer it just sent before the sender reads it.
			 */
			ret = stream_read_payload(fd, len, &none, st);
			free(none);
			break;
		} else {
			pr_err("state stream: unexpected %s section", stream_section_name(type));
			ret = -EINVAL;
		}
		if (ret)
			break;
	}
	if (ret == -EPIPE || ret == -ECONNRESET) /* a sender that dies resets the connection */
		pr_err("state stream: ends early (truncated file or sender gone)");
	if (!ret)
		ret = vm_state_load(vm, state, flags);
	free(state);
	return ret;
}
