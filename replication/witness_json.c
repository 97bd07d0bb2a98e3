// SPDX-License-Identifier: MIT
/*
 * The pure half of the etcd witness: strict base64, a small JSON reader and
 * the parsers of the few etcd answers witness.c needs.  No I/O, no
 * allocation.  Everything here reads network input: every access is bounded
 * by n, the document is validated against the JSON grammar (RFC 8259) with a
 * nesting limit before anything is looked up, and lookups re-walk the
 * validated text with the same bounded scanner.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "witness.h"

/* ---- base64 ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int witness_b64_encode(const void *src, size_t n, char *dst, size_t dstlen)
{
	const unsigned char *p = src;
	size_t need, o = 0;

	if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
		return -ENOSPC;
	need = (n + 2) / 3 * 4;
	if (need + 1 > dstlen || need > INT_MAX)
		return -ENOSPC;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		dst[o++] = b64chars[(v >> 18) & 63];
		dst[o++] = b64chars[(v >> 12) & 63];
		dst[o++] = left > 1 ? b64chars[(v >> 6) & 63] : '=';
		dst[o++] = left > 2 ? b64chars[v & 63] : '=';
	}
	dst[o] = '\0';
	return (int)o;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Validate all of src, write at most dstlen bytes; returns the full decoded
 * length or -EINVAL.  Padding is required, only at the end, and the unused
 * bits before it must be zero (one encoding per value).
 */
static long b64_decode_bounded(const char *src, size_t n, unsigned char *dst, size_t dstlen)
{
	size_t o = 0;

	if (n % 4 || n / 4 * 3 > LONG_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		uint32_t x;
		unsigned char b[3];

		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)src[i + k];

			if (c == '=' && i + 4 == n && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad) /* data after '=' */
				return -EINVAL;
			v[k] = b64val(c);
			if (v[k] < 0)
				return -EINVAL;
		}
		x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		    (uint32_t)v[3];
		if ((pad == 2 && (x & 0xffff)) || (pad == 1 && (x & 0xff)))
			return -EINVAL;
		b[0] = (unsigned char)(x >> 16);
		b[1] = (unsigned char)(x >> 8);
		b[2] = (unsigned char)x;
		for (int k = 0; k < 3 - pad; k++, o++)
			if (o < dstlen)
				dst[o] = b[k];
	}
	return (long)o;
}

int witness_b64_decode(const char *src, size_t n, void *dst, size_t dstlen)
{
	long r = b64_decode_bounded(src, n, dst, dstlen);

	if (r < 0)
		return (int)r;
	if ((size_t)r > dstlen || r > INT_MAX)
		return -ENOSPC;
	return (int)r;
}

/* ---- JSON ---- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t n, size_t p)
{
	while (p < n && is_ws(s[p]))
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A string at s[*p] == '"'; *p ends after the closing quote. */
static int scan_string(const char *s, size_t n, size_t *p)
{
	size_t i = *p;

	if (i >= n || s[i] != '"')
		return -EPROTO;
	for (i++; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"') {
			*p = i + 1;
			return 0;
		}
		if (c < 0x20)
			return -EPROTO;
		if (c == '\\') {
			if (++i >= n)
				return -EPROTO;
			switch (s[i]) {
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				break;
			case 'u':
				if (n - i <= 4)
					return -EPROTO;
				for (int k = 1; k <= 4; k++)
					if (hexval(s[i + k]) < 0)
						return -EPROTO;
				i += 4;
				break;
			default:
				return -EPROTO;
			}
		}
	}
	return -EPROTO;
}

static int scan_number(const char *s, size_t n, size_t *p)
{
	size_t i = *p;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return -EPROTO;
	if (s[i] == '0') {
		i++;
	} else if (s[i] >= '1' && s[i] <= '9') {
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	} else {
		return -EPROTO;
	}
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return -EPROTO;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || s[i] < '0' || s[i] > '9')
			return -EPROTO;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	*p = i;
	return 0;
}

static int scan_literal(const char *s, size_t n, size_t *p, const char *lit)
{
	size_t l = strlen(lit);

	if (n - *p < l || memcmp(s + *p, lit, l))
		return -EPROTO;
	*p += l;
	return 0;
}

