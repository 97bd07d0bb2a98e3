// SPDX-License-Identifier: MIT
/* The VM's in-kernel devices and kvmclock into and out of the state tree (see kvm_state.h). */
#include "kvm_state.h"
#include "log.h"
#include "state.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define PIT_FLAGS_OK   (KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)
#define PIT_MAX_MODE   5
#define PIT_MODE_UNSET 0xff    /* KVM's value for a channel never programmed */
#define PIT_MAX_COUNT  0x10000 /* a programmed 0 counts 65536 */

struct vm_node {
	struct kvm_pic_state pic[2];
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	uint64_t clock, realtime_ns;
	uint32_t clock_flags;
};

static const char *const chip_names[] = {"pic-master", "pic-slave", "ioapic"};
static const char *const chip_set_what[] = {"KVM_SET_IRQCHIP pic-master",
					    "KVM_SET_IRQCHIP pic-slave", "KVM_SET_IRQCHIP ioapic"};

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int vm_ioctl(int fd, unsigned long req, const void *arg, const char *what)
{
	if (ioctl(fd, req, (void *)arg) < 0) {
		int err = errno;

		pr_err("VM state: %s: %s", what, strerror(err));
		return -err;
	}
	return 0;
}

static int save_chip(int vm_fd, void *fdt, uint32_t id)
{
	struct kvm_irqchip chip;
	size_t len = id == KVM_IRQCHIP_IOAPIC ? sizeof(chip.chip.ioapic) : sizeof(chip.chip.pic);
	int ret;

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = id;
	ret = vm_ioctl(vm_fd, KVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP");
	return ret ? ret : state_put_bytes(fdt, chip_names[id], &chip.chip, len);
}

int kvm_vm_state_save(int vm_fd, void *fdt)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	uint64_t now;
	uint32_t id;
	int ret;

	ret = state_put_u32(fdt, "version", KVM_STATE_VERSION);
	for (id = KVM_IRQCHIP_PIC_MASTER; !ret && id <= KVM_IRQCHIP_IOAPIC; id++)
		ret = save_chip(vm_fd, fdt, id);
	if (ret || (ret = vm_ioctl(vm_fd, KVM_GET_PIT2, &pit, "KVM_GET_PIT2")))
		return ret;
	memset(&clock, 0, sizeof(clock));
	ret = vm_ioctl(vm_fd, KVM_GET_CLOCK, &clock, "KVM_GET_CLOCK");
	if (ret)
		return ret;
	/* KVM pairs the clock with CLOCK_REALTIME only on a TSC-based host clock. */
	now = clock.flags & KVM_CLOCK_REALTIME ? clock.realtime : realtime_ns();
	if ((ret = state_put_bytes(fdt, "pit2", &pit, sizeof(pit))) ||
	    (ret = state_put_u64(fdt, "clock", clock.clock)) ||
	    (ret = state_put_u32(fdt, "clock-flags", clock.flags)) ||
	    (ret = state_put_u64(fdt, "realtime-ns", now)))
		return ret;
	return 0;
}

static int check_pit(const struct kvm_pit_state2 *pit)
{
	int i;

	if (pit->flags & ~(uint32_t)PIT_FLAGS_OK)
		return -EINVAL;
	for (i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &pit->channels[i];

		if ((c->mode > PIT_MAX_MODE && c->mode != PIT_MODE_UNSET) ||
		    c->count > PIT_MAX_COUNT || c->rw_mode > 3 || c->read_state > 4 ||
		    c->write_state > 4 || c->bcd > 1 || c->gate > 1)
			return -EINVAL;
	}
	return 0;
}

static int parse(const void *fdt, int node, struct vm_node *v)
{
	uint32_t version;

	memset(v, 0, sizeof(*v));
	if (state_get_u32(fdt, node, "version", &version) || version != KVM_STATE_VERSION ||
	    state_get_bytes(fdt, node, "pic-master", &v->pic[0], sizeof(v->pic[0])) ||
	    state_get_bytes(fdt, node, "pic-slave", &v->pic[1], sizeof(v->pic[1])) ||
	    state_get_bytes(fdt, node, "ioapic", &v->ioapic, sizeof(v->ioapic)) ||
	    state_get_bytes(fdt, node, "pit2", &v->pit, sizeof(v->pit)) ||
	    state_get_u64(fdt, node, "clock", &v->clock) ||
	    state_get_u32(fdt, node, "clock-flags", &v->clock_flags) ||
	    state_get_u64(fdt, node, "realtime-ns", &v->realtime_ns))
		return -EINVAL;
	return check_pit(&v->pit);
}

int kvm_vm_state_check(const void *fdt, int node)
{
	struct vm_node v;

	return parse(fdt, node, &v);
}

/*
 * Snapshot: continue from the saved nanoseconds.  Elapsed: let KVM add the
 * wall time since the save (KVM_CLOCK_REALTIME, it never steps back), or add
 * it here where KVM cannot.
 */
static int load_clock(int vm_fd, const struct vm_node *v, unsigned flags)
{
	struct kvm_clock_data clock;
	int caps = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK);
	uint64_t now;

	memset(&clock, 0, sizeof(clock));
	clock.clock = v->clock;
	if (flags & KVM_STATE_CLOCK_ELAPSED) {
		if (caps > 0 && (caps & KVM_CLOCK_REALTIME)) {
			clock.flags = KVM_CLOCK_REALTIME;
			clock.realtime = v->realtime_ns;
		} else {
			now = realtime_ns();
			if (now > v->realtime_ns)
				clock.clock += now - v->realtime_ns;
		}
	}
	return vm_ioctl(vm_fd, KVM_SET_CLOCK, &clock, "KVM_SET_CLOCK");
}

int kvm_vm_state_load(int vm_fd, const void *fdt, int node, unsigned flags)
{
	struct kvm_irqchip chip;
	struct vm_node v;
	uint32_t id;
	int ret = parse(fdt, node, &v);

	if (ret) {
		pr_err("VM state: malformed or unknown-version VM node");
		return ret;
	}
	for (id = KVM_IRQCHIP_PIC_MASTER; id <= KVM_IRQCHIP_IOAPIC; id++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = id;
		if (id == KVM_IRQCHIP_IOAPIC)
			chip.chip.ioapic = v.ioapic;
		else
			chip.chip.pic = v.pic[id];
		ret = vm_ioctl(vm_fd, KVM_SET_IRQCHIP, &chip, chip_set_what[id]);
		if (ret)
			return ret;
	}
	ret = vm_ioctl(vm_fd, KVM_SET_PIT2, &v.pit, "KVM_SET_PIT2");
	return ret ? ret : load_clock(vm_fd, &v, flags);
}
