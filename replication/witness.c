// SPDX-License-Identifier: MIT
/*
 * The etcd witness (include/witness.h): a lease and one key per VM, over
 * etcd's v3 JSON gateway with libcurl.  The answers are parsed by the pure
 * helpers of witness_json.c.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "witness.h"

#define MAX_ENDPOINTS  16
#define MAX_URL	       256
#define KEY_MAX	       (sizeof("/vmm//active") + WITNESS_MAX_NAME)
#define B64LEN(n)      (((n) + 2) / 3 * 4 + 1)
#define MIN_TTL_MS     1000u
#define MAX_TTL_MS     3600000u
#define MIN_REQUEST_MS 100u

struct witness {
	CURL *curl;
	struct curl_slist *headers;
	char *endpoints[MAX_ENDPOINTS];
	unsigned nendpoints, cur;
	const char *prefix; /* "/v3" or "/v3beta" */
	bool prefix_checked;

	char key[KEY_MAX];
	char key_b64[B64LEN(KEY_MAX)];
	char holder[WITNESS_MAX_HOLDER + 1];
	size_t holder_len;
	char holder_b64[B64LEN(WITNESS_MAX_HOLDER)];

	unsigned ttl_ms, request_ms;
	int64_t granted_ttl;   /* seconds */
	int64_t lease;	       /* 0: none */
	int64_t lease_sent_ns; /* when the last successful grant/keepalive was sent */
	bool held, renew_failing;
	int64_t valid_until_ns; /* atomic; 0: not valid */

	char why[224]; /* what went wrong last, for the messages */
	long http_code;
	size_t body_len;
	bool body_overflow;
	char body[WITNESS_JSON_MAX_BODY];
	char request[4096];
	char url[MAX_URL + 64];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Boot time: monotonic and, unlike CLOCK_MONOTONIC, it keeps counting while
 * the host is suspended, as the lease on the etcd side does. */
static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct witness *w = arg;
	size_t n = size * nmemb;

	if (n > sizeof(w->body) - w->body_len) {
		w->body_overflow = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	memcpy(w->body + w->body_len, data, n);
	w->body_len += n;
	return n;
}

static int curl_errno(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	default:
		return -EIO;
	}
}

static const char *endpoint(struct witness *w)
{
	return w->endpoints[w->cur];
}

/*
 * POST w->request to <endpoint><prefix><path>.  0 with w->http_code and
 * w->body set, or a transport error.  The whole call, over every endpoint
 * tried, takes at most request_ms.
 */
static int http_post(struct witness *w, const char *path)
{
	int64_t deadline = now_ns() + (int64_t)w->request_ms * 1000000;
	int last = -ETIMEDOUT;

	snprintf(w->why, sizeof(w->why), "no time left to ask etcd");

	for (unsigned k = 0; k < w->nendpoints; k++) {
		unsigned idx = (w->cur + k) % w->nendpoints;
		int64_t left = (deadline - now_ns()) / 1000000;
		long per;
		CURLcode c;

		if (left < 1)
			break;
		per = (long)(left / (w->nendpoints - k));
		if (per < 1)
			per = 1;
	again:
		snprintf(w->url, sizeof(w->url), "%s%s%s", w->endpoints[idx], w->prefix, path);
		w->body_len = 0;
		w->body_overflow = false;
		w->http_code = 0;
		curl_easy_setopt(w->curl, CURLOPT_URL, w->url);
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, w->request);
		curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(w->request));
		curl_easy_setopt(w->curl, CURLOPT_TIMEOUT_MS, per);
		curl_easy_setopt(w->curl, CURLOPT_CONNECTTIMEOUT_MS, per);
		c = curl_easy_perform(w->curl);
		if (c == CURLE_WRITE_ERROR && w->body_overflow) {
			/* an endpoint answering that much is not etcd */
			snprintf(w->why, sizeof(w->why), "%s answered more than %d bytes",
				 w->endpoints[idx], WITNESS_JSON_MAX_BODY);
			return -EPROTO;
		}
		if (c != CURLE_OK) {
			last = curl_errno(c);
			snprintf(w->why, sizeof(w->why), "etcd at %s: %s", w->endpoints[idx],
				 curl_easy_strerror(c));
			continue;
		}
		curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &w->http_code);
		w->cur = idx;
		if (!w->prefix_checked) {
			size_t root;

			/* etcd 3.3 has no /v3: a plain-text 404 there.  Try once more
			 * on /v3beta with what is left of this endpoint's share. */
			if (w->http_code == 404 &&
			    witness_json_validate(w->body, w->body_len, &root) &&
			    !strcmp(w->prefix, "/v3")) {
				w->prefix = "/v3beta";
				w->prefix_checked = true;
				pr_info("witness: %s has no /v3 gateway, using /v3beta",
					w->endpoints[idx]);
				left = (deadline - now_ns()) / 1000000;
				if (left < 1)
					return -ETIMEDOUT;
				per = (long)left;
				goto again;
			}
			w->prefix_checked = true;
		}
		return 0;
	}
	return last;
}

