// SPDX-License-Identifier: MIT
/* One vCPU's KVM state into and out of the state tree (see kvm_state.h). */
#include "kvm_state.h"
#include "log.h"
#include "state.h"

#include <errno.h>
#include <libfdt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

#define MAX_MSRS  1024 /* KVM lists ~40-100 */
#define MSR_CHUNK 128  /* KVM refuses 256 or more per KVM_GET/SET_MSRS */
#define MAX_CPUID 1024 /* KVM's own limit is 256 */
#define MAX_XSAVE (1u << 20)
#define EVENT_FLAGS_OK                                                                             \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                       \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD |      \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)

/* A parsed vCPU node: fixed structures copied out, arrays pointing into the tree. */
struct vcpu_node {
	struct kvm_regs regs;
	bool has_sregs2;
	struct kvm_sregs sregs;
	struct kvm_sregs2 sregs2;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_debugregs debugregs;
	uint32_t mp_state, tsc_khz;
	uint64_t realtime_ns;
	const void *xsave, *msrs, *cpuid;
	uint32_t xsave_size, nr_msrs, nr_cpuid;
};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The ioctl, with a line naming it when KVM refuses.  arg is only written by KVM_GET_*. */
static int vcpu_ioctl(int fd, unsigned long req, const void *arg, const char *what)
{
	if (ioctl(fd, req, (void *)arg) < 0) {
		int err = errno;

		pr_err("vCPU state: %s: %s", what, strerror(err));
		return -err;
	}
	return 0;
}

int kvm_vcpu_complete_io(int vcpu_fd, struct kvm_run *run)
{
	int ret = 0;

	__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (ioctl(vcpu_fd, KVM_RUN, 0) == 0) {
		ret = -EAGAIN; /* completing it needed another exit (split MMIO) */
	} else if (errno != EINTR) {
		ret = -errno;
		pr_err("vCPU state: KVM_RUN to complete I/O: %s", strerror(errno));
	}
	__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	return ret;
}

/* KVM_GET_CPUID2 needs room for every entry; grow until it fits. */
static int get_cpuid(int vcpu_fd, struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c = NULL;
	uint32_t cap;
	int ret = -E2BIG;

	for (cap = 64; cap <= MAX_CPUID; cap *= 2) {
		free(c);
		c = calloc(1, sizeof(*c) + cap * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = cap;
		if (ioctl(vcpu_fd, KVM_GET_CPUID2, c) == 0) {
			*out = c;
			return 0;
		}
		if (errno != E2BIG) {
			ret = -errno;
			break;
		}
	}
	free(c);
	pr_err("vCPU state: KVM_GET_CPUID2: %s", strerror(-ret));
	return ret;
}

static int msr_index_list(int kvm_fd, struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = {.nmsrs = 0}, *list;

	/* The first call fails with E2BIG and tells the count. */
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	if (probe.nmsrs > MAX_MSRS)
		return -E2BIG;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		free(list);
		return -errno;
	}
	*out = list;
	return 0;
}

/*
 * KVM_GET_MSRS returns how many entries it read and stops at the first MSR
 * this vCPU cannot read (one that depends on a CPUID feature it lacks, say):
 * drop that one and go on from the next.
 */