/* One value starting at s[*p] (no leading whitespace); *p ends after it. */
static int scan_value(const char *s, size_t n, size_t *p, int depth)
{
	size_t i = *p;
	int r;

	if (i >= n)
		return -EPROTO;
	switch (s[i]) {
	case '"':
		return scan_string(s, n, p);
	case 't':
		return scan_literal(s, n, p, "true");
	case 'f':
		return scan_literal(s, n, p, "false");
	case 'n':
		return scan_literal(s, n, p, "null");
	case '{':
	case '[': {
		char close = s[i] == '{' ? '}' : ']';
		bool obj = s[i] == '{';

		if (depth >= WITNESS_JSON_MAX_DEPTH)
			return -EPROTO;
		i = skip_ws(s, n, i + 1);
		if (i < n && s[i] == close) {
			*p = i + 1;
			return 0;
		}
		for (;;) {
			if (obj) {
				r = scan_string(s, n, &i);
				if (r)
					return r;
				i = skip_ws(s, n, i);
				if (i >= n || s[i] != ':')
					return -EPROTO;
				i = skip_ws(s, n, i + 1);
			}
			r = scan_value(s, n, &i, depth + 1);
			if (r)
				return r;
			i = skip_ws(s, n, i);
			if (i >= n)
				return -EPROTO;
			if (s[i] == close) {
				*p = i + 1;
				return 0;
			}
			if (s[i] != ',')
				return -EPROTO;
			i = skip_ws(s, n, i + 1);
		}
	}
	default:
		return scan_number(s, n, p);
	}
}

int witness_json_validate(const char *s, size_t n, size_t *root)
{
	size_t p;
	int r;

	if (!s || n > WITNESS_JSON_MAX_BODY)
		return -EPROTO;
	p = skip_ws(s, n, 0);
	*root = p;
	r = scan_value(s, n, &p, 0);
	if (r)
		return r;
	p = skip_ws(s, n, p);
	return p == n ? 0 : -EPROTO;
}

/*
 * Lookups run on a validated document, but still check every step: they
 * must be safe even if handed a position that is not a value.
 */
int witness_json_member(const char *s, size_t n, size_t obj, const char *name, size_t *val)
{
	size_t i = obj, nl = strlen(name);
	int r;

	if (i >= n || s[i] != '{')
		return -EPROTO;
	i = skip_ws(s, n, i + 1);
	if (i < n && s[i] == '}')
		return -ENOENT;
	for (;;) {
		size_t k = i, v;

		r = scan_string(s, n, &i);
		if (r)
			return r;
		/* keys with escapes never match: etcd's field names have none */
		bool match = i - k - 2 == nl && !memcmp(s + k + 1, name, nl);
		i = skip_ws(s, n, i);
		if (i >= n || s[i] != ':')
			return -EPROTO;
		v = i = skip_ws(s, n, i + 1);
		r = scan_value(s, n, &i, 1);
		if (r)
			return r;
		if (match) {
			*val = v;
			return 0;
		}
		i = skip_ws(s, n, i);
		if (i >= n)
			return -EPROTO;
		if (s[i] == '}')
			return -ENOENT;
		if (s[i] != ',')
			return -EPROTO;
		i = skip_ws(s, n, i + 1);
	}
}

int witness_json_index(const char *s, size_t n, size_t arr, unsigned idx, size_t *val)
{
	size_t i = arr;
	int r;

	if (i >= n || s[i] != '[')
		return -EPROTO;
	i = skip_ws(s, n, i + 1);
	if (i < n && s[i] == ']')
		return -ENOENT;
	for (unsigned k = 0;; k++) {
		size_t v = i;

		r = scan_value(s, n, &i, 1);
		if (r)
			return r;
		if (k == idx) {
			*val = v;
			return 0;
		}
		i = skip_ws(s, n, i);
		if (i >= n)
			return -EPROTO;
		if (s[i] == ']')
			return -ENOENT;
		if (s[i] != ',')
			return -EPROTO;
		i = skip_ws(s, n, i + 1);
	}
}

int witness_json_raw_string(const char *s, size_t n, size_t pos, const char **str, size_t *len)
{
	size_t e = pos;
	int r = scan_string(s, n, &e);

	if (r)
		return r;
	if (memchr(s + pos + 1, '\\', e - pos - 2))
		return -EPROTO;
	*str = s + pos + 1;
	*len = e - pos - 2;
	return 0;
}