static int grpc_errno(int code)
{
	switch (code) {
	case 5: /* NOT_FOUND: the lease */
		return -ENOENT;
	case 4: /* DEADLINE_EXCEEDED */
		return -ETIMEDOUT;
	case 14: /* UNAVAILABLE: no leader, or stopping */
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

/*
 * One etcd call: 0 with a 200 answer that is not an error in w->body, else
 * -errno (-ENOENT for etcd's NOT_FOUND, for the caller to interpret).
 */
static int etcd_call(struct witness *w, const char *path)
{
	char msg[160];
	int code, r = http_post(w, path);

	if (r)
		return r;
	r = witness_parse_error(w->body, w->body_len, &code, msg, sizeof(msg));
	if (r == 1) {
		snprintf(w->why, sizeof(w->why), "etcd at %s, %s: %s (code %d)", endpoint(w), path,
			 msg, code);
		return grpc_errno(code);
	}
	if (w->http_code != 200) {
		snprintf(w->why, sizeof(w->why), "etcd at %s, %s: HTTP %ld", endpoint(w), path,
			 w->http_code);
		return -EIO;
	}
	return 0;
}

static int malformed(struct witness *w, const char *what)
{
	snprintf(w->why, sizeof(w->why), "etcd at %s: malformed %s answer", endpoint(w), what);
	return -EPROTO;
}

static unsigned window_ms(struct witness *w, int64_t ttl_s)
{
	unsigned base = w->ttl_ms, margin;

	if (ttl_s > 0 && (uint64_t)ttl_s * 1000 < base)
		base = (unsigned)ttl_s * 1000;
	margin = base / 4 < 50 ? 50 : base / 4;
	return base > margin ? base - margin : 0;
}

static void set_valid(struct witness *w, int64_t ttl_s)
{
	int64_t until = w->lease_sent_ns + (int64_t)window_ms(w, ttl_s) * 1000000;

	__atomic_store_n(&w->valid_until_ns, until, __ATOMIC_RELEASE);
}

static void clear_valid(struct witness *w)
{
	__atomic_store_n(&w->valid_until_ns, 0, __ATOMIC_RELEASE);
}

bool witness_valid(struct witness *w)
{
	int64_t until = __atomic_load_n(&w->valid_until_ns, __ATOMIC_ACQUIRE);

	return until && now_ns() < until;
}

unsigned witness_valid_ms(struct witness *w)
{
	int64_t until = __atomic_load_n(&w->valid_until_ns, __ATOMIC_ACQUIRE), now = now_ns();

	return until && now < until ? (unsigned)((until - now) / 1000000) : 0;
}

static int lease_grant(struct witness *w)
{
	int64_t t0 = now_ns(), id, ttl;
	int r;

	snprintf(w->request, sizeof(w->request), "{\"TTL\":\"%u\"}", (w->ttl_ms + 999) / 1000);
	r = etcd_call(w, "/lease/grant");
	if (r)
		return r == -ENOENT ? -EIO : r;
	r = witness_parse_grant(w->body, w->body_len, &id, &ttl);
	if (r)
		return malformed(w, "lease/grant");
	w->lease = id;
	w->granted_ttl = ttl;
	w->lease_sent_ns = t0;
	return 0;
}

/* 0 (lease alive, lease_sent_ns updated), -ENOLCK (gone) or an error. */
static int lease_keepalive(struct witness *w, int64_t *ttl)
{
	int64_t t0 = now_ns(), id;
	int r;

	snprintf(w->request, sizeof(w->request), "{\"ID\":\"%lld\"}", (long long)w->lease);
	r = etcd_call(w, "/lease/keepalive");
	if (r)
		return r == -ENOENT ? -ENOLCK : r;
	r = witness_parse_keepalive(w->body, w->body_len, &id, ttl);
	if (r || (*ttl > 0 && id != w->lease))
		return malformed(w, "lease/keepalive");
	if (*ttl <= 0)
		return -ENOLCK;
	w->lease_sent_ns = t0;
	return 0;
}

static void lease_revoke(struct witness *w)
{
	int r;

	if (!w->lease)
		return;
	snprintf(w->request, sizeof(w->request), "{\"ID\":\"%lld\"}", (long long)w->lease);
	r = etcd_call(w, "/lease/revoke");
	if (r && r != -ENOENT)
		pr_debug("witness: revoking lease %lld: %s", (long long)w->lease, strerror(-r));
	w->lease = 0;
}

static int key_txn(struct witness *w, bool *mine)
{
	struct witness_kv kv;
	bool ok;
	int r;

	snprintf(
	    w->request, sizeof(w->request),
	    "{\"compare\":[{\"target\":\"CREATE\",\"result\":\"EQUAL\",\"key\":\"%s\","
	    "\"create_revision\":\"0\"}],"
	    "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\",\"lease\":\"%lld\"}}],"
	    "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
	    w->key_b64, w->key_b64, w->holder_b64, (long long)w->lease, w->key_b64);
	r = etcd_call(w, "/kv/txn");
	if (r)
		return r == -ENOENT ? -EIO : r;
	r = witness_parse_txn(w->body, w->body_len, &ok, &kv);
	if (r)
		return malformed(w, "kv/txn");
	/* Our own lease on the key: an earlier attempt whose answer was lost. */
	*mine = ok || (kv.found && kv.lease == w->lease);
	return 0;
}

int witness_acquire(struct witness *w, unsigned wait_ms)
{
	int64_t deadline = now_ns() + (int64_t)wait_ms * 1000000;
	unsigned poll = w->ttl_ms / 8;
	int last;

	if (w->held) {
		last = witness_renew(w);
		if (last != -ENOLCK)
			return last;
	}
	if (poll < 50)
		poll = 50;
	if (poll > 250)
		poll = 250;
	for (;;) {
		int64_t ttl, left;
		bool mine = false;
		int r;

		if (!w->lease) {
			r = lease_grant(w);
		} else {
			r = lease_keepalive(w, &ttl);
			if (r == -ENOLCK) {
				w->lease = 0;
				r = lease_grant(w);
			}
		}
		if (!r)
			r = key_txn(w, &mine);
		if (!r && mine) {
			w->held = true;
			w->renew_failing = false;
			set_valid(w, w->granted_ttl);
			pr_info("witness: %s held by %s (lease %lld, %lld s)", w->key, w->holder,
				(long long)w->lease, (long long)w->granted_ttl);
			return 0;
		}
		last = r ? r : -EBUSY;
		left = (deadline - now_ns()) / 1000000;
		if (left <= 0)
			break;
		sleep_ms(left < poll ? (unsigned)left : poll);
	}
	lease_revoke(w);
	if (last != -EBUSY)
		pr_warn("witness: cannot acquire %s: %s", w->key, w->why);
	return last;
}

int witness_renew(struct witness *w)
{
	int64_t ttl;
	int r;

	if (!w->held || !w->lease)
		return -ENOLCK;
	r = lease_keepalive(w, &ttl);
	if (!r) {
		set_valid(w, ttl);
		if (w->renew_failing)
			pr_warn("witness: etcd reachable again, %s still held", w->key);
		w->renew_failing = false;
		return 0;
	}
	if (r == -ENOLCK) {
		clear_valid(w);
		w->held = false;
		w->lease = 0;
		pr_err("witness: lost %s: the lease expired on etcd", w->key);
		return r;
	}
	if (!w->renew_failing)
		pr_warn("witness: cannot renew %s: %s (lease valid %u ms more)", w->key, w->why,
			witness_valid_ms(w));
	w->renew_failing = true;
	return r;
}

void witness_release(struct witness *w)
{
	clear_valid(w);
	w->held = false;
	w->renew_failing = false;
	lease_revoke(w);
}

int witness_holder(struct witness *w, char *buf, size_t len)
{
	struct witness_kv kv;
	size_t n;
	int r;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	snprintf(w->request, sizeof(w->request), "{\"key\":\"%s\"}", w->key_b64);
	r = etcd_call(w, "/kv/range");
	if (r)
		return r == -ENOENT ? -EIO : r;
	r = witness_parse_range(w->body, w->body_len, &kv);
	if (r)
		return malformed(w, "kv/range");
	if (!kv.found)
		return -ENOENT;
	n = kv.value_len < len - 1 ? kv.value_len : len - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)kv.value[i];

		buf[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	buf[n] = '\0';
	return kv.truncated || n < kv.value_len ? -ENOSPC : 0;
}

/* "/vmm/<name>/<suffix>", base64, into out (B64LEN(KEY_MAX + 32) bytes). */
static int side_key_b64(struct witness *w, const char *suffix, char *out, size_t outlen)
{
	char key[KEY_MAX + 32];
	size_t base = strlen(w->key) - strlen("active");
	int n;

	if (strlen(suffix) > 31 || strchr(suffix, '/'))
		return -EINVAL;
	n = snprintf(key, sizeof(key), "%.*s%s", (int)base, w->key, suffix);
	if (n < 0 || (size_t)n >= sizeof(key))
		return -EINVAL;
	return witness_b64_encode(key, (size_t)n, out, outlen) < 0 ? -EINVAL : 0;
}

int witness_mark(struct witness *w, const char *suffix, const char *value)
{
	char kb[B64LEN(KEY_MAX + 32)], vb[B64LEN(WITNESS_MAX_HOLDER)], op[1024];
	struct witness_kv kv;
	bool ok;
	int r;

	if (!w->held || !w->lease)
		return -ENOLCK;
	r = side_key_b64(w, suffix, kb, sizeof(kb));
	if (r)
		return r;
	if (value) {
		if (strlen(value) > WITNESS_MAX_HOLDER ||
		    witness_b64_encode(value, strlen(value), vb, sizeof(vb)) < 0)
			return -EINVAL;
		snprintf(op, sizeof(op), "{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}", kb,
			 vb);
	} else {
		snprintf(op, sizeof(op), "{\"request_delete_range\":{\"key\":\"%s\"}}", kb);
	}
	/* Only while our lease is on the active key: a fenced holder changes nothing. */
	snprintf(w->request, sizeof(w->request),
		 "{\"compare\":[{\"target\":\"LEASE\",\"result\":\"EQUAL\",\"key\":\"%s\","
		 "\"lease\":\"%lld\"}],\"success\":[%s],"
		 "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
		 w->key_b64, (long long)w->lease, op, w->key_b64);
	r = etcd_call(w, "/kv/txn");
	if (r)
		return r == -ENOENT ? -EIO : r;
	r = witness_parse_txn(w->body, w->body_len, &ok, &kv);
	if (r)
		return malformed(w, "kv/txn");
	return ok ? 0 : -ENOLCK;
}

int witness_read(struct witness *w, const char *suffix, char *buf, size_t len)
{
	char kb[B64LEN(KEY_MAX + 32)];
	struct witness_kv kv;
	int r;

	if (!len)
		return -ENOSPC;
	buf[0] = '\0';
	r = side_key_b64(w, suffix, kb, sizeof(kb));
	if (r)
		return r;
	snprintf(w->request, sizeof(w->request), "{\"key\":\"%s\"}", kb);
	r = etcd_call(w, "/kv/range");
	if (r)
		return r == -ENOENT ? -EIO : r;
	r = witness_parse_range(w->body, w->body_len, &kv);
	if (r)
		return malformed(w, "kv/range");
	if (!kv.found)
		return -ENOENT;
	if (kv.truncated || kv.value_len >= len)
		return -ENOSPC;
	memcpy(buf, kv.value, kv.value_len);
	buf[kv.value_len] = '\0';
	return 0;
}

unsigned witness_granted_ttl(struct witness *w)
{
	return (unsigned)w->granted_ttl;
}

const char *witness_api_prefix(struct witness *w)
{
	return w->prefix;
}

static int parse_endpoints(struct witness *w, const char *list, char *err, size_t errlen)
{
	const char *p = list;

	while (*p) {
		const char *e = strchr(p, ',');
		size_t l;

		if (!e)
			e = p + strlen(p);
		while (p < e && *p == ' ')
			p++;
		l = (size_t)(e - p);
		while (l && (p[l - 1] == ' ' || p[l - 1] == '/'))
			l--;
		if (l) {
			if (w->nendpoints == MAX_ENDPOINTS || l > MAX_URL) {
				snprintf(err, errlen, "too many or too long etcd endpoints");
				return -EINVAL;
			}
			if (strncmp(p, "http://", 7) && strncmp(p, "https://", 8)) {
				snprintf(err, errlen,
					 "etcd endpoint '%.*s' is not http:// or https://", (int)l,
					 p);
				return -EINVAL;
			}
			w->endpoints[w->nendpoints] = strndup(p, l);
			if (!w->endpoints[w->nendpoints])
				return -ENOMEM;
			w->nendpoints++;
		}
		p = *e ? e + 1 : e;
	}
	if (!w->nendpoints) {
		snprintf(err, errlen, "no etcd endpoint given");
		return -EINVAL;
	}
	return 0;
}

static bool printable(const char *s, bool allow_space_slash)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c >= 0x7f)
			return false;
		if (!allow_space_slash && (c == ' ' || c == '/'))
			return false;
	}
	return true;
}

