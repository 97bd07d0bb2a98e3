/* SPDX-License-Identifier: MIT */
/*
 * Split-brain arbiter: an etcd v3 lease that only the active side holds.
 *
 * One VM is one key, "/vmm/<vm_name>/active".  Whoever holds that key under
 * a live lease is the ONLY side allowed to run the guest and to release its
 * output.  The primary acquires it before it runs the guest and renews it;
 * the standby, before it takes over, acquires it too, and so waits until the
 * primary's lease has expired on the etcd side (that wait is the fencing
 * delay).  A primary that is cut off from etcd stops renewing; by its own
 * monotonic clock it knows when its lease may have expired and must stop the
 * guest before then (self-fencing, witness_valid()).
 *
 * etcd is reached through its v3 JSON gRPC gateway over HTTP with libcurl:
 * POST <prefix>/lease/grant, /lease/keepalive, /lease/revoke, /kv/txn and
 * /kv/range, keys and values base64 in JSON, int64 as decimal strings.  The
 * prefix is "/v3" (etcd 3.4 and later; Debian 12 ships 3.4.23); a server
 * answering a plain-text 404 there is retried once on "/v3beta" (etcd 3.3)
 * and the prefix that worked is kept.  The responses are parsed by a small
 * strict JSON reader (below, pure functions): the whole body is validated
 * against the JSON grammar, with bounded size and nesting, before any field
 * is read, so a malformed or hostile answer is an error (-EPROTO), never a
 * crash.
 *
 * Timing.  ttl_ms is what the caller wants; etcd's TTL is whole seconds, so
 * the lease asked for is ceil(ttl_ms / 1000) seconds (at least 1), and etcd
 * may grant more (its minimum is 1.5 election timeouts, rounded up: 2 s with
 * the default 1 s election timeout).  The fencing delay seen by the other
 * side is the granted TTL; the local validity is the shorter of ttl_ms and
 * the granted TTL, minus a safety margin (a quarter of it, at least 50 ms),
 * counted from the moment the grant or the last successful keepalive was
 * SENT (the lease on the server is extended no earlier than that).  So the
 * holder's own view of its lease always ends before etcd's does.  Every HTTP
 * request (connect and total, over all endpoints tried) is bounded by a
 * third of ttl_ms, at least 100 ms.  Call witness_renew() at least every
 * ttl_ms / 3.
 *
 * Endpoints: a comma-separated list of base URLs ("http://10.0.0.1:2379,
 * http://10.0.0.2:2379").  A request that cannot reach one endpoint tries the
 * next within the same time bound; the one that answered is tried first next
 * time.  Only http and https, no redirects, no proxy from the environment.
 *
 * Errors are -errno: -EHOSTUNREACH (no endpoint could be connected to, or
 * etcd answered "unavailable"), -ETIMEDOUT (no answer in time), -EIO (HTTP
 * failure or an unexpected etcd error), -EPROTO (an answer that is not what
 * etcd sends).  For every unreachable/timeout/IO error the caller must act as
 * if it did not hold the key: NOT start the guest, and stop it once
 * witness_valid() says false.
 *
 * Threads: curl_global_init() is done once, by a pthread_once inside
 * witness_open(); that is the only global state.  A witness is used by one
 * thread at a time, except witness_valid(), which may be called from any
 * thread at any time (it reads one atomic timestamp).
 */
#ifndef VMM_WITNESS_H
#define VMM_WITNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct witness;

#define WITNESS_MAX_NAME   128 /* vm_name: printable, no '/' */
#define WITNESS_MAX_HOLDER 255 /* holder_id: printable ASCII */

/*
 * Prepare a witness for vm_name held as holder_id; contacts nothing yet.
 * ttl_ms: 1000..3600000.  -EINVAL with a message in err for bad arguments,
 * -ENOMEM.
 */
int witness_open(struct witness **w, const char *endpoints, const char *vm_name,
		 const char *holder_id, unsigned ttl_ms, char *err, size_t errlen);

/*
 * Become the holder: grant a lease, then in one transaction create the key
 * (only if it does not exist: create_revision == 0) with value holder_id
 * under that lease.  If someone else holds it, keep our lease alive and
 * retry until wait_ms have passed (the other side's lease has to expire).
 * Returns 0 when we hold it (also when we already did: then it renews),
 * -EBUSY when someone else still holds it after wait_ms (witness_holder()
 * tells who), or an unreachable/timeout/IO error as above when etcd could
 * not be asked (the last one seen, if etcd never said "busy" meanwhile).
 * A failed acquire revokes the lease it granted.
 */
int witness_acquire(struct witness *w, unsigned wait_ms);

/*
 * Keep our lease alive.  0; -ENOLCK when we do not hold it or etcd says the
 * lease is gone (we lost the key: stop the guest NOW); -EHOSTUNREACH,
 * -ETIMEDOUT, -EIO, -EPROTO when etcd could not confirm it: the lease may
 * still be alive, witness_valid() says until when we may assume so.
 */
int witness_renew(struct witness *w);