int witness_json_string(const char *s, size_t n, size_t pos, char *buf, size_t len)
{
	size_t e = pos, o = 0;
	int r = scan_string(s, n, &e);

	if (r)
		return r;
	if (!len)
		return -ENOSPC;
	for (size_t i = pos + 1; i < e - 1; i++) {
		char c = s[i];

		if (c == '\\') {
			c = s[++i];
			switch (c) {
			case 'b':
				c = '\b';
				break;
			case 'f':
				c = '\f';
				break;
			case 'n':
				c = '\n';
				break;
			case 'r':
				c = '\r';
				break;
			case 't':
				c = '\t';
				break;
			case 'u': {
				unsigned u = 0;

				for (int k = 1; k <= 4; k++)
					u = u << 4 | (unsigned)hexval(s[i + k]);
				i += 4;
				c = u && u < 0x80 ? (char)u : '?';
				break;
			}
			default: /* '"', '\\', '/' */
				break;
			}
		} else if ((unsigned char)c >= 0x80) {
			c = '?';
		}
		if (o + 1 >= len)
			return -ENOSPC;
		buf[o++] = c;
	}
	buf[o] = '\0';
	return 0;
}

int witness_json_int64(const char *s, size_t n, size_t pos, int64_t *v)
{
	size_t i = pos, end;
	bool quoted = false, neg = false;
	uint64_t x = 0, lim;

	if (i >= n)
		return -EPROTO;
	if (s[i] == '"') {
		quoted = true;
		i++;
	}
	end = i;
	if (end < n && s[end] == '-') {
		neg = true;
		end++;
	}
	i = end;
	while (end < n && s[end] >= '0' && s[end] <= '9')
		end++;
	if (end == i || end - i > 1 + 19 || (s[i] == '0' && end - i > 1))
		return end - i > 20 ? -ERANGE : -EPROTO;
	if (quoted) {
		if (end >= n || s[end] != '"')
			return -EPROTO;
	} else if (end < n && (s[end] == '.' || s[end] == 'e' || s[end] == 'E')) {
		return -EPROTO;
	}
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (size_t k = i; k < end; k++) {
		unsigned d = (unsigned)(s[k] - '0');

		if (x > (lim - d) / 10)
			return -ERANGE;
		x = x * 10 + d;
	}
	if (neg)
		*v = x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x;
	else
		*v = (int64_t)x;
	return 0;
}

int witness_json_bool(const char *s, size_t n, size_t pos, bool *v)
{
	size_t p = pos;

	if (!scan_literal(s, n, &p, "true")) {
		*v = true;
		return 0;
	}
	p = pos;
	if (!scan_literal(s, n, &p, "false")) {
		*v = false;
		return 0;
	}
	return -EPROTO;
}

/* ---- etcd answers ---- */

/* An optional int64 member: 0 when absent (proto3 JSON leaves zero out). */
static int opt_int64(const char *s, size_t n, size_t obj, const char *name, int64_t *v)
{
	size_t p;
	int r = witness_json_member(s, n, obj, name, &p);

	*v = 0;
	if (r == -ENOENT)
		return 0;
	if (r)
		return r;
	r = witness_json_int64(s, n, p, v);
	return r == -ERANGE ? -EPROTO : r;
}

static int root_object(const char *s, size_t n, size_t *root)
{
	int r = witness_json_validate(s, n, root);

	if (r)
		return r;
	return s[*root] == '{' ? 0 : -EPROTO;
}

int witness_parse_error(const char *s, size_t n, int *code, char *msg, size_t msglen)
{
	size_t root, p;
	int64_t c;
	int r = root_object(s, n, &root);

	if (r)
		return r;
	if (msglen)
		msg[0] = '\0';
	*code = 0;
	/* the unary form: {"error":"..","message":"..","code":N} */
	r = witness_json_member(s, n, root, "code", &p);
	if (r == -ENOENT) {
		/* the streaming form: {"error":{"grpc_code":N,"message":".."}} */
		size_t e;

		if (witness_json_member(s, n, root, "error", &e) || s[e] != '{')
			return 0;
		root = e;
		r = witness_json_member(s, n, root, "grpc_code", &p);
		if (r == -ENOENT)
			r = witness_json_member(s, n, root, "code", &p);
		if (r)
			return r == -ENOENT ? 0 : r;
	} else if (r) {
		return r;
	}
	r = witness_json_int64(s, n, p, &c);
	if (r || c < 0 || c > 1000)
		return -EPROTO;
	*code = (int)c;
	if (msglen && !witness_json_member(s, n, root, "message", &p) && s[p] == '"' &&
	    witness_json_string(s, n, p, msg, msglen) == -ENOSPC)
		msg[msglen - 1] = '\0'; /* truncated is fine for a message */
	return 1;
}