static int read_msrs(int vcpu_fd, const struct kvm_msr_list *list, struct kvm_msr_entry *out,
		     uint32_t *count)
{
	struct kvm_msrs *buf = calloc(1, sizeof(*buf) + MSR_CHUNK * sizeof(buf->entries[0]));
	uint32_t next = 0, n = 0, i, chunk;
	int got, ret = 0;

	if (!buf)
		return -ENOMEM;
	while (next < list->nmsrs) {
		chunk = list->nmsrs - next < MSR_CHUNK ? list->nmsrs - next : MSR_CHUNK;
		memset(buf->entries, 0, chunk * sizeof(buf->entries[0]));
		buf->nmsrs = chunk;
		for (i = 0; i < chunk; i++)
			buf->entries[i].index = list->indices[next + i];
		got = ioctl(vcpu_fd, KVM_GET_MSRS, buf);
		if (got < 0 || (uint32_t)got > chunk) {
			ret = got < 0 ? -errno : -EIO;
			break;
		}
		memcpy(&out[n], buf->entries, (size_t)got * sizeof(buf->entries[0]));
		n += (uint32_t)got;
		if ((uint32_t)got < chunk)
			pr_debug("vCPU state: MSR 0x%x not readable, not saved",
				 buf->entries[got].index);
		next += (uint32_t)got + ((uint32_t)got < chunk ? 1 : 0);
	}
	free(buf);
	*count = n;
	return ret;
}

void kvm_vcpu_facts_forget(struct kvm_vcpu_facts *facts)
{
	free(facts->cpuid);
	free(facts->msrs);
	*facts = (struct kvm_vcpu_facts){0};
}

static int learn_facts(int vcpu_fd, int kvm_fd, struct kvm_vcpu_facts *f)
{
	int ret;

	kvm_vcpu_facts_forget(f);
	f->xsave2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	f->sregs2 = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0;
	f->tsc_khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (f->tsc_khz < 0)
		f->tsc_khz = 0; /* unknown: the load keeps the new host's rate */
	ret = get_cpuid(vcpu_fd, &f->cpuid);
	if (!ret) {
		ret = msr_index_list(kvm_fd, &f->msrs);
		if (ret)
			pr_err("vCPU state: KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
	}
	if (ret) {
		kvm_vcpu_facts_forget(f);
		return ret;
	}
	f->known = true;
	return 0;
}

void kvm_vcpu_capture_free(struct kvm_vcpu_capture *c)
{
	free(c->xsave);
	free(c->msrs);
	*c = (struct kvm_vcpu_capture){0};
}

/* The capture's buffers, sized for f; kept from one capture to the next. */
static int capture_buffers(const struct kvm_vcpu_facts *f, struct kvm_vcpu_capture *c)
{
	/* KVM_CAP_XSAVE2 tells the size KVM_GET_XSAVE2 writes (AMX makes it > 4 KiB). */
	size_t xsave_size = sizeof(struct kvm_xsave);
	uint32_t nmsrs = f->msrs->nmsrs ? f->msrs->nmsrs : 1;

	if (f->xsave2 > (int)xsave_size)
		xsave_size = (size_t)f->xsave2;
	if (xsave_size > MAX_XSAVE)
		return -E2BIG;
	if (c->xsave_size != xsave_size) {
		free(c->xsave);
		c->xsave = calloc(1, xsave_size);
		c->xsave_size = c->xsave ? xsave_size : 0;
		if (!c->xsave)
			return -ENOMEM;
	}
	if (c->msrs_room < nmsrs) {
		free(c->msrs);
		c->msrs = calloc(nmsrs, sizeof(*c->msrs));
		c->msrs_room = c->msrs ? nmsrs : 0;
		if (!c->msrs)
			return -ENOMEM;
	}
	return 0;
}

int kvm_vcpu_state_capture(int vcpu_fd, int kvm_fd, struct kvm_vcpu_facts *f,
			   struct kvm_vcpu_capture *c)
{
	int ret;

	if (!f->known && (ret = learn_facts(vcpu_fd, kvm_fd, f)))
		return ret;
	if ((ret = capture_buffers(f, c)))
		return ret;
	/* SREGS2 carries the PAE PDPTRs as the CPU cached them, and leaves the
	 * pending interrupt to the events, where it belongs. */
	if ((ret = vcpu_ioctl(vcpu_fd, KVM_GET_REGS, &c->regs, "KVM_GET_REGS")) ||
	    (ret = f->sregs2 ? vcpu_ioctl(vcpu_fd, KVM_GET_SREGS2, &c->sregs2, "KVM_GET_SREGS2")
			     : vcpu_ioctl(vcpu_fd, KVM_GET_SREGS, &c->sregs, "KVM_GET_SREGS")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_GET_XCRS, &c->xcrs, "KVM_GET_XCRS")) ||
	    (ret = f->xsave2 > 0 ? vcpu_ioctl(vcpu_fd, KVM_GET_XSAVE2, c->xsave, "KVM_GET_XSAVE2")
				 : vcpu_ioctl(vcpu_fd, KVM_GET_XSAVE, c->xsave, "KVM_GET_XSAVE")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_GET_LAPIC, &c->lapic, "KVM_GET_LAPIC")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &c->events, "KVM_GET_VCPU_EVENTS")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_GET_MP_STATE, &c->mp, "KVM_GET_MP_STATE")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &c->dbg, "KVM_GET_DEBUGREGS")))
		return ret;
	ret = read_msrs(vcpu_fd, f->msrs, c->msrs, &c->nr_msrs);
	/* The TSC is read with the MSRs: take the wall clock right after. */
	c->realtime_ns = realtime_ns();
	if (ret)
		pr_err("vCPU state: KVM_GET_MSRS: %s", strerror(-ret));
	return ret;
}

