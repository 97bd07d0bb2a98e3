// SPDX-License-Identifier: MIT
/* The VM: KVM set-up, devices, vCPUs, the event loop and stopping. */
#include "vm.h"
#include "control.h"
#include "migrate.h"
#include "layout.h"
#include "log.h"
#include "mono_time.h"
#include "vcpu.h"
#include "virtio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->stop_reason == VM_STOP_NONE) {
		vm->stop_reason = reason;
		vm->exit_status = exit_status;
	}
	vm->stopping = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	event_loop_stop(&vm->loop);
}

/* Polling first for the vCPUs of a pause; a stop that takes longer sleeps. */
#define VM_PAUSE_POLL_NS 1000000ULL

int vm_pause(struct vm *vm)
{
	unsigned i, running = 0;
	bool stopping;

	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = true;
	vm->pause_start_ns = mono_ns();
	vm->pause_longest_ns = 0;
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->ncpus; i++) {
		vcpu_kick(&vm->vcpus[i]);
		running += vm->vcpus[i].started;
	}
	/* The vCPUs are out of the guest within microseconds: do not sleep through it. */
	mono_poll_u32(&vm->nr_parked, running, VM_PAUSE_POLL_NS);
	pthread_mutex_lock(&vm->lock);
	while (vm->nr_parked < running && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	stopping = vm->stopping;
	pthread_mutex_unlock(&vm->lock);
	/* A stopping VM's vCPUs leave instead of parking: nothing is still. */
	return stopping ? -ECANCELED : 0;
}

int vm_pause_with_loop(struct vm *vm)
{
	/* The loop heads for its park while the vCPUs leave the guest. */
	event_loop_park_request(&vm->loop);
	if (vm_pause(vm) == 0 && event_loop_park_wait(&vm->loop))
		return 0;
	event_loop_unpark(&vm->loop);
	vm_resume(vm);
	return -ECANCELED;
}

void vm_pause_share_work(struct vm *vm, void (*fn)(void *), void *arg)
{
	__atomic_store_n(&vm->park_work_arg, arg, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vm->park_work, fn, __ATOMIC_SEQ_CST);
	__atomic_store_n(&vm->park_work_open, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&vm->park_work_gen, 1, __ATOMIC_SEQ_CST);
	fn(arg);
	/* A helper counts itself busy, then checks it is still open: none is left behind. */
	__atomic_store_n(&vm->park_work_open, 0, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&vm->park_work_busy, __ATOMIC_SEQ_CST))
		mono_relax(); /* a helper preempted on a busy host needs this CPU */
}

