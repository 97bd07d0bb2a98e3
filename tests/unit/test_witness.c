// SPDX-License-Identifier: MIT
/*
 * The etcd witness without etcd: strict base64, the JSON reader and the
 * parsers of etcd's answers on good, malformed, truncated and hostile input
 * (every input is copied into an exactly sized heap buffer without a NUL so
 * ASan sees any read past it), the argument checks of witness_open, and the
 * network path against a scripted HTTP server on loopback (refused port,
 * garbage and oversized answers, a server that never answers, the /v3beta
 * fallback, an etcd error).  tests/unit/test_witness_etcd.c runs against a
 * real etcd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "witness.h"

/* The answers of etcd 3.4.23, captured from its gateway. */
static const char GRANT[] =
    "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"1\",\"raft_term\":\"2\"},\"ID\":"
    "\"4111120375103952645\",\"TTL\":\"2\"}";
static const char KEEPALIVE[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"1\",\"raft_term\":\"2\"},\"ID\":"
    "\"4111120375103952659\",\"TTL\":\"5\"}}\n";
static const char KEEPALIVE_GONE[] =
    "{\"result\":{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"4\",\"raft_term\":\"2\"},\"ID\":"
    "\"4111120375103952659\"}}\n";
static const char TXN_OK[] =
    "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"3\",\"raft_term\":\"2\"},\"succeeded\":true,"
    "\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"3\"}}}]}";
static const char TXN_BUSY[] =
    "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"2\",\"raft_term\":\"2\"},\"responses\":[{"
    "\"response_range\":{\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"Zm9v\","
    "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":"
    "\"aG9zdC1hOjQy\",\"lease\":\"4111120375103952659\"}],\"count\":\"1\"}}]}";
static const char RANGE[] =
    "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
    "\"13668033151171901709\",\"revision\":\"3\",\"raft_term\":\"2\"},\"kvs\":[{\"key\":"
    "\"YmFy\",\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\",\"value\":"
    "\"YmFy\",\"lease\":\"4111120375103952659\"}],\"count\":\"1\"}";
static const char RANGE_NONE[] = "{\"header\":{\"cluster_id\":\"15118495548433857066\","
				 "\"member_id\":\"13668033151171901709\",\"revision\":\"4\","
				 "\"raft_term\":\"2\"}}";
static const char ERR_NOTFOUND[] = "{\"error\":\"etcdserver: requested lease not found\","
				   "\"message\":\"etcdserver: requested lease not found\","
				   "\"code\":5}";

/* An exact-size copy without a terminating NUL; the parsers take (s, n). */
static char *dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	memcpy(p, s, n);
	return p;
}

/* ---- base64 ---- */

static void test_b64_vectors(void **state)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char buf[32];
	(void)state;

	for (unsigned i = 0; i < 7; i++) {
		int n = witness_b64_encode(plain[i], strlen(plain[i]), buf, sizeof(buf));

		assert_int_equal(n, strlen(enc[i]));
		assert_string_equal(buf, enc[i]);
		char *e = dup_exact(enc[i], strlen(enc[i]));
		n = witness_b64_decode(e, strlen(enc[i]), buf, sizeof(buf));
		free(e);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(buf, plain[i], n);
	}
}

static void test_b64_binary(void **state)
{
	unsigned char in[256], out[256];
	char enc[400];
	(void)state;

	for (int i = 0; i < 256; i++)
		in[i] = (unsigned char)(255 - i);
	for (size_t n = 0; n <= sizeof(in); n += 37) {
		int e = witness_b64_encode(in, n, enc, sizeof(enc));

		assert_true(e >= 0);
		assert_int_equal(witness_b64_decode(enc, (size_t)e, out, sizeof(out)), n);
		assert_memory_equal(in, out, n);
	}
}

static void test_b64_bad(void **state)
{
	static const char *const bad[] = {
	    "Z",
	    "Zg",
	    "Zg=",
	    "Zg=A",
	    "Z===",
	    "====",
	    "Zm9v=",
	    "Zg==Zm9v",
	    "Zm9v\n",
	    "Zm 9v",
	    "Zm9v!",
	    "Zh==" /* stray bits */,
	    "Zm9=" /* stray bits */,
	    "Zm-v" /* url alphabet */,
	    "Zm_v",
	};
	char buf[32];
	(void)state;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *e = dup_exact(bad[i], strlen(bad[i]));

		assert_int_equal(witness_b64_decode(e, strlen(bad[i]), buf, sizeof(buf)), -EINVAL);
		free(e);
	}
	/* a NUL inside */
	assert_int_equal(witness_b64_decode("Zm\0v", 4, buf, sizeof(buf)), -EINVAL);
	/* no room */
	assert_int_equal(witness_b64_decode("Zm9vYmFy", 8, buf, 5), -ENOSPC);
	assert_int_equal(witness_b64_encode("foobar", 6, buf, 8), -ENOSPC); /* no room for NUL */
	assert_int_equal(witness_b64_encode("foobar", 6, buf, 9), 8);
}