int kvm_vcpu_state_put(const struct kvm_vcpu_capture *c, const struct kvm_vcpu_facts *f, void *fdt)
{
	int ret;

	if ((ret = state_put_u32(fdt, "version", KVM_STATE_VERSION)) ||
	    (ret = state_put_bytes(fdt, "regs", &c->regs, sizeof(c->regs))) ||
	    (ret = f->sregs2 ? state_put_bytes(fdt, "sregs2", &c->sregs2, sizeof(c->sregs2))
			     : state_put_bytes(fdt, "sregs", &c->sregs, sizeof(c->sregs))) ||
	    (ret = state_put_bytes(fdt, "xcrs", &c->xcrs, sizeof(c->xcrs))) ||
	    (ret = state_put_u32(fdt, "xsave-size", (uint32_t)c->xsave_size)) ||
	    (ret = state_put_bytes(fdt, "xsave", c->xsave, c->xsave_size)) ||
	    (ret = state_put_bytes(fdt, "lapic", &c->lapic, sizeof(c->lapic))) ||
	    (ret = state_put_bytes(fdt, "events", &c->events, sizeof(c->events))) ||
	    (ret = state_put_u32(fdt, "mp-state", c->mp.mp_state)) ||
	    (ret = state_put_bytes(fdt, "debugregs", &c->dbg, sizeof(c->dbg))) ||
	    (ret = state_put_u32(fdt, "nr-cpuid", f->cpuid->nent)) ||
	    (ret = state_put_bytes(fdt, "cpuid", f->cpuid->entries,
				   f->cpuid->nent * sizeof(f->cpuid->entries[0]))) ||
	    (ret = state_put_u32(fdt, "tsc-khz", (uint32_t)f->tsc_khz)) ||
	    (ret = state_put_u32(fdt, "nr-msrs", c->nr_msrs)) ||
	    (ret = state_put_bytes(fdt, "msrs", c->msrs, c->nr_msrs * sizeof(c->msrs[0]))))
		return ret;
	return state_put_u64(fdt, "realtime-ns", c->realtime_ns);
}

int kvm_vcpu_state_save(int vcpu_fd, int kvm_fd, struct kvm_vcpu_facts *facts, void *fdt)
{
	struct kvm_vcpu_facts once = {0}, *f = facts ? facts : &once;
	struct kvm_vcpu_capture c = {0};
	int ret = kvm_vcpu_state_capture(vcpu_fd, kvm_fd, f, &c);

	if (!ret)
		ret = kvm_vcpu_state_put(&c, f, fdt);
	kvm_vcpu_capture_free(&c);
	if (f == &once)
		kvm_vcpu_facts_forget(&once);
	return ret;
}