uint64_t vm_last_pause_ns(struct vm *vm, uint64_t *count)
{
	uint64_t ns;

	pthread_mutex_lock(&vm->lock);
	ns = vm->last_pause_ns;
	*count = vm->pauses;
	pthread_mutex_unlock(&vm->lock);
	return ns;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

/* Interrupt lines of the in-kernel PIC and IOAPIC. */
static void kvm_set_irq(void *opaque, unsigned gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = {.irq = gsi, .level = level ? 1 : 0};

	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		pr_warn("KVM_IRQ_LINE %u: %s", gsi, strerror(errno));
}

static void on_poweroff(void *opaque, int status)
{
	vm_request_stop(opaque, VM_STOP_POWEROFF, status);
}

static void on_reset(void *opaque)
{
	vm_request_stop(opaque, VM_STOP_RESET, 0);
}

static void on_uart_output(void *opaque, const uint8_t *buf, size_t len)
{
	vm_output(opaque, OUTPUT_CONSOLE, buf, len);
}

/* Push pending console input into the guest (UART or hvc0), as much as it takes. */
static void feed_console(struct vm *vm)
{
	struct console *con = &vm->console;

	while (con->pending_off < con->pending_len) {
		size_t n = vm_console_input(vm, con->pending + con->pending_off,
					    con->pending_len - con->pending_off);
		if (n == 0)
			return;
		con->pending_off += n;
	}
}

static void on_stdin(void *opaque, uint32_t events);

static void watch_stdin(struct vm *vm, bool on)
{
	if (on == vm->stdin_watched || !vm->console.in_open)
		return;
	if (on)
		vm->stdin_watched =
		    event_loop_add(&vm->loop, vm->console.in_fd, EPOLLIN, on_stdin, vm) == 0;
	else
		vm->stdin_watched = event_loop_remove(&vm->loop, vm->console.in_fd) != 0;
}

static void on_stdin(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	int ret;

	(void)events;
	ret = console_read_input(&vm->console);
	if (ret == -ECANCELED) {
		pr_err("stopped by Ctrl-A x");
		vm_request_stop(vm, VM_STOP_SIGNAL, 0);
		return;
	}
	if (ret == -EPIPE) {
		/* EOF on stdin: the guest just gets no more input. */
		watch_stdin(vm, false);
		vm->console.in_open = false;
		return;
	}
	feed_console(vm);
	/* The device is full: wait for rx_space rather than spin on a readable fd. */
	if (vm->console.pending_off < vm->console.pending_len)
		watch_stdin(vm, false);
}

static void on_uart_rx_space(void *opaque)
{
	struct vm *vm = opaque;
	uint64_t one = 1;

	/* Called on a vCPU thread: hand over to the loop, which owns the console buffer. */
	if (write(vm->rx_space_fd, &one, sizeof(one)) < 0) {
		/* counter saturated: the loop is woken anyway */
	}
}

static void on_rx_space_event(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;

	(void)events;
	if (read(vm->rx_space_fd, &v, sizeof(v)) < 0)
		return;
	feed_console(vm);
	if (vm->console.pending_off >= vm->console.pending_len)
		watch_stdin(vm, true);
}

static void on_signal(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;

	(void)events;
	if (read(vm->signal_fd, &si, sizeof(si)) != sizeof(si))
		return;
	pr_warn("stopping the VM on signal %u (%s)", si.ssi_signo, strsignal((int)si.ssi_signo));
	vm_request_stop(vm, VM_STOP_SIGNAL, 128 + (int)si.ssi_signo);
}

static int open_kvm(struct vm *vm)
{
	int version, max_vcpus;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int ret = -errno;

		pr_err("/dev/kvm: %s (is KVM enabled and are you allowed to use it?)",
		       strerror(errno));
		return ret;
	}
	version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		pr_err("/dev/kvm: API version %d, need %d", version, KVM_API_VERSION);
		return -ENOTSUP;
	}
	static const struct {
		int cap;
		const char *name;
	} needed[] = {
	    {KVM_CAP_IRQCHIP, "in-kernel irqchip"},	{KVM_CAP_PIT2, "in-kernel PIT"},
	    {KVM_CAP_USER_MEMORY, "user memory"},	{KVM_CAP_SET_TSS_ADDR, "TSS address"},
	    {KVM_CAP_IMMEDIATE_EXIT, "immediate exit"}, {KVM_CAP_EXT_CPUID, "CPUID"},
	};
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, needed[i].cap) <= 0) {
			pr_err("/dev/kvm lacks %s (capability %d)", needed[i].name, needed[i].cap);
			return -ENOTSUP;
		}
	}
	max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus > 0 && vm->ncpus > (unsigned)max_vcpus) {
		pr_err("--cpus %u: this host's KVM allows at most %d vCPUs", vm->ncpus, max_vcpus);
		vm->input_error = true;
		return -EINVAL;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		pr_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -ENOTSUP;
	}
	return 0;
}