/*
 * Whether, by our monotonic clock, the last successful grant/keepalive is
 * younger than the validity window (see Timing above).  False before the
 * first acquire, after -ENOLCK and after witness_release().
 */
bool witness_valid(struct witness *w);

/* Milliseconds of validity left (0 when !witness_valid). */
unsigned witness_valid_ms(struct witness *w);

/*
 * Give the key up at once for a clean handover or shutdown: revoke the lease
 * (the key goes with it).  Validity ends before the revoke is sent.  If etcd
 * cannot be reached the lease simply expires after its TTL.
 */
void witness_release(struct witness *w);

/*
 * Who holds the key now: its value copied to buf (NUL-terminated).  0;
 * -ENOENT when nobody holds it (buf is ""); -ENOSPC when buf is too small;
 * or a reachability error.
 */
int witness_holder(struct witness *w, char *buf, size_t len);

/*
 * A side record of the VM, "/vmm/<vm_name>/<suffix>" (no lease: it outlives
 * us): set it to value, or delete it (value NULL), only if we hold the
 * active key right now (one transaction comparing its lease).  0, -ENOLCK
 * (not the holder: nothing changed), -EINVAL, or an unreachable error.
 */
int witness_mark(struct witness *w, const char *suffix, const char *value);

/* Read a side record: 0, -ENOENT (none), -ENOSPC, or an unreachable error. */
int witness_read(struct witness *w, const char *suffix, char *buf, size_t len);

/* The lease TTL etcd granted, in seconds (0 before the first grant). */
unsigned witness_granted_ttl(struct witness *w);

/* The gateway prefix in use: "/v3" or "/v3beta". */
const char *witness_api_prefix(struct witness *w);

/* Release (if held) and free.  NULL is fine. */
void witness_close(struct witness *w);

/*
 * Pure helpers, exposed for the unit tests (no I/O, no allocation).
 */

/* Strict base64 (RFC 4648, padded).  Encode returns the length written
 * (without the NUL it adds) or -ENOSPC; decode returns the byte count or
 * -EINVAL (bad character, length or padding) / -ENOSPC. */
int witness_b64_encode(const void *src, size_t n, char *dst, size_t dstlen);
int witness_b64_decode(const char *src, size_t n, void *dst, size_t dstlen);

/* JSON reader: positions are byte offsets of a value in s[0..n).  The whole
 * document is validated first (depth at most WITNESS_JSON_MAX_DEPTH).
 * -EPROTO for malformed input, -ENOENT for a member or index not there. */
#define WITNESS_JSON_MAX_DEPTH 32
#define WITNESS_JSON_MAX_BODY  (64 * 1024)
int witness_json_validate(const char *s, size_t n, size_t *root);
int witness_json_member(const char *s, size_t n, size_t obj, const char *name, size_t *val);
int witness_json_index(const char *s, size_t n, size_t arr, unsigned idx, size_t *val);
/* A string value without escapes (base64 and decimal strings never have
 * any): its contents as a pointer into s and a length.  -EPROTO otherwise. */
int witness_json_raw_string(const char *s, size_t n, size_t pos, const char **str, size_t *len);
/* A string value decoded into buf (escapes resolved, non-ASCII as '?'). */
int witness_json_string(const char *s, size_t n, size_t pos, char *buf, size_t len);
/* An integer given as a JSON number or as a decimal string (int64 in
 * grpc-gateway JSON); -ERANGE on overflow, -EPROTO when not an integer. */
int witness_json_int64(const char *s, size_t n, size_t pos, int64_t *v);
int witness_json_bool(const char *s, size_t n, size_t pos, bool *v);

/* etcd answers.  Each returns -EPROTO for a malformed body. */

/* {"error":..,"message":..,"code":N}: 1 and the gRPC code in *code and the
 * message in msg when the body is an etcd error, 0 when it is not one. */
int witness_parse_error(const char *s, size_t n, int *code, char *msg, size_t msglen);
/* lease/grant: the lease ID and TTL (both required, TTL > 0). */
int witness_parse_grant(const char *s, size_t n, int64_t *id, int64_t *ttl);
/* lease/keepalive: {"result":{"ID":..,"TTL":..}}; *ttl 0 when the lease is
 * gone (etcd leaves TTL out then). */
int witness_parse_keepalive(const char *s, size_t n, int64_t *id, int64_t *ttl);

/* What a range (or a txn's failure branch) says about the key. */
struct witness_kv {
	bool found;
	int64_t lease;			    /* 0: none */
	bool truncated;			    /* the value was longer than value[] holds */
	char value[WITNESS_MAX_HOLDER + 1]; /* raw bytes, NUL-terminated */
	size_t value_len;
};
/* kv/range: kvs[0], if any. */
int witness_parse_range(const char *s, size_t n, struct witness_kv *kv);
/* kv/txn of witness_acquire: *succeeded, and when not, the key as read by
 * responses[0].response_range. */
int witness_parse_txn(const char *s, size_t n, bool *succeeded, struct witness_kv *kv);

#endif