/* An array property whose length must be count * elem, count <= max. */
static int get_array(const void *fdt, int node, const char *name, const char *count_name,
		     size_t elem, uint32_t max, const void **data, uint32_t *count)
{
	int len;

	if (state_get_u32(fdt, node, count_name, count) || *count > max)
		return -EINVAL;
	*data = fdt_getprop(fdt, node, name, &len);
	if (!*data || len < 0 || (size_t)len != *count * elem)
		return -EINVAL;
	return 0;
}

static int check_msrs(const struct vcpu_node *v)
{
	struct kvm_msr_entry e;
	uint32_t i;

	for (i = 0; i < v->nr_msrs; i++) {
		memcpy(&e, (const uint8_t *)v->msrs + i * sizeof(e), sizeof(e));
		if (e.reserved)
			return -EINVAL;
	}
	return 0;
}

static int parse(const void *fdt, int node, struct vcpu_node *v)
{
	uint32_t version;
	int have2, have1;

	memset(v, 0, sizeof(*v));
	if (state_get_u32(fdt, node, "version", &version) || version != KVM_STATE_VERSION)
		return -EINVAL;
	have2 = fdt_getprop(fdt, node, "sregs2", NULL) != NULL;
	have1 = fdt_getprop(fdt, node, "sregs", NULL) != NULL;
	if (have1 == have2)
		return -EINVAL; /* exactly one of the two */
	v->has_sregs2 = have2;
	if (state_get_bytes(fdt, node, "regs", &v->regs, sizeof(v->regs)) ||
	    (have2 && state_get_bytes(fdt, node, "sregs2", &v->sregs2, sizeof(v->sregs2))) ||
	    (have1 && state_get_bytes(fdt, node, "sregs", &v->sregs, sizeof(v->sregs))) ||
	    state_get_bytes(fdt, node, "xcrs", &v->xcrs, sizeof(v->xcrs)) ||
	    state_get_bytes(fdt, node, "lapic", &v->lapic, sizeof(v->lapic)) ||
	    state_get_bytes(fdt, node, "events", &v->events, sizeof(v->events)) ||
	    state_get_bytes(fdt, node, "debugregs", &v->debugregs, sizeof(v->debugregs)) ||
	    state_get_u32(fdt, node, "mp-state", &v->mp_state) ||
	    state_get_u32(fdt, node, "tsc-khz", &v->tsc_khz) ||
	    state_get_u64(fdt, node, "realtime-ns", &v->realtime_ns))
		return -EINVAL;
	if (get_array(fdt, node, "xsave", "xsave-size", 1, MAX_XSAVE, &v->xsave, &v->xsave_size) ||
	    v->xsave_size < sizeof(struct kvm_xsave) ||
	    get_array(fdt, node, "msrs", "nr-msrs", sizeof(struct kvm_msr_entry), MAX_MSRS,
		      &v->msrs, &v->nr_msrs) ||
	    get_array(fdt, node, "cpuid", "nr-cpuid", sizeof(struct kvm_cpuid_entry2), MAX_CPUID,
		      &v->cpuid, &v->nr_cpuid))
		return -EINVAL;
	/* What KVM refuses anyway, refused before KVM is touched. */
	if ((have2 && (v->sregs2.flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID)) ||
	    v->xcrs.nr_xcrs > KVM_MAX_XCRS || v->xcrs.flags ||
	    (v->events.flags & ~(uint32_t)EVENT_FLAGS_OK) || v->debugregs.flags ||
	    (v->debugregs.dr6 >> 32) || (v->debugregs.dr7 >> 32) || check_msrs(v))
		return -EINVAL;
	return 0;
}

int kvm_vcpu_state_check(const void *fdt, int node)
{
	struct vcpu_node v;

	return parse(fdt, node, &v);
}