/* ---- JSON ---- */

static int validate(const char *s)
{
	size_t n = strlen(s), root;
	char *p = dup_exact(s, n);
	int r = witness_json_validate(p, n, &root);

	free(p);
	return r;
}

static void test_json_valid(void **state)
{
	static const char *const good[] = {
	    "{}",
	    " { } ",
	    "[]",
	    "0",
	    "-0",
	    "12.5e-3",
	    "1E+9",
	    "true",
	    "false",
	    "null",
	    "\"\"",
	    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\"",
	    "{\"a\":[1,{\"b\":null},\"x\"],\"c\":{}}",
	    "\r\n\t[ 1 , 2 ]\n",
	    "\"\xc3\xa9\"", /* UTF-8 passes through */
	};
	(void)state;

	for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(validate(good[i]), 0);
	assert_int_equal(validate(GRANT), 0);
	assert_int_equal(validate(TXN_BUSY), 0);
}

static void test_json_malformed(void **state)
{
	static const char *const bad[] = {
	    "",		 " ",	  "{",		"}",	 "[",	    "{\"a\"}",	  "{\"a\":}",
	    "{\"a\" 1}", "{a:1}", "{\"a\":1,}", "[1,]",	 "[,1]",    "[1 2]",	  "01",
	    "1.",	 ".5",	  "-",		"+1",	 "1e",	    "1e+",	  "0x10",
	    "tru",	 "nul",	  "True",	"\"abc", "\"\\x\"", "\"\\u12\"",  "\"\\u12G4\"",
	    "\"\t\"",	 "\"\\",  "{} x",	"{}{}",	 "[] []",   "{\"a\":1}}", "[[]",
	    "{'a':1}",	 "NaN",	  "Infinity",
	};
	(void)state;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (validate(bad[i]) != -EPROTO)
			fail_msg("accepted: %s", bad[i]);
	}
	/* NUL inside a document, and inside a string */
	size_t root;
	assert_int_equal(witness_json_validate("{}\0", 3, &root), -EPROTO);
	assert_int_equal(witness_json_validate("\"a\0b\"", 5, &root), -EPROTO);
	assert_int_equal(witness_json_validate(NULL, 0, &root), -EPROTO);
}

static void test_json_depth_and_size(void **state)
{
	char buf[256];
	size_t root;
	(void)state;

	/* WITNESS_JSON_MAX_DEPTH arrays nested: fine; one more: refused */
	for (int d = WITNESS_JSON_MAX_DEPTH; d <= WITNESS_JSON_MAX_DEPTH + 1; d++) {
		memset(buf, '[', d);
		memset(buf + d, ']', d);
		assert_int_equal(witness_json_validate(buf, 2 * d, &root),
				 d <= WITNESS_JSON_MAX_DEPTH ? 0 : -EPROTO);
	}
	/* deep hostile nesting far beyond the limit: refused without recursing */
	size_t big = 1 << 15;
	char *p = malloc(2 * big);
	assert_non_null(p);
	memset(p, '[', big);
	memset(p + big, ']', big);
	assert_int_equal(witness_json_validate(p, 2 * big, &root), -EPROTO);
	memset(p, '{', big);
	assert_int_equal(witness_json_validate(p, big, &root), -EPROTO);
	free(p);
	/* a body over the limit */
	size_t n = WITNESS_JSON_MAX_BODY + 1;
	p = malloc(n);
	assert_non_null(p);
	memset(p, ' ', n);
	p[0] = '0';
	assert_int_equal(witness_json_validate(p, n, &root), -EPROTO);
	assert_int_equal(witness_json_validate(p, n - 1, &root), 0);
	free(p);
}

