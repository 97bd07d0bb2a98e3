// SPDX-License-Identifier: MIT
/*
 * Where the guest's output goes: straight out, or through the output
 * buffer once replication has started (output commit).
 */
#include "vm.h"

#include "log.h"
#include "virtio_net.h"

static void emit(void *opaque, enum output_kind kind, unsigned dev, const uint8_t *data, size_t len)
{
	struct vm *vm = opaque;

	/* A fenced side says nothing more: the guest's output is another host's now. */
	if (!fence_allowed(&vm->fence))
		return;
	switch (kind) {
	case OUTPUT_CONSOLE:
		console_write(&vm->console, data, len);
		break;
	case OUTPUT_HVC:
		hvc_port_output(&vm->hvc_port, data, len);
		break;
	case OUTPUT_NET:
		if (dev < vm->nr_nets && virtio_net_send_frame(vm->nets[dev], data, len))
			vm->net_dropped++; /* the tap refused it: a frame lost on the wire */
		break;
	}
}

void vm_output_init(struct vm *vm)
{
	output_buffer_init(&vm->out, emit, vm);
	for (unsigned i = 0; i < OPTIONS_MAX_NETS; i++)
		vm->net_out[i] = (struct vm_net_out){.vm = vm, .index = i};
}

void vm_output(struct vm *vm, enum output_kind kind, const uint8_t *buf, size_t len)
{
	struct iovec iov = {(void *)buf, len};

	if (!__atomic_load_n(&vm->out_buffered, __ATOMIC_ACQUIRE)) {
		emit(vm, kind, 0, buf, len);
		return;
	}
	if (output_buffer_submit(&vm->out, kind, 0, &iov, 1))
		pr_warn("console output lost: out of memory");
}

static int net_output(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct vm_net_out *no = opaque;

	return output_buffer_submit(&no->vm->out, OUTPUT_NET, no->index, iov, iovcnt);
}

void vm_output_buffered(struct vm *vm)
{
	if (__atomic_load_n(&vm->out_buffered, __ATOMIC_ACQUIRE))
		return;
	for (unsigned i = 0; i < vm->nr_nets; i++)
		virtio_net_set_output(vm->nets[i], net_output, &vm->net_out[i]);
	__atomic_store_n(&vm->out_buffered, true, __ATOMIC_RELEASE);
}