int witness_parse_grant(const char *s, size_t n, int64_t *id, int64_t *ttl)
{
	size_t root, p;
	int r = root_object(s, n, &root);

	if (r)
		return r;
	if (witness_json_member(s, n, root, "ID", &p) || witness_json_int64(s, n, p, id) ||
	    *id <= 0)
		return -EPROTO;
	if (witness_json_member(s, n, root, "TTL", &p) || witness_json_int64(s, n, p, ttl) ||
	    *ttl <= 0)
		return -EPROTO;
	return 0;
}

int witness_parse_keepalive(const char *s, size_t n, int64_t *id, int64_t *ttl)
{
	size_t root, res;
	int r = root_object(s, n, &root);

	if (r)
		return r;
	if (witness_json_member(s, n, root, "result", &res) || s[res] != '{')
		return -EPROTO;
	r = opt_int64(s, n, res, "ID", id);
	if (!r)
		r = opt_int64(s, n, res, "TTL", ttl);
	if (r)
		return r;
	if (*ttl < 0)
		*ttl = 0;
	return 0;
}

/* The first entry of a "kvs" array in the object at obj. */
static int parse_kvs(const char *s, size_t n, size_t obj, struct witness_kv *kv)
{
	size_t kvs, e, p;
	const char *v;
	size_t vl;
	long dl;
	int r;

	memset(kv, 0, sizeof(*kv));
	r = witness_json_member(s, n, obj, "kvs", &kvs);
	if (r == -ENOENT)
		return 0; /* no key */
	if (r || s[kvs] != '[')
		return -EPROTO;
	r = witness_json_index(s, n, kvs, 0, &e);
	if (r == -ENOENT)
		return 0;
	if (r || s[e] != '{')
		return -EPROTO;
	kv->found = true;
	r = opt_int64(s, n, e, "lease", &kv->lease);
	if (r)
		return r;
	r = witness_json_member(s, n, e, "value", &p);
	if (r == -ENOENT)
		return 0; /* an empty value */
	if (r || witness_json_raw_string(s, n, p, &v, &vl))
		return -EPROTO;
	dl = b64_decode_bounded(v, vl, (unsigned char *)kv->value, sizeof(kv->value) - 1);
	if (dl < 0)
		return -EPROTO;
	if ((size_t)dl > sizeof(kv->value) - 1) {
		kv->truncated = true;
		dl = sizeof(kv->value) - 1;
	}
	kv->value_len = (size_t)dl;
	kv->value[dl] = '\0';
	return 0;
}

int witness_parse_range(const char *s, size_t n, struct witness_kv *kv)
{
	size_t root;
	int r = root_object(s, n, &root);

	if (r)
		return r;
	return parse_kvs(s, n, root, kv);
}

int witness_parse_txn(const char *s, size_t n, bool *succeeded, struct witness_kv *kv)
{
	size_t root, p, resp, rr;
	int r = root_object(s, n, &root);

	if (r)
		return r;
	memset(kv, 0, sizeof(*kv));
	*succeeded = false;
	r = witness_json_member(s, n, root, "succeeded", &p);
	if (!r)
		r = witness_json_bool(s, n, p, succeeded);
	else if (r == -ENOENT)
		r = 0;
	if (r)
		return -EPROTO;
	/* a txn always has a header; an answer without one is not etcd's */
	if (witness_json_member(s, n, root, "header", &p) || s[p] != '{')
		return -EPROTO;
	if (*succeeded)
		return 0;
	if (witness_json_member(s, n, root, "responses", &resp) || s[resp] != '[' ||
	    witness_json_index(s, n, resp, 0, &p) || s[p] != '{' ||
	    witness_json_member(s, n, p, "response_range", &rr) || s[rr] != '{')
		return -EPROTO;
	return parse_kvs(s, n, rr, kv);
}