static int load_cpuid(int vcpu_fd, const struct vcpu_node *v)
{
	size_t len = v->nr_cpuid * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + len);
	int ret;

	if (!c)
		return -ENOMEM;
	c->nent = v->nr_cpuid;
	memcpy(c->entries, v->cpuid, len);
	ret = vcpu_ioctl(vcpu_fd, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
	free(c);
	return ret;
}

static int load_tsc_khz(int vcpu_fd, const struct vcpu_node *v)
{
	int khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);

	if (!v->tsc_khz || khz == (int)v->tsc_khz)
		return 0;
	if (ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)v->tsc_khz) < 0) {
		int err = errno;
		long diff = labs((long)khz - (long)v->tsc_khz);

		/*
		 * Hosts of one model calibrate a little apart (seen: 780 ppm
		 * between two boots of one nested host).  Without scaling, a
		 * guest clock that runs that much fast or slow is drift its NTP
		 * corrects, not a reason to refuse the VM; beyond 0.1% it is.
		 */
		if (khz > 0 && diff * 1000 <= (long)v->tsc_khz) {
			pr_warn("vCPU state: the guest's TSC ran at %u kHz, this host's at %d kHz "
				"and it cannot scale (%s): the guest clock runs %ld ppm off",
				v->tsc_khz, khz, strerror(err), diff * 1000000 / (long)v->tsc_khz);
			return 0;
		}
		pr_err("vCPU state: KVM_SET_TSC_KHZ %u (host runs %d kHz): %s", v->tsc_khz, khz,
		       strerror(err));
		return -err;
	}
	return 0;
}

static int load_sregs(int vcpu_fd, int kvm_fd, const struct vcpu_node *v)
{
	struct kvm_sregs s;

	if (!v->has_sregs2)
		return vcpu_ioctl(vcpu_fd, KVM_SET_SREGS, &v->sregs, "KVM_SET_SREGS");
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0)
		return vcpu_ioctl(vcpu_fd, KVM_SET_SREGS2, &v->sregs2, "KVM_SET_SREGS2");
	/* Same layout up to apic_base; KVM reloads the PDPTRs from guest memory. */
	memset(&s, 0, sizeof(s));
	memcpy(&s, &v->sregs2, offsetof(struct kvm_sregs, interrupt_bitmap));
	return vcpu_ioctl(vcpu_fd, KVM_SET_SREGS, &s, "KVM_SET_SREGS");
}

/* KVM_SET_XSAVE reads as many bytes as KVM_CAP_XSAVE2 says: pad or trim (only zeros). */
static int load_xsave(int vcpu_fd, int kvm_fd, const struct vcpu_node *v)
{
	int host = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	size_t size =
	    host > (int)sizeof(struct kvm_xsave) ? (size_t)host : sizeof(struct kvm_xsave);
	const uint8_t *src = v->xsave;
	uint8_t *buf;
	size_t i;
	int ret;

	for (i = size; i < v->xsave_size; i++) {
		if (src[i]) {
			pr_err("vCPU state: XSAVE state of %u bytes, this host takes %zu",
			       v->xsave_size, size);
			return -EOPNOTSUPP;
		}
	}
	buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, src, v->xsave_size < size ? v->xsave_size : size);
	ret = vcpu_ioctl(vcpu_fd, KVM_SET_XSAVE, buf, "KVM_SET_XSAVE");
	free(buf);
	return ret;
}