int witness_open(struct witness **wp, const char *endpoints, const char *vm_name,
		 const char *holder_id, unsigned ttl_ms, char *err, size_t errlen)
{
	struct witness *w;
	size_t nl, hl;
	int r;

	*wp = NULL;
	if (errlen)
		err[0] = '\0';
	if (!endpoints || !vm_name || !holder_id)
		return -EINVAL;
	nl = strlen(vm_name);
	hl = strlen(holder_id);
	if (!nl || nl > WITNESS_MAX_NAME || !printable(vm_name, false)) {
		snprintf(err, errlen, "witness: VM name must be 1-%d printable characters, no '/'",
			 WITNESS_MAX_NAME);
		return -EINVAL;
	}
	if (!hl || hl > WITNESS_MAX_HOLDER || !printable(holder_id, true)) {
		snprintf(err, errlen, "witness: holder id must be 1-%d printable characters",
			 WITNESS_MAX_HOLDER);
		return -EINVAL;
	}
	if (ttl_ms < MIN_TTL_MS || ttl_ms > MAX_TTL_MS) {
		snprintf(err, errlen, "witness: lease TTL must be %u-%u ms", MIN_TTL_MS,
			 MAX_TTL_MS);
		return -EINVAL;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK) {
		snprintf(err, errlen, "witness: curl_global_init: %s",
			 curl_easy_strerror(curl_init_result));
		return -EIO;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	r = parse_endpoints(w, endpoints, err, errlen);
	if (r)
		goto fail;
	w->prefix = "/v3";
	w->ttl_ms = ttl_ms;
	w->request_ms = ttl_ms / 3 < MIN_REQUEST_MS ? MIN_REQUEST_MS : ttl_ms / 3;
	snprintf(w->key, sizeof(w->key), "/vmm/%s/active", vm_name);
	memcpy(w->holder, holder_id, hl + 1);
	w->holder_len = hl;
	if (witness_b64_encode(w->key, strlen(w->key), w->key_b64, sizeof(w->key_b64)) < 0 ||
	    witness_b64_encode(w->holder, hl, w->holder_b64, sizeof(w->holder_b64)) < 0) {
		r = -EINVAL;
		goto fail;
	}
	r = -ENOMEM;
	w->curl = curl_easy_init();
	w->headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (w->headers)
		w->headers = curl_slist_append(w->headers, "Expect:");
	if (!w->curl || !w->headers)
		goto fail;
	curl_easy_setopt(w->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(w->curl, CURLOPT_HTTPHEADER, w->headers);
	curl_easy_setopt(w->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(w->curl, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(w->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(w->curl, CURLOPT_NOPROXY, "*");
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(w->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(w->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	*wp = w;
	return 0;
fail:
	witness_close(w);
	if (r == -ENOMEM)
		snprintf(err, errlen, "witness: out of memory");
	return r;
}

void witness_close(struct witness *w)
{
	if (!w)
		return;
	if (w->curl && (w->held || w->lease))
		witness_release(w);
	if (w->curl)
		curl_easy_cleanup(w->curl);
	curl_slist_free_all(w->headers);
	for (unsigned i = 0; i < w->nendpoints; i++)
		free(w->endpoints[i]);
	free(w);
}
