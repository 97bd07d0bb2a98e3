// SPDX-License-Identifier: MIT
/* Holding the VM's witness lease while the guest runs here, and stopping when it is lost. */
#include "fence.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "vm.h"
#include "witness.h"

#define DEFAULT_TTL_MS 2000

int fence_open(struct fence *f, const struct vm_options *opts, const char *role)
{
	char holder[128], host[64] = "host", err[256];
	int ret;

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->wlock, NULL);
	pthread_cond_init(&f->cond, NULL);
	if (!opts->witness)
		return 0;
	f->ttl_ms = opts->witness_ttl_ms ? opts->witness_ttl_ms : DEFAULT_TTL_MS;
	gethostname(host, sizeof(host) - 1);
	snprintf(holder, sizeof(holder), "%s:%d:%s", host, (int)getpid(), role);
	ret =
	    witness_open(&f->w, opts->witness, opts->vm_name, holder, f->ttl_ms, err, sizeof(err));
	if (ret)
		pr_err("--witness: %s", err);
	return ret;
}

static void fence_now(struct fence *f, const char *why)
{
	pthread_mutex_lock(&f->lock);
	bool first = !f->lost;

	__atomic_store_n(&f->lost, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&f->lock);
	if (!first)
		return;
	pr_err("witness: %s: stopping the guest here (another host may run it now)", why);
	vm_request_stop(f->vm, VM_STOP_FENCED, 1);
}

static void *renewer(void *arg)
{
	struct fence *f = arg;
	struct timespec ts;

	pthread_setname_np(pthread_self(), "witness");
	pthread_mutex_lock(&f->lock);
	while (!f->quit) {
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)f->ttl_ms * 1000000ULL / 4;

		ts.tv_sec += (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&f->cond, &f->lock, &ts);
		if (f->quit)
			break;
		pthread_mutex_unlock(&f->lock);
		pthread_mutex_lock(&f->wlock);
		int ret = witness_renew(f->w);
		pthread_mutex_unlock(&f->wlock);

		if (ret == -ENOLCK)
			fence_now(f, "the lease is lost");
		else if (ret && !witness_valid(f->w))
			fence_now(f, "cannot renew the lease in time");
		pthread_mutex_lock(&f->lock);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int fence_acquire(struct fence *f, struct vm *vm, unsigned wait_ms)
{
	char holder[128] = "?";
	int ret;

	f->vm = vm;
	if (!f->w)
		return 0;
	pthread_mutex_lock(&f->wlock);
	ret = witness_acquire(f->w, wait_ms);
	if (ret == -EBUSY)
		witness_holder(f->w, holder, sizeof(holder));
	pthread_mutex_unlock(&f->wlock);
	if (ret == -EBUSY) {
		pr_err("witness: the guest is active elsewhere (%s holds the lease)", holder);
		return ret;
	}
	if (ret) {
		pr_err("witness: cannot reach etcd to take the lease: %s", strerror(-ret));
		return ret;
	}
	pr_info("witness: holding the lease (TTL %u ms)", f->ttl_ms);
	ret = pthread_create(&f->renewer, NULL, renewer, f);
	if (ret)
		return -ret;
	f->renewing = true;
	return 0;
}

bool fence_allowed(struct fence *f)
{
	if (!f->w)
		return true;
	if (__atomic_load_n(&f->lost, __ATOMIC_ACQUIRE))
		return false;
	if (!f->vm || witness_valid(f->w))
		return true;
	/* Running on without proof of the lease would be silent split brain: stop instead. */
	fence_now(f, "the lease ran out before it could be renewed");
	return false;
}

int fence_set_session(struct fence *f, uint64_t session)
{
	char v[24];
	int ret;

	if (!f->w)
		return 0;
	snprintf(v, sizeof(v), "%016llx", (unsigned long long)session);
	pthread_mutex_lock(&f->wlock);
	ret = witness_mark(f->w, "protected-by", v);
	pthread_mutex_unlock(&f->wlock);
	return ret;
}

int fence_clear_session(struct fence *f)
{
	int ret = -ENOLCK;

	if (!f->w)
		return 0;
	/* Keep trying while the lease is ours: the alternative is output we may not release. */
	while (fence_allowed(f)) {
		pthread_mutex_lock(&f->wlock);
		ret = witness_mark(f->w, "protected-by", NULL);
		pthread_mutex_unlock(&f->wlock);
		if (ret != -EHOSTUNREACH && ret != -ETIMEDOUT && ret != -EIO)
			break;
		usleep(50000);
	}
	return ret;
}

int fence_check_session(struct fence *f, uint64_t session)
{
	char got[64], want[24];
	int ret;

	if (!f->w)
		return 0;
	snprintf(want, sizeof(want), "%016llx", (unsigned long long)session);
	pthread_mutex_lock(&f->wlock);
	ret = witness_read(f->w, "protected-by", got, sizeof(got));
	pthread_mutex_unlock(&f->wlock);
	if (ret == -ENOENT || (!ret && strcmp(got, want)))
		return -ESTALE;
	return ret;
}

unsigned fence_takeover_wait_ms(const struct fence *f)
{
	unsigned ttl;

	if (!f->w)
		return 0;
	/*
	 * The other side's lease ends at most its granted TTL after its last
	 * renew: whole seconds, at least etcd's minimum (2 s with the default
	 * election timeout), and etcd looks for expired leases every 500 ms.
	 */
	ttl = (f->ttl_ms + 999) / 1000 * 1000;
	if (witness_granted_ttl(f->w) * 1000 > ttl)
		ttl = witness_granted_ttl(f->w) * 1000;
	if (ttl < 2000)
		ttl = 2000;
	return ttl + 1500;
}

void fence_close(struct fence *f, bool release)
{
	pthread_mutex_lock(&f->lock);
	f->quit = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	if (f->renewing)
		pthread_join(f->renewer, NULL);
	f->renewing = false;
	if (f->w) {
		pthread_mutex_lock(&f->wlock);
		if (release)
			witness_release(f->w);
		witness_close(f->w);
		pthread_mutex_unlock(&f->wlock);
	}
	f->w = NULL;
}