static void test_json_lookup(void **state)
{
	const char *doc = "{\"a\":{\"b\":[10,\"x\",{\"c\":true}]},\"d\":1,\"d\":2,\"e\\u0073\":3}";
	size_t n = strlen(doc), root, a, b, v;
	char *s = dup_exact(doc, n);
	int64_t x;
	bool t;
	(void)state;

	assert_int_equal(witness_json_validate(s, n, &root), 0);
	assert_int_equal(witness_json_member(s, n, root, "a", &a), 0);
	assert_int_equal(witness_json_member(s, n, a, "b", &b), 0);
	assert_int_equal(witness_json_index(s, n, b, 0, &v), 0);
	assert_int_equal(witness_json_int64(s, n, v, &x), 0);
	assert_int_equal(x, 10);
	assert_int_equal(witness_json_index(s, n, b, 2, &v), 0);
	assert_int_equal(witness_json_member(s, n, v, "c", &v), 0);
	assert_int_equal(witness_json_bool(s, n, v, &t), 0);
	assert_true(t);
	assert_int_equal(witness_json_index(s, n, b, 3, &v), -ENOENT);
	assert_int_equal(witness_json_member(s, n, root, "zz", &v), -ENOENT);
	/* the first of duplicate members */
	assert_int_equal(witness_json_member(s, n, root, "d", &v), 0);
	assert_int_equal(witness_json_int64(s, n, v, &x), 0);
	assert_int_equal(x, 1);
	/* a key with an escape matches nothing */
	assert_int_equal(witness_json_member(s, n, root, "es", &v), -ENOENT);
	/* wrong kinds */
	assert_int_equal(witness_json_member(s, n, b, "x", &v), -EPROTO);
	assert_int_equal(witness_json_index(s, n, a, 0, &v), -EPROTO);
	assert_int_equal(witness_json_bool(s, n, b, &t), -EPROTO);
	/* positions out of range */
	assert_int_equal(witness_json_member(s, n, n, "a", &v), -EPROTO);
	assert_int_equal(witness_json_index(s, n, n + 100, 0, &v), -EPROTO);
	assert_int_equal(witness_json_int64(s, n, n, &x), -EPROTO);
	free(s);
	/* empty containers */
	assert_int_equal(witness_json_member("{ }", 3, 0, "a", &v), -ENOENT);
	assert_int_equal(witness_json_index("[ ]", 3, 0, 0, &v), -ENOENT);
}

static int int64_of(const char *s, int64_t *v)
{
	size_t n = strlen(s), root;
	char *p = dup_exact(s, n);
	int r = witness_json_validate(p, n, &root);

	if (!r)
		r = witness_json_int64(p, n, root, v);
	free(p);
	return r;
}