static int create_kvm_vm(struct vm *vm)
{
	struct kvm_pit_config pit = {.flags = 0};
	uint64_t identity = LAYOUT_KVM_IDENTITY_MAP;
	int i, ret;

	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_VM: %s", strerror(errno));
		return ret;
	}
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)LAYOUT_KVM_TSS) < 0) {
		ret = -errno;
		pr_err("KVM TSS/identity map set-up: %s", strerror(errno));
		return ret;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return ret;
	}
	/* KVM_SET_GSI_ROUTING replaces the irqchip's routes: the router keeps them all. */
	ret = msi_router_init(&vm->msi, vm->vm_fd);
	if (ret) {
		pr_err("MSI routing: %s", strerror(-ret));
		return ret;
	}
	vm->has_msi = true;
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_PIT2: %s", strerror(errno));
		return ret;
	}
	for (i = 0; i < vm->mem.nr_regions; i++) {
		ret = guest_mem_set_slot(&vm->mem, vm->vm_fd, i, 0);
		if (ret) {
			pr_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int create_devices(struct vm *vm)
{
	struct irq_line com1_irq = {.set_level = kvm_set_irq, .opaque = vm, .gsi = PORT_COM1_IRQ};
	struct irq_line kbd_irq = {.set_level = kvm_set_irq, .opaque = vm, .gsi = 1};
	struct irq_line aux_irq = {.set_level = kvm_set_irq, .opaque = vm, .gsi = 12};
	static const struct uart8250_ops uart_ops = {
	    .output = on_uart_output,
	    .rx_space = on_uart_rx_space,
	};
	int ret;

	ret = uart8250_init(&vm->com1, &vm->pio, PORT_COM1, com1_irq, &uart_ops, vm);
	vm->has_com1 = !ret;
	if (!ret)
		ret = i8042_init(&vm->i8042, &vm->pio, kbd_irq, aux_irq, on_reset, vm);
	vm->has_i8042 = vm->has_com1 && !ret;
	if (!ret)
		ret = power_init(&vm->power, &vm->pio, on_poweroff, vm);
	if (!ret)
		ret = pci_host_init(&vm->pci, &vm->pio, &vm->mmio);
	vm->has_pci = vm->has_i8042 && !ret;
	if (ret)
		pr_err("device set-up: %s", strerror(-ret));
	if (!ret)
		ret = vm_virtio_create(vm);
	return ret;
}

void vm_virtio_env(struct vm *vm, struct virtio_env *env)
{
	*env = (struct virtio_env){
	    .mem = &vm->mem,
	    .pci = &vm->pci,
	    .loop = &vm->loop,
	    .msi = &vm->msi,
	    .vm_fd = vm->vm_fd,
	};
}

static int setup_event_loop(struct vm *vm)
{
	sigset_t set;
	int ret;

	ret = event_loop_init(&vm->loop);
	if (ret)
		return ret;
	/* The stop signals arrive through the loop, not asynchronously (threads inherit the mask).
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	vm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0)
		return -errno;
	ret = event_loop_add(&vm->loop, vm->signal_fd, EPOLLIN, on_signal, vm);
	if (ret)
		return ret;
	vm->rx_space_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->rx_space_fd < 0)
		return -errno;
	ret = event_loop_add(&vm->loop, vm->rx_space_fd, EPOLLIN, on_rx_space_event, vm);
	if (ret)
		return ret;
	console_init(&vm->console, STDIN_FILENO, STDOUT_FILENO);
	watch_stdin(vm, true);
	/* A regular file or /dev/null on stdin cannot be polled: treat it as no input. */
	if (!vm->stdin_watched)
		vm->console.in_open = false;
	return 0;
}

int vm_create(struct vm *vm, const struct vm_options *opts)
{
	struct boot_config boot = {
	    .kernel_path = opts->kernel,
	    .initrd_path = opts->initrd,
	    .cmdline = opts->cmdline,
	    .ncpus = opts->ncpus,
	};
	unsigned i;
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->opts = opts;
	vm->ncpus = opts->ncpus;
	vm->kvm_fd = vm->vm_fd = vm->signal_fd = vm->rx_space_fd = -1;
	vm->loop.epfd = vm->loop.wake_fd = -1;
	vm->console.in_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	vm_output_init(vm);
	ret = fence_open(&vm->fence, opts, opts->listen ? "standby" : "primary");
	if (ret) {
		vm->input_error = true;
		goto fail;
	}

	ret = guest_mem_init(&vm->mem, opts->mem_size);
	if (ret) {
		pr_err("cannot allocate %llu MiB of guest RAM: %s",
		       (unsigned long long)(opts->mem_size >> 20), strerror(-ret));
		goto fail;
	}
	/* Bad kernel, initrd or command line is the user's input: status 2.  A restore has none. */
	ret = opts->kernel ? boot_load(&vm->mem, &boot, &vm->entry) : 0;
	if (ret) {
		vm->input_error = true;
		goto fail;
	}
	ret = open_kvm(vm);
	if (!ret)
		ret = create_kvm_vm(vm);
	if (ret)
		goto fail;
	if ((ret = bus_init(&vm->pio, "pio")) || (ret = bus_init(&vm->mmio, "mmio")))
		goto fail;
	ret = setup_event_loop(vm);
	if (ret) {
		pr_err("event loop set-up: %s", strerror(-ret));
		goto fail;
	}
	ret = create_devices(vm);
	if (ret)
		goto fail;
	if (opts->control_path) {
		ret = control_open(&vm->control, vm, opts->control_path);
		if (ret) {
			vm->input_error = true;
			goto fail;
		}
	}
	ret = vcpu_setup_signals();
	if (ret)
		goto fail;
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		ret = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < vm->ncpus; i++) {
		ret = vcpu_init(&vm->vcpus[i], vm, i);
		if (ret)
			goto fail;
	}
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

int vm_start(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		int ret = vcpu_start(&vm->vcpus[i]);

		if (ret) {
			pr_err("vCPU %u: cannot start thread: %s", i, strerror(-ret));
			vm_request_stop(vm, VM_STOP_ERROR, 1);
			return ret;
		}
	}
	if (vm->on_start)
		vm->on_start(vm);
	return 0;
}

enum vm_stop_reason vm_loop(struct vm *vm)
{
	int ret = event_loop_run(&vm->loop);

	if (ret) {
		pr_err("event loop: %s", strerror(-ret));
		vm_request_stop(vm, VM_STOP_ERROR, 1);
	}
	/* Whoever stopped the loop set vm->stopping; get every vCPU out of the guest. */
	vm_request_stop(vm, VM_STOP_ERROR, 1);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_join(&vm->vcpus[i]);
	/* The guest is still and its state intact: replication may hand it over. */
	if (vm->on_stop)
		vm->on_stop(vm);
	return vm->stop_reason;
}

enum vm_stop_reason vm_run(struct vm *vm)
{
	(void)vm_start(vm); /* a failed start has asked the loop to stop */
	return vm_loop(vm);
}

void vm_destroy(struct vm *vm)
{
	unsigned i;

	if (vm->vcpus) {
		pthread_mutex_lock(&vm->lock);
		vm->stopping = true;
		pthread_mutex_unlock(&vm->lock);
		for (i = 0; i < vm->ncpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	console_restore(&vm->console);
	migrate_join(vm);
	control_close(&vm->control);
	vm_virtio_destroy(vm);
	if (vm->has_pci)
		pci_host_destroy(&vm->pci);
	if (vm->has_i8042)
		i8042_destroy(&vm->i8042);
	if (vm->has_com1)
		uart8250_destroy(&vm->com1);
	vm->has_pci = vm->has_i8042 = vm->has_com1 = false;
	if (vm->loop.epfd >= 0)
		event_loop_destroy(&vm->loop);
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	if (vm->rx_space_fd >= 0)
		close(vm->rx_space_fd);
	vm->signal_fd = vm->rx_space_fd = -1;
	if (vm->pio.ranges || vm->pio.name)
		bus_destroy(&vm->pio);
	if (vm->mmio.ranges || vm->mmio.name)
		bus_destroy(&vm->mmio);
	if (vm->has_msi)
		msi_router_destroy(&vm->msi);
	vm->has_msi = false;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->vm_fd = vm->kvm_fd = -1;
	guest_mem_destroy(&vm->mem);
	output_buffer_destroy(&vm->out);
	/* The guest runs here no more: the other side may take the lease at once. */
	fence_close(&vm->fence, vm->stop_reason != VM_STOP_FENCED);
}
