// SPDX-License-Identifier: MIT
/* The VM's CONFIG and STATE trees: what machine it is, and everything it is doing. */
#include "vm_state.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_state.h"
#include "log.h"
#include "mono_time.h"
#include "state.h"
#include "vcpu.h"
#include "virtio_blk.h"
#include "virtio_console.h"
#include "virtio_net.h"
#include "virtio_rng.h"
#include "vm.h"

#define TREE_START_SIZE (256u << 10)

/* Build a tree with fill(), growing the buffer until it fits. */
static int build_tree(struct vm *vm, int (*fill)(struct vm *, void *), void **tree, size_t *len)
{
	size_t size = TREE_START_SIZE;
	void *buf = NULL;
	int ret;

	for (;;) {
		void *nbuf = realloc(buf, size);

		if (!nbuf) {
			free(buf);
			return -ENOMEM;
		}
		buf = nbuf;
		ret = state_tree_begin(buf, size);
		if (!ret)
			ret = fill(vm, buf);
		if (!ret)
			ret = state_tree_end(buf);
		if (ret != -ENOSPC || size >= (64u << 20))
			break;
		size *= 2;
	}
	if (ret) {
		free(buf);
		return ret;
	}
	*tree = buf;
	*len = fdt_totalsize(buf);
	return 0;
}

#define NODE_NAME_MAX 32

/* "base@index", or just "base" for index < 0. */
static const char *node_name(char *buf, const char *base, int index)
{
	if (index >= 0)
		snprintf(buf, NODE_NAME_MAX, "%s@%d", base, index);
	else
		snprintf(buf, NODE_NAME_MAX, "%s", base);
	return buf;
}

/* A node "base@index" filled by save(dev, fdt). */
static int save_node(void *fdt, const char *base, int index, int (*save)(void *, void *), void *dev)
{
	char name[NODE_NAME_MAX];
	int ret;

	ret = fdt_begin_node(fdt, node_name(name, base, index));
	if (ret)
		return ret == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
	ret = save(dev, fdt);
	if (ret)
		return ret;
	ret = fdt_end_node(fdt);
	return ret == -FDT_ERR_NOSPACE ? -ENOSPC : ret ? -EINVAL : 0;
}

/* ---- CONFIG ---- */

static int put_disk(void *opaque, void *fdt)
{
	const struct disk_option *d = opaque;
	int ret = state_put_string(fdt, "path", d->path);

	if (!ret)
		ret = state_put_u32(fdt, "readonly", d->readonly);
	if (!ret)
		ret = state_put_string(fdt, "serial", d->serial);
	return ret;
}

struct net_config {
	const struct net_option *opt;
	uint8_t mac[6];
};

static int put_net(void *opaque, void *fdt)
{
	const struct net_config *n = opaque;
	int ret = state_put_string(fdt, "tap", n->opt->tap);

	if (!ret)
		ret = state_put_bytes(fdt, "mac", n->mac, sizeof(n->mac));
	return ret;
}

static int put_console(void *opaque, void *fdt)
{
	const struct vm_options *o = opaque;
	int ret = state_put_u32(fdt, "kind", o->hvc);

	if (!ret && o->hvc_path)
		ret = state_put_string(fdt, "path", o->hvc_path);
	return ret;
}

static int fill_config(struct vm *vm, void *fdt)
{
	const struct vm_options *o = vm->opts;
	int ret = state_put_u32(fdt, "version", VM_STATE_VERSION);

	if (!ret)
		ret = state_put_u64(fdt, "mem-size", vm->mem.ram_size);
	if (!ret)
		ret = state_put_u32(fdt, "ncpus", vm->ncpus);
	if (!ret)
		ret = state_put_u32(fdt, "rng", vm->rng != NULL);
	for (unsigned i = 0; !ret && i < vm->nr_blks; i++)
		ret = save_node(fdt, "disk", (int)i, put_disk, (void *)&o->disks[i]);
	for (unsigned i = 0; !ret && i < vm->nr_nets; i++) {
		struct net_config n = {.opt = &o->nets[i]};

		virtio_net_get_mac(vm->nets[i], n.mac);
		ret = save_node(fdt, "net", (int)i, put_net, &n);
	}
	if (!ret && vm->hvc)
		ret = save_node(fdt, "console", -1, put_console, (void *)o);
	return ret;
}

int vm_config_save(struct vm *vm, void **tree, size_t *len)
{
	return build_tree(vm, fill_config, tree, len);
}

/* How many nodes "base@0", "base@1", ... the tree has (stops at the first gap). */
static unsigned count_nodes(const void *fdt, const char *base, unsigned max)
{
	char name[NODE_NAME_MAX];
	unsigned n = 0;

	while (n <= max) {
		snprintf(name, sizeof(name), "%s@%u", base, n);
		if (fdt_subnode_offset(fdt, 0, name) < 0)
			break;
		n++;
	}
	return n;
}