static void test_json_int64(void **state)
{
	int64_t v;
	(void)state;

	assert_int_equal(int64_of("\"123\"", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(int64_of("123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(int64_of("\"-5\"", &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(int64_of("\"0\"", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(int64_of("\"9223372036854775807\"", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(int64_of("-9223372036854775808", &v), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(int64_of("\"9223372036854775808\"", &v), -ERANGE);
	assert_int_equal(int64_of("\"-9223372036854775809\"", &v), -ERANGE);
	assert_int_equal(int64_of("\"18446744073709551616\"", &v), -ERANGE);
	assert_int_equal(int64_of("99999999999999999999999999999", &v), -ERANGE);
	static const char *const bad[] = {"\"\"",   "\"-\"",   "\"12a\"", "\" 12\"", "\"12 \"",
					  "\"+1\"", "\"007\"", "1.5",	  "1e3",     "-0.0",
					  "true",   "null",    "[1]",	  "\"0x1\""};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (int64_of(bad[i], &v) != -EPROTO)
			fail_msg("accepted as int64: %s", bad[i]);
}

static void test_json_string(void **state)
{
	const char *doc = "[\"a\\\"b\\\\c\\/d\\n\\u0041\\u00e9\\u0000\xc3\xa9\",\"ab\\\\\"]";
	size_t n = strlen(doc), root, v;
	char *s = dup_exact(doc, n), buf[32];
	const char *raw;
	size_t rl;
	(void)state;

	assert_int_equal(witness_json_validate(s, n, &root), 0);
	assert_int_equal(witness_json_index(s, n, root, 0, &v), 0);
	assert_int_equal(witness_json_string(s, n, v, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a\"b\\c/d\nA???\?");
	assert_int_equal(witness_json_string(s, n, v, buf, 5), -ENOSPC);
	assert_int_equal(witness_json_string(s, n, v, buf, 0), -ENOSPC);
	/* raw strings refuse escapes */
	assert_int_equal(witness_json_raw_string(s, n, v, &raw, &rl), -EPROTO);
	assert_int_equal(witness_json_index(s, n, root, 1, &v), 0);
	assert_int_equal(witness_json_raw_string(s, n, v, &raw, &rl), -EPROTO);
	assert_int_equal(witness_json_raw_string(s, n, root, &raw, &rl), -EPROTO);
	free(s);
	assert_int_equal(witness_json_raw_string("\"Zm9v\"", 6, 0, &raw, &rl), 0);
	assert_int_equal(rl, 4);
	assert_memory_equal(raw, "Zm9v", 4);
}

/* ---- etcd answers ---- */

static void test_parse_grant(void **state)
{
	int64_t id, ttl;
	char *s = dup_exact(GRANT, strlen(GRANT));
	(void)state;

	assert_int_equal(witness_parse_grant(s, strlen(GRANT), &id, &ttl), 0);
	assert_true(id == 4111120375103952645LL);
	assert_int_equal(ttl, 2);
	free(s);
	static const char *const bad[] = {
	    "{\"ID\":\"1\"}",
	    "{\"TTL\":\"2\"}",
	    "{\"ID\":\"1\",\"TTL\":\"0\"}",
	    "{\"ID\":\"1\",\"TTL\":\"-1\"}",
	    "{\"ID\":\"0\",\"TTL\":\"2\"}",
	    "{\"ID\":\"x\",\"TTL\":\"2\"}",
	    "{\"ID\":\"99999999999999999999\",\"TTL\":\"2\"}",
	    "{\"ID\":[\"1\"],\"TTL\":\"2\"}",
	    "[{\"ID\":\"1\",\"TTL\":\"2\"}]",
	    "\"ID\"",
	    "Not Found",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = dup_exact(bad[i], strlen(bad[i]));
		if (witness_parse_grant(s, strlen(bad[i]), &id, &ttl) != -EPROTO)
			fail_msg("grant accepted: %s", bad[i]);
		free(s);
	}
}

static void test_parse_keepalive(void **state)
{
	int64_t id, ttl;
	(void)state;

	assert_int_equal(witness_parse_keepalive(KEEPALIVE, strlen(KEEPALIVE), &id, &ttl), 0);
	assert_true(id == 4111120375103952659LL);
	assert_int_equal(ttl, 5);
	assert_int_equal(witness_parse_keepalive(KEEPALIVE_GONE, strlen(KEEPALIVE_GONE), &id, &ttl),
			 0);
	assert_int_equal(ttl, 0);
	const char *neg = "{\"result\":{\"ID\":\"1\",\"TTL\":\"-1\"}}";
	assert_int_equal(witness_parse_keepalive(neg, strlen(neg), &id, &ttl), 0);
	assert_int_equal(ttl, 0);
	static const char *const bad[] = {
	    "{}",
	    "{\"ID\":\"1\",\"TTL\":\"5\"}", /* not inside result */
	    "{\"result\":null}",
	    "{\"result\":{\"ID\":\"1\",\"TTL\":\"abc\"}}",
	    "{\"result\":{\"ID\":\"1\",\"TTL\":true}}",
	    "{\"result\":{\"ID\":\"1\",\"TTL\":\"99999999999999999999\"}}",
	    "{\"result\":{\"ID\":\"1\",\"TTL\":\"5\"}}{\"result\":{}}",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *s = dup_exact(bad[i], strlen(bad[i]));

		if (witness_parse_keepalive(s, strlen(bad[i]), &id, &ttl) != -EPROTO)
			fail_msg("keepalive accepted: %s", bad[i]);
		free(s);
	}
}

static void test_parse_txn_range(void **state)
{
	struct witness_kv kv;
	bool ok;
	(void)state;

	assert_int_equal(witness_parse_txn(TXN_OK, strlen(TXN_OK), &ok, &kv), 0);
	assert_true(ok);
	assert_int_equal(witness_parse_txn(TXN_BUSY, strlen(TXN_BUSY), &ok, &kv), 0);
	assert_false(ok);
	assert_true(kv.found);
	assert_true(kv.lease == 4111120375103952659LL);
	assert_string_equal(kv.value, "host-a:42");
	assert_int_equal(kv.value_len, 9);
	assert_false(kv.truncated);

	assert_int_equal(witness_parse_range(RANGE, strlen(RANGE), &kv), 0);
	assert_true(kv.found);
	assert_string_equal(kv.value, "bar");
	assert_int_equal(witness_parse_range(RANGE_NONE, strlen(RANGE_NONE), &kv), 0);
	assert_false(kv.found);

	/* the key went away between compare and range: not found, no lease */
	const char *gone = "{\"header\":{},\"responses\":[{\"response_range\":{\"header\":{}}}]}";
	assert_int_equal(witness_parse_txn(gone, strlen(gone), &ok, &kv), 0);
	assert_false(ok);
	assert_false(kv.found);
	/* a key without a lease or a value */
	const char *bare = "{\"kvs\":[{\"key\":\"YQ==\"}]}";
	assert_int_equal(witness_parse_range(bare, strlen(bare), &kv), 0);
	assert_true(kv.found);
	assert_int_equal(kv.lease, 0);
	assert_int_equal(kv.value_len, 0);
	/* a binary value with a NUL keeps its length */
	const char *bin = "{\"kvs\":[{\"value\":\"YQBi\"}]}";
	assert_int_equal(witness_parse_range(bin, strlen(bin), &kv), 0);
	assert_int_equal(kv.value_len, 3);
	assert_memory_equal(kv.value, "a\0b", 3);

	/* a value longer than a holder id: truncated, flagged */
	char big[1200], enc[1700], doc[1800];
	memset(big, 'x', sizeof(big));
	assert_true(witness_b64_encode(big, sizeof(big), enc, sizeof(enc)) > 0);
	snprintf(doc, sizeof(doc), "{\"kvs\":[{\"value\":\"%s\",\"lease\":\"7\"}]}", enc);
	assert_int_equal(witness_parse_range(doc, strlen(doc), &kv), 0);
	assert_true(kv.truncated);
	assert_int_equal(kv.value_len, WITNESS_MAX_HOLDER);
	assert_int_equal(strlen(kv.value), WITNESS_MAX_HOLDER);
	assert_int_equal(kv.lease, 7);

	static const char *const badtxn[] = {
	    "{\"succeeded\":true}",				     /* no header */
	    "{\"header\":{},\"succeeded\":\"true\"}",		     /* not a bool */
	    "{\"header\":{}}",					     /* failed, no responses */
	    "{\"header\":{},\"responses\":[]}",			     /* no response */
	    "{\"header\":{},\"responses\":[{\"response_put\":{}}]}", /* not a range */
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":{}}}]}",
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":[1]}}]}",
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":[{\"value\":\"Zg\"}]}}]}",
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":[{\"value\":7}]}}]}",
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":[{\"lease\":\"x\"}]}}]}",
	    "{\"header\":{},\"responses\":[{\"response_range\":{\"kvs\":[{\"value\":\"Z\\u0067==\"}"
	    "]}}]}",
	};
	for (unsigned i = 0; i < sizeof(badtxn) / sizeof(badtxn[0]); i++) {
		char *s = dup_exact(badtxn[i], strlen(badtxn[i]));

		if (witness_parse_txn(s, strlen(badtxn[i]), &ok, &kv) != -EPROTO)
			fail_msg("txn accepted: %s", badtxn[i]);
		free(s);
	}
	assert_int_equal(witness_parse_range("[]", 2, &kv), -EPROTO);
	assert_int_equal(witness_parse_range("{\"kvs\":null}", 12, &kv), -EPROTO);
}

static void test_parse_error(void **state)
{
	char msg[64];
	int code;
	(void)state;

	assert_int_equal(
	    witness_parse_error(ERR_NOTFOUND, strlen(ERR_NOTFOUND), &code, msg, sizeof(msg)), 1);
	assert_int_equal(code, 5);
	assert_string_equal(msg, "etcdserver: requested lease not found");
	/* a short message buffer truncates */
	assert_int_equal(witness_parse_error(ERR_NOTFOUND, strlen(ERR_NOTFOUND), &code, msg, 11),
			 1);
	assert_string_equal(msg, "etcdserver");
	/* the streaming form */
	const char *st = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no "
			 "leader\",\"http_status\":\"Service Unavailable\"}}";
	assert_int_equal(witness_parse_error(st, strlen(st), &code, msg, sizeof(msg)), 1);
	assert_int_equal(code, 14);
	assert_string_equal(msg, "no leader");
	/* not errors */
	assert_int_equal(witness_parse_error(GRANT, strlen(GRANT), &code, msg, sizeof(msg)), 0);
	assert_int_equal(witness_parse_error(KEEPALIVE, strlen(KEEPALIVE), &code, msg, sizeof(msg)),
			 0);
	assert_int_equal(witness_parse_error("{\"error\":\"x\"}", 13, &code, msg, sizeof(msg)), 0);
	/* hostile codes */
	const char *big = "{\"code\":99999999999,\"message\":\"x\"}";
	assert_int_equal(witness_parse_error(big, strlen(big), &code, msg, sizeof(msg)), -EPROTO);
	const char *neg = "{\"code\":-1}";
	assert_int_equal(witness_parse_error(neg, strlen(neg), &code, msg, sizeof(msg)), -EPROTO);
	assert_int_equal(witness_parse_error("Not Found\n", 10, &code, msg, sizeof(msg)), -EPROTO);
}

typedef int (*parser_fn)(const char *s, size_t n);

static int p_grant(const char *s, size_t n)
{
	int64_t a, b;
	return witness_parse_grant(s, n, &a, &b);
}
static int p_keepalive(const char *s, size_t n)
{
	int64_t a, b;
	return witness_parse_keepalive(s, n, &a, &b);
}
static int p_txn(const char *s, size_t n)
{
	struct witness_kv kv;
	bool ok;
	return witness_parse_txn(s, n, &ok, &kv);
}
static int p_range(const char *s, size_t n)
{
	struct witness_kv kv;
	return witness_parse_range(s, n, &kv);
}
static int p_error(const char *s, size_t n)
{
	char m[16];
	int c;
	int r = witness_parse_error(s, n, &c, m, sizeof(m));
	return r == 1 ? 0 : r;
}

/*
 * Every truncation of every real answer is refused; every single-byte
 * mutation is parsed or refused, never read out of bounds (ASan).
 */
static void test_parse_truncated_and_mutated(void **state)
{
	static const struct {
		const char *doc;
		parser_fn fn;
	} cases[] = {
	    {GRANT, p_grant},	   {KEEPALIVE, p_keepalive}, {KEEPALIVE_GONE, p_keepalive},
	    {TXN_OK, p_txn},	   {TXN_BUSY, p_txn},	     {RANGE, p_range},
	    {RANGE_NONE, p_range}, {ERR_NOTFOUND, p_error},
	};
	static const char subst[] = "\0\"\\{}[],:0-9eE.tfn \x01\x7f\xff=A";
	parser_fn all[] = {p_grant, p_keepalive, p_txn, p_range, p_error};
	(void)state;

	for (unsigned c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t n = strlen(cases[c].doc), end = n;

		while (end && cases[c].doc[end - 1] == '\n')
			end--;
		assert_int_equal(cases[c].fn(cases[c].doc, n), 0);
		for (size_t l = 0; l < end; l++) {
			char *s = dup_exact(cases[c].doc, l);

			if (cases[c].fn(s, l) != -EPROTO)
				fail_msg("case %u accepted a truncation to %zu bytes", c, l);
			free(s);
		}
		for (size_t i = 0; i < n; i++) {
			for (size_t k = 0; k < sizeof(subst) - 1; k++) {
				char *s = dup_exact(cases[c].doc, n);

				s[i] = subst[k];
				for (unsigned f = 0; f < sizeof(all) / sizeof(all[0]); f++) {
					int r = all[f](s, n);

					assert_true(r == 0 || r == -EPROTO);
				}
				free(s);
			}
		}
	}
}

/* ---- witness_open ---- */

static void test_open_arguments(void **state)
{
	struct witness *w;
	char err[160], longname[WITNESS_MAX_NAME + 2], longholder[WITNESS_MAX_HOLDER + 2];
	(void)state;

	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memset(longholder, 'h', sizeof(longholder) - 1);
	longholder[sizeof(longholder) - 1] = '\0';
	const struct {
		const char *ep, *name, *holder;
		unsigned ttl;
	} bad[] = {
	    {"", "vm", "a", 1000},
	    {" , ,", "vm", "a", 1000},
	    {"127.0.0.1:2379", "vm", "a", 1000},
	    {"ftp://127.0.0.1:2379", "vm", "a", 1000},
	    {"http://127.0.0.1:2379,file:///etc/passwd", "vm", "a", 1000},
	    {"http://127.0.0.1:2379", "", "a", 1000},
	    {"http://127.0.0.1:2379", "a/b", "a", 1000},
	    {"http://127.0.0.1:2379", "a b", "a", 1000},
	    {"http://127.0.0.1:2379", "a\nb", "a", 1000},
	    {"http://127.0.0.1:2379", longname, "a", 1000},
	    {"http://127.0.0.1:2379", "vm", "", 1000},
	    {"http://127.0.0.1:2379", "vm", "a\x01", 1000},
	    {"http://127.0.0.1:2379", "vm", longholder, 1000},
	    {"http://127.0.0.1:2379", "vm", "a", 999},
	    {"http://127.0.0.1:2379", "vm", "a", 3600001},
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		w = (void *)1;
		if (witness_open(&w, bad[i].ep, bad[i].name, bad[i].holder, bad[i].ttl, err,
				 sizeof(err)) != -EINVAL)
			fail_msg("witness_open accepted case %u", i);
		assert_null(w);
		assert_true(err[0] != '\0');
	}
	longname[WITNESS_MAX_NAME] = '\0';
	longholder[WITNESS_MAX_HOLDER] = '\0';
	assert_int_equal(witness_open(&w, " http://127.0.0.1:1/ , https://[::1]:2", longname,
				      longholder, 1000, err, sizeof(err)),
			 0);
	assert_false(witness_valid(w));
	assert_int_equal(witness_valid_ms(w), 0);
	assert_string_equal(witness_api_prefix(w), "/v3");
	witness_close(w);
	witness_close(NULL);
}

/* ---- a scripted HTTP server on loopback ---- */

enum script { S_GARBAGE, S_HUGE, S_SILENT, S_V3BETA, S_ERROR, S_RESET, S_LOSE_LEASE };

struct server {
	int fd;
	unsigned short port;
	enum script script;
	pthread_t thread;
	int requests;
	char paths[16][64];
	volatile int stop;
};

static void reply_n(int c, int code, const char *body, size_t n)
{
	char h[256];
	int hl = snprintf(h, sizeof(h),
			  "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\n\r\n",
			  code, n);

	if (write(c, h, (size_t)hl) < 0 || (n && write(c, body, n) < 0))
		return;
}

static void reply(int c, int code, const char *body)
{
	reply_n(c, code, body, strlen(body));
}

static void *serve(void *arg)
{
	struct server *s = arg;

	while (!s->stop) {
		char req[4096];
		size_t got = 0;
		int c = accept(s->fd, NULL, NULL);

		if (c < 0)
			break;
		/* one request per connection; read until the body is in */
		for (;;) {
			ssize_t r = read(c, req + got, sizeof(req) - 1 - got);
			char *hend, *cl;

			if (r <= 0)
				break;
			got += (size_t)r;
			req[got] = '\0';
			hend = strstr(req, "\r\n\r\n");
			cl = strcasestr(req, "Content-Length:");
			if (hend && cl &&
			    got >= (size_t)(hend + 4 - req) + strtoul(cl + 15, NULL, 10))
				break;
		}
		if (s->requests < 16)
			sscanf(req, "POST %63s", s->paths[s->requests]);
		s->requests++;
		const char *path = s->paths[s->requests <= 16 ? s->requests - 1 : 15];
		switch (s->script) {
		case S_GARBAGE:
			reply(c, 200, "{\"ID\":\"1\",\"TTL\":");
			break;
		case S_HUGE: {
			size_t n = WITNESS_JSON_MAX_BODY * 2;
			char *b = malloc(n);

			memset(b, ' ', n);
			reply_n(c, 200, b, n);
			free(b);
			break;
		}
		case S_SILENT:
			while (!s->stop)
				usleep(10000);
			break;
		case S_V3BETA:
			if (!strncmp(path, "/v3/", 4)) {
				reply(c, 404, "Not Found\n");
				break;
			}
			if (strstr(path, "/lease/grant")) {
				reply(c, 200, "{\"ID\":\"77\",\"TTL\":\"1\"}");
			} else if (strstr(path, "/kv/txn")) {
				const char *b = "{\"header\":{},\"succeeded\":true}";
				reply(c, 200, b);
			} else {
				reply(c, 200, "{}");
			}
			break;
		case S_ERROR:
			reply(c, 500, "{\"error\":\"boom\",\"message\":\"boom\",\"code\":13}");
			break;
		case S_RESET:
			break; /* close without an answer */
		case S_LOSE_LEASE:
			if (strstr(path, "/lease/grant")) {
				reply(c, 200, "{\"ID\":\"77\",\"TTL\":\"1\"}");
			} else if (strstr(path, "/kv/txn")) {
				const char *b = "{\"header\":{},\"succeeded\":true}";
				reply(c, 200, b);
			} else if (strstr(path, "/lease/keepalive")) {
				const char *b = "{\"result\":{\"ID\":\"77\"}}";
				reply(c, 200, b);
			} else {
				reply(c, 200, "{}");
			}
			break;
		}
		close(c);
	}
	return NULL;
}

static void server_start(struct server *s, enum script script)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);

	memset(s, 0, sizeof(*s));
	s->script = script;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->fd >= 0);
	assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s->fd, 16), 0);
	assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
	s->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct server *s)
{
	s->stop = 1;
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

static struct witness *open_at(unsigned short port, unsigned ttl_ms)
{
	struct witness *w;
	char ep[64], err[160];

	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", port);
	assert_int_equal(witness_open(&w, ep, "vm1", "host-a:1", ttl_ms, err, sizeof(err)), 0);
	return w;
}

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned short free_port(void)
{
	struct server s;

	/* bind, note the port, close: nothing listens there afterwards */
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	s.fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(s.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s.fd, (struct sockaddr *)&a, &al), 0);
	close(s.fd);
	return ntohs(a.sin_port);
}

static void test_unreachable(void **state)
{
	struct witness *w = open_at(free_port(), 1200);
	char buf[64];
	int64_t t0 = ms_now();
	(void)state;

	assert_int_equal(witness_acquire(w, 0), -EHOSTUNREACH);
	assert_false(witness_valid(w));
	assert_int_equal(witness_renew(w), -ENOLCK); /* never held */
	assert_int_equal(witness_holder(w, buf, sizeof(buf)), -EHOSTUNREACH);
	/* retried until wait_ms, then the unreachable error, not -EBUSY */
	t0 = ms_now();
	assert_int_equal(witness_acquire(w, 300), -EHOSTUNREACH);
	assert_true(ms_now() - t0 >= 300);
	assert_true(ms_now() - t0 < 1500);
	witness_close(w);
}

static void test_server_garbage(void **state)
{
	struct server s;
	struct witness *w;
	(void)state;

	server_start(&s, S_GARBAGE);
	w = open_at(s.port, 1000);
	assert_int_equal(witness_acquire(w, 0), -EPROTO);
	assert_false(witness_valid(w));
	witness_close(w);
	server_stop(&s);

	server_start(&s, S_HUGE);
	w = open_at(s.port, 1000);
	assert_int_equal(witness_acquire(w, 0), -EPROTO);
	witness_close(w);
	server_stop(&s);

	server_start(&s, S_ERROR);
	w = open_at(s.port, 1000);
	assert_int_equal(witness_acquire(w, 0), -EIO);
	witness_close(w);
	server_stop(&s);

	server_start(&s, S_RESET);
	w = open_at(s.port, 1000);
	assert_int_equal(witness_acquire(w, 0), -EHOSTUNREACH);
	witness_close(w);
	server_stop(&s);
}

static void test_server_silent(void **state)
{
	struct server s;
	struct witness *w;
	int64_t t0, dt;
	(void)state;

	server_start(&s, S_SILENT);
	w = open_at(s.port, 1500);
	t0 = ms_now();
	assert_int_equal(witness_acquire(w, 0), -ETIMEDOUT);
	dt = ms_now() - t0;
	/* bounded by ttl/3 (500 ms) per request, with some slack */
	assert_true(dt >= 450);
	assert_true(dt < 1000);
	witness_close(w);
	server_stop(&s);
}

/* Two endpoints, the first refusing: the second answers within the bound. */
static void test_server_v3beta_and_failover(void **state)
{
	struct server s;
	struct witness *w;
	char ep[128], err[160];
	(void)state;

	server_start(&s, S_V3BETA);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u,http://127.0.0.1:%u", free_port(), s.port);
	assert_int_equal(witness_open(&w, ep, "vm1", "host-a:1", 1000, err, sizeof(err)), 0);
	assert_int_equal(witness_acquire(w, 0), 0);
	assert_true(witness_valid(w));
	assert_string_equal(witness_api_prefix(w), "/v3beta");
	assert_int_equal(witness_granted_ttl(w), 1);
	assert_string_equal(s.paths[0], "/v3/lease/grant");
	assert_string_equal(s.paths[1], "/v3beta/lease/grant");
	assert_string_equal(s.paths[2], "/v3beta/kv/txn");
	witness_close(w); /* revokes */
	assert_string_equal(s.paths[3], "/v3beta/lease/revoke");
	server_stop(&s);
}

/* A keepalive answer without a TTL: the lease is gone, self-fence. */
static void test_server_lease_lost(void **state)
{
	struct server s;
	struct witness *w;
	(void)state;

	server_start(&s, S_LOSE_LEASE);
	w = open_at(s.port, 1000);
	assert_int_equal(witness_acquire(w, 0), 0);
	assert_true(witness_valid(w));
	/* validity: min(ttl, granted) minus a quarter */
	assert_true(witness_valid_ms(w) <= 750);
	assert_true(witness_valid_ms(w) > 600);
	assert_int_equal(witness_renew(w), -ENOLCK);
	assert_false(witness_valid(w));
	assert_int_equal(witness_renew(w), -ENOLCK);
	witness_close(w);
	server_stop(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_b64_vectors),
	    cmocka_unit_test(test_b64_binary),
	    cmocka_unit_test(test_b64_bad),
	    cmocka_unit_test(test_json_valid),
	    cmocka_unit_test(test_json_malformed),
	    cmocka_unit_test(test_json_depth_and_size),
	    cmocka_unit_test(test_json_lookup),
	    cmocka_unit_test(test_json_int64),
	    cmocka_unit_test(test_json_string),
	    cmocka_unit_test(test_parse_grant),
	    cmocka_unit_test(test_parse_keepalive),
	    cmocka_unit_test(test_parse_txn_range),
	    cmocka_unit_test(test_parse_error),
	    cmocka_unit_test(test_parse_truncated_and_mutated),
	    cmocka_unit_test(test_open_arguments),
	    cmocka_unit_test(test_unreachable),
	    cmocka_unit_test(test_server_garbage),
	    cmocka_unit_test(test_server_silent),
	    cmocka_unit_test(test_server_v3beta_and_failover),
	    cmocka_unit_test(test_server_lease_lost),
	};

	if (!getenv("WITNESS_VERBOSE"))
		log_verbosity = LOG_ERR - 1; /* the messages are expected here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
