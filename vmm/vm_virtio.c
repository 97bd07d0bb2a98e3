// SPDX-License-Identifier: MIT
/* The VM's virtio devices: built from the options, wired to stdio, files, sockets and taps. */
#include "vm.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "virtio.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_rng.h"

/* Errors that come from what the user asked for (a path, a tap name), not from the host. */
static bool is_input_error(int ret)
{
	switch (-ret) {
	case ENOENT:
	case EACCES:
	case EPERM:
	case EISDIR:
	case ENOTDIR:
	case EROFS:
	case EINVAL:
	case EEXIST:
	case ENAMETOOLONG:
	case EBUSY:
	case ENODEV:
		return true;
	default:
		return false;
	}
}

static void on_hvc_output(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;

	vm_output(vm, vm->opts->hvc == HVC_STDIO ? OUTPUT_CONSOLE : OUTPUT_HVC, buf, len);
}

/* Any thread: the loop feeds the waiting input (stdio) or the socket client's. */
static void on_hvc_rx_space(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	if (vm->opts->hvc != HVC_STDIO) {
		hvc_port_rx_space(&vm->hvc_port);
		return;
	}
	if (write(vm->rx_space_fd, &one, sizeof(one)) < 0) {
		/* counter saturated: the loop is woken anyway */
	}
}

static const struct virtio_console_ops hvc_ops = {
    .output = on_hvc_output,
    .rx_space = on_hvc_rx_space,
};

size_t vm_console_input(struct vm *vm, const uint8_t *buf, size_t len)
{
	if (vm->hvc && vm->opts->hvc == HVC_STDIO)
		return virtio_console_receive(vm->hvc, buf, len);
	return uart8250_receive(&vm->com1, buf, len);
}

static int create_console(struct vm *vm, const struct virtio_env *env)
{
	int ret;

	if (vm->opts->hvc != HVC_STDIO) {
		ret = hvc_port_open(&vm->hvc_port, vm->opts->hvc, vm->opts->hvc_path, &vm->loop);
		if (ret)
			return ret;
	}
	ret = virtio_console_create(&vm->hvc, env, &hvc_ops, vm);
	if (ret) {
		pr_err("virtio-console: %s", strerror(-ret));
		return ret;
	}
	vm->hvc_port.dev = vm->hvc;
	return 0;
}

int vm_virtio_create(struct vm *vm)
{
	const struct vm_options *opts = vm->opts;
	struct virtio_env env;
	int ret = 0;
	unsigned i;

	vm_virtio_env(vm, &env);
	for (i = 0; !ret && i < opts->nr_disks; i++) {
		ret = virtio_blk_create(&vm->blks[i], &env, &opts->disks[i], i);
		vm->nr_blks += !ret;
	}
	for (i = 0; !ret && i < opts->nr_nets; i++) {
		ret = virtio_net_create(&vm->nets[i], &env, &opts->nets[i], i);
		vm->nr_nets += !ret;
	}
	if (!ret && opts->hvc != HVC_NONE)
		ret = create_console(vm, &env);
	if (!ret && opts->rng) {
		ret = virtio_rng_create(&vm->rng, &env, -1);
		if (ret)
			pr_err("virtio-rng: %s", strerror(-ret));
	}
	if (ret && is_input_error(ret))
		vm->input_error = true;
	return ret;
}

void vm_virtio_destroy(struct vm *vm)
{
	unsigned i;

	virtio_rng_destroy(vm->rng);
	vm->rng = NULL;
	if (vm->hvc)
		virtio_console_destroy(vm->hvc);
	vm->hvc = NULL;
	hvc_port_close(&vm->hvc_port);
	for (i = 0; i < vm->nr_nets; i++)
		virtio_net_destroy(vm->nets[i]);
	for (i = 0; i < vm->nr_blks; i++)
		virtio_blk_destroy(vm->blks[i]);
	vm->nr_nets = vm->nr_blks = 0;
}