static int config_fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "snapshot configuration: %s", what);
	return -EINVAL;
}

static int apply_disks(const void *fdt, struct vm_options *o, char *err, size_t errlen)
{
	unsigned n = count_nodes(fdt, "disk", OPTIONS_MAX_DISKS);
	char name[32];

	if (n > OPTIONS_MAX_DISKS)
		return config_fail(err, errlen, "too many disks");
	if (o->nr_disks && o->nr_disks != n) {
		snprintf(err, errlen, "the saved VM has %u disk(s); --disk was given %u time(s)", n,
			 o->nr_disks);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct disk_option saved = {0};
		uint32_t ro;
		int node;

		snprintf(name, sizeof(name), "disk@%u", i);
		node = fdt_subnode_offset(fdt, 0, name);
		if (state_get_string(fdt, node, "path", saved.path, sizeof(saved.path)) ||
		    state_get_u32(fdt, node, "readonly", &ro) || ro > 1 ||
		    state_get_string(fdt, node, "serial", saved.serial, sizeof(saved.serial)))
			return config_fail(err, errlen, "a disk node is malformed");
		saved.readonly = ro;
		if (!o->nr_disks || i >= o->nr_disks) {
			o->disks[i] = saved;
			continue;
		}
		/* A different file is fine (the same disk elsewhere); a different kind is not. */
		if (o->disks[i].readonly != saved.readonly) {
			snprintf(err, errlen, "disk %u was %s when saved", i,
				 saved.readonly ? "read-only" : "writable");
			return -EINVAL;
		}
		if (!o->disks[i].serial[0])
			memcpy(o->disks[i].serial, saved.serial, sizeof(saved.serial));
	}
	o->nr_disks = n;
	return 0;
}

static int apply_nets(const void *fdt, struct vm_options *o, char *err, size_t errlen)
{
	unsigned n = count_nodes(fdt, "net", OPTIONS_MAX_NETS);
	char name[32];

	if (n > OPTIONS_MAX_NETS)
		return config_fail(err, errlen, "too many network cards");
	if (o->nr_nets && o->nr_nets != n) {
		snprintf(err, errlen,
			 "the saved VM has %u network card(s); --net was given %u time(s)", n,
			 o->nr_nets);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		uint8_t mac[6];
		char tap[sizeof(o->nets[i].tap)];
		int node;

		snprintf(name, sizeof(name), "net@%u", i);
		node = fdt_subnode_offset(fdt, 0, name);
		if (state_get_string(fdt, node, "tap", tap, sizeof(tap)) || !tap[0] ||
		    state_get_bytes(fdt, node, "mac", mac, sizeof(mac)))
			return config_fail(err, errlen, "a network node is malformed");
		if (i >= o->nr_nets)
			memcpy(o->nets[i].tap, tap, sizeof(tap));
		/* The guest knows its MAC: it must not change under it. */
		if (o->nets[i].mac_set && memcmp(o->nets[i].mac, mac, sizeof(mac))) {
			snprintf(err, errlen, "network card %u had another MAC when saved", i);
			return -EINVAL;
		}
		memcpy(o->nets[i].mac, mac, sizeof(mac));
		o->nets[i].mac_set = true;
	}
	o->nr_nets = n;
	return 0;
}

static int apply_console(const void *fdt, struct vm_options *o, char *err, size_t errlen)
{
	int node = fdt_subnode_offset(fdt, 0, "console");
	uint32_t kind;

	if (node < 0) {
		if (o->hvc != HVC_NONE)
			return config_fail(err, errlen, "the saved VM has no --console hvc");
		return 0;
	}
	if (state_get_u32(fdt, node, "kind", &kind) || kind == HVC_NONE || kind > HVC_SOCKET)
		return config_fail(err, errlen, "the console node is malformed");
	if (o->hvc != HVC_NONE)
		return 0; /* hvc0 on another backend: the guest cannot tell */
	o->hvc = (enum hvc_backend)kind;
	if (kind == HVC_FILE || kind == HVC_SOCKET) {
		if (state_get_string(fdt, node, "path", o->hvc_path_buf, sizeof(o->hvc_path_buf)) ||
		    !o->hvc_path_buf[0])
			return config_fail(err, errlen, "the console node has no path");
		o->hvc_path = o->hvc_path_buf;
	}
	return 0;
}