static int set_msrs(int vcpu_fd, const struct kvm_msr_entry *e, uint32_t n)
{
	struct kvm_msrs *buf = calloc(1, sizeof(*buf) + MSR_CHUNK * sizeof(buf->entries[0]));
	uint32_t done = 0, chunk;
	int got, ret = 0;

	if (!buf)
		return -ENOMEM;
	while (!ret && done < n) {
		chunk = n - done < MSR_CHUNK ? n - done : MSR_CHUNK;
		buf->nmsrs = chunk;
		memcpy(buf->entries, &e[done], chunk * sizeof(e[0]));
		got = ioctl(vcpu_fd, KVM_SET_MSRS, buf);
		if (got < 0) {
			ret = -errno;
			pr_err("vCPU state: KVM_SET_MSRS: %s", strerror(errno));
		} else if ((uint32_t)got > chunk) {
			ret = -EIO;
		} else if ((uint32_t)got != chunk) {
			/* KVM stops at the first MSR it refuses and says how many it set. */
			pr_err("vCPU state: KVM_SET_MSRS refused MSR 0x%x = 0x%llx",
			       buf->entries[got].index, (unsigned long long)buf->entries[got].data);
			ret = -EINVAL;
		}
		done += chunk;
	}
	free(buf);
	return ret;
}

static uint64_t elapsed_ticks(const struct vcpu_node *v, unsigned flags)
{
	uint64_t now = realtime_ns();

	if (!(flags & KVM_STATE_CLOCK_ELAPSED) || now <= v->realtime_ns || !v->tsc_khz)
		return 0;
	return (uint64_t)((unsigned __int128)(now - v->realtime_ns) * v->tsc_khz / 1000000u);
}

/* Copy the MSRs out of the tree (aligned), advance the TSC if asked, set them. */
static int load_msrs(int vcpu_fd, const struct vcpu_node *v, unsigned flags,
		     const struct kvm_msr_entry **deadline, struct kvm_msr_entry **array)
{
	struct kvm_msr_entry *e = calloc(v->nr_msrs ? v->nr_msrs : 1, sizeof(*e));
	uint64_t ticks = elapsed_ticks(v, flags);
	uint32_t i;

	if (!e)
		return -ENOMEM;
	memcpy(e, v->msrs, v->nr_msrs * sizeof(*e));
	*array = e;
	*deadline = NULL;
	for (i = 0; i < v->nr_msrs; i++) {
		if (e[i].index == MSR_IA32_TSC)
			e[i].data += ticks;
		if (e[i].index == MSR_IA32_TSC_DEADLINE)
			*deadline = &e[i];
	}
	return set_msrs(vcpu_fd, e, v->nr_msrs);
}

int kvm_vcpu_state_load(int vcpu_fd, int kvm_fd, const void *fdt, int node, unsigned flags)
{
	const struct kvm_msr_entry *deadline;
	struct kvm_msr_entry *msrs = NULL;
	struct kvm_mp_state mp;
	struct vcpu_node *v;
	int ret;

	v = malloc(sizeof(*v));
	if (!v)
		return -ENOMEM;
	ret = parse(fdt, node, v);
	if (ret) {
		pr_err("vCPU state: malformed or unknown-version vCPU node");
		goto out;
	}
	mp.mp_state = v->mp_state;
	/* CPUID first: KVM checks EFER, CR4, XCR0 and the MSRs against it. */
	if ((ret = load_cpuid(vcpu_fd, v)) || (ret = load_tsc_khz(vcpu_fd, v)) ||
	    (ret = load_sregs(vcpu_fd, kvm_fd, v)) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_REGS, &v->regs, "KVM_SET_REGS")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_XCRS, &v->xcrs, "KVM_SET_XCRS")) ||
	    (ret = load_xsave(vcpu_fd, kvm_fd, v)) ||
	    (ret = load_msrs(vcpu_fd, v, flags, &deadline, &msrs)) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_LAPIC, &v->lapic, "KVM_SET_LAPIC")) ||
	    (deadline && (ret = set_msrs(vcpu_fd, deadline, 1))) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &v->events, "KVM_SET_VCPU_EVENTS")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_MP_STATE, &mp, "KVM_SET_MP_STATE")) ||
	    (ret = vcpu_ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &v->debugregs, "KVM_SET_DEBUGREGS")))
		pr_err("vCPU state: load stopped, the vCPU is partly loaded");
out:
	free(msrs);
	free(v);
	return ret;
}