int vm_config_apply(const void *fdt, struct vm_options *o, char *err, size_t errlen)
{
	uint32_t version, ncpus, rng;
	uint64_t mem;
	int ret;

	if (state_get_u32(fdt, 0, "version", &version) || version != VM_STATE_VERSION) {
		snprintf(err, errlen, "snapshot configuration: missing or unknown version");
		return -EINVAL;
	}
	if (state_get_u64(fdt, 0, "mem-size", &mem) || state_get_u32(fdt, 0, "ncpus", &ncpus) ||
	    state_get_u32(fdt, 0, "rng", &rng) || rng > 1)
		return config_fail(err, errlen, "machine properties missing");
	if (mem < OPTIONS_MIN_MEM || mem > OPTIONS_MAX_MEM || mem % 4096 || ncpus == 0 ||
	    ncpus > OPTIONS_MAX_CPUS)
		return config_fail(err, errlen, "implausible RAM size or vCPU count");
	o->mem_size = mem;
	o->ncpus = ncpus;
	if (o->rng && !rng)
		return config_fail(err, errlen, "the saved VM has no --rng");
	o->rng = rng;
	ret = apply_disks(fdt, o, err, errlen);
	if (!ret)
		ret = apply_nets(fdt, o, err, errlen);
	if (!ret)
		ret = apply_console(fdt, o, err, errlen);
	return ret;
}

/* ---- STATE ---- */

void vm_state_quiesce(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_blks; i++)
		virtio_blk_quiesce(vm->blks[i]);
}

void vm_state_unquiesce(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nr_blks; i++)
		virtio_blk_resume(vm->blks[i]);
}

static int save_kvm(void *opaque, void *fdt)
{
	struct vm *vm = opaque;

	return kvm_vm_state_save(vm->vm_fd, fdt);
}

void vm_state_capture_start(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		__atomic_store_n(&vm->vcpus[i].capture_state, VCPU_CAPTURE_WANTED,
				 __ATOMIC_RELEASE);
}

/* Wait for vcpu's capture if one is running; true if one is there (DONE). */
static bool capture_settle(struct vcpu *vcpu)
{
	unsigned st;

	while ((st = __atomic_load_n(&vcpu->capture_state, __ATOMIC_ACQUIRE)) == VCPU_CAPTURE_BUSY)
		mono_relax(); /* its thread may need this CPU to finish */
	return st == VCPU_CAPTURE_DONE;
}

void vm_state_capture_end(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];
		unsigned wanted = VCPU_CAPTURE_WANTED;

		/* Not begun: nobody may begin it now.  Running: wait. */
		if (!__atomic_compare_exchange_n(&vcpu->capture_state, &wanted, VCPU_CAPTURE_IDLE,
						 false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			capture_settle(vcpu);
		__atomic_store_n(&vcpu->capture_state, VCPU_CAPTURE_IDLE, __ATOMIC_RELEASE);
	}
}

static int save_vcpu(void *opaque, void *fdt)
{
	struct vcpu *vcpu = opaque;

	vcpu_capture_claim(vcpu);  /* its own thread has not taken it up: read it here */
	if (!capture_settle(vcpu)) /* no capture asked for */
		return kvm_vcpu_state_save(vcpu->fd, vcpu->vm->kvm_fd, &vcpu->facts, fdt);
	/* Stays DONE until vm_state_save ends: a tree that grows is filled again from it. */
	return vcpu->capture_ret ? vcpu->capture_ret
				 : kvm_vcpu_state_put(&vcpu->capture, &vcpu->facts, fdt);
}

/* Typed adapters for the device save/load functions (no calls through cast pointers). */
#define DEVICE_ADAPTERS(dev, type)                                                                 \
	static int save_##dev(void *d, void *fdt)                                                  \
	{                                                                                          \
		return dev##_save((type *)d, fdt);                                                 \
	}                                                                                          \
	static int load_##dev(void *d, const void *fdt, int node)                                  \
	{                                                                                          \
		return dev##_load((type *)d, fdt, node);                                           \
	}
DEVICE_ADAPTERS(uart8250, struct uart8250)
DEVICE_ADAPTERS(i8042, struct i8042)
DEVICE_ADAPTERS(pci_host, struct pci_host)
DEVICE_ADAPTERS(power, struct power)
DEVICE_ADAPTERS(virtio_blk, struct virtio_blk)
DEVICE_ADAPTERS(virtio_net, struct virtio_net)
DEVICE_ADAPTERS(virtio_console, struct virtio_console)
DEVICE_ADAPTERS(virtio_rng, struct virtio_rng)

static int fill_state(struct vm *vm, void *fdt)
{
	int ret = state_put_u32(fdt, "version", VM_STATE_VERSION);

	if (!ret)
		ret = save_node(fdt, "kvm", -1, save_kvm, vm);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++)
		ret = save_node(fdt, "cpu", (int)i, save_vcpu, &vm->vcpus[i]);
	if (!ret)
		ret = save_node(fdt, "pci", -1, save_pci_host, &vm->pci);
	if (!ret)
		ret = save_node(fdt, "com1", -1, save_uart8250, &vm->com1);
	if (!ret)
		ret = save_node(fdt, "i8042", -1, save_i8042, &vm->i8042);
	if (!ret)
		ret = save_node(fdt, "power", -1, save_power, &vm->power);
	for (unsigned i = 0; !ret && i < vm->nr_blks; i++)
		ret = save_node(fdt, "virtio-blk", (int)i, save_virtio_blk, vm->blks[i]);
	for (unsigned i = 0; !ret && i < vm->nr_nets; i++)
		ret = save_node(fdt, "virtio-net", (int)i, save_virtio_net, vm->nets[i]);
	if (!ret && vm->hvc)
		ret = save_node(fdt, "virtio-console", -1, save_virtio_console, vm->hvc);
	if (!ret && vm->rng)
		ret = save_node(fdt, "virtio-rng", -1, save_virtio_rng, vm->rng);
	return ret;
}

int vm_state_save(struct vm *vm, void **tree, size_t *len)
{
	int ret = build_tree(vm, fill_state, tree, len);

	vm_state_capture_end(vm);
	if (ret)
		pr_err("saving the VM state: %s", strerror(-ret));
	return ret;
}

/* The node "base@index" (or "base"), or -EINVAL with a message if it is missing. */
static int need_node(const void *fdt, const char *base, int index)
{
	char name[NODE_NAME_MAX];
	int node = fdt_subnode_offset(fdt, 0, node_name(name, base, index));

	if (node < 0) {
		pr_err("saved state has no %s node", name);
		return -EINVAL;
	}
	return node;
}

static int load_dev(const void *fdt, const char *base, int index,
		    int (*load)(void *, const void *, int), void *dev)
{
	char name[NODE_NAME_MAX];
	int node = need_node(fdt, base, index);
	int ret;

	if (node < 0)
		return node;
	ret = load(dev, fdt, node);
	if (ret)
		pr_err("loading %s: %s", node_name(name, base, index), strerror(-ret));
	return ret;
}

int vm_state_load(struct vm *vm, const void *fdt, unsigned flags)
{
	uint32_t version;
	int node, ret;

	if (state_get_u32(fdt, 0, "version", &version) || version != VM_STATE_VERSION) {
		pr_err("saved state: missing or unknown version");
		return -EINVAL;
	}
	/* Refuse a tree with the wrong number of vCPUs before touching anything. */
	if (need_node(fdt, "cpu", (int)vm->ncpus - 1) < 0 ||
	    fdt_subnode_offset(fdt, 0, "cpu@254") >= 0) {
		pr_err("saved state does not have %u vCPUs", vm->ncpus);
		return -EINVAL;
	}
	for (unsigned i = 0; i < vm->ncpus; i++) {
		node = need_node(fdt, "cpu", (int)i);
		if (node < 0 || kvm_vcpu_state_check(fdt, node))
			return -EINVAL;
	}
	node = need_node(fdt, "kvm", -1);
	if (node < 0 || kvm_vm_state_check(fdt, node))
		return -EINVAL;
	ret = kvm_vm_state_load(vm->vm_fd, fdt, node, flags);
	for (unsigned i = 0; !ret && i < vm->ncpus; i++) {
		kvm_vcpu_facts_forget(
		    &vm->vcpus[i].facts); /* CPUID and TSC rate come from the tree */
		ret = kvm_vcpu_state_load(vm->vcpus[i].fd, vm->kvm_fd, fdt,
					  need_node(fdt, "cpu", (int)i), flags);
	}
	/* The host first: it refuses a tree from a machine with other PCI functions. */
	if (!ret)
		ret = load_dev(fdt, "pci", -1, load_pci_host, &vm->pci);
	if (!ret)
		ret = load_dev(fdt, "com1", -1, load_uart8250, &vm->com1);
	if (!ret)
		ret = load_dev(fdt, "i8042", -1, load_i8042, &vm->i8042);
	if (!ret)
		ret = load_dev(fdt, "power", -1, load_power, &vm->power);
	for (unsigned i = 0; !ret && i < vm->nr_blks; i++)
		ret = load_dev(fdt, "virtio-blk", (int)i, load_virtio_blk, vm->blks[i]);
	for (unsigned i = 0; !ret && i < vm->nr_nets; i++)
		ret = load_dev(fdt, "virtio-net", (int)i, load_virtio_net, vm->nets[i]);
	if (!ret && vm->hvc)
		ret = load_dev(fdt, "virtio-console", -1, load_virtio_console, vm->hvc);
	if (!ret && vm->rng)
		ret = load_dev(fdt, "virtio-rng", -1, load_virtio_rng, vm->rng);
	return ret;
}
