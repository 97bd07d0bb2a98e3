// SPDX-License-Identifier: MIT
/* A minimal AML encoder for the DSDT. */
#include "aml.h"

#include <errno.h>
#include <string.h>

#define AML_ZERO_OP	  0x00
#define AML_ONE_OP	  0x01
#define AML_NAME_OP	  0x08
#define AML_BYTE_PREFIX	  0x0a
#define AML_WORD_PREFIX	  0x0b
#define AML_DWORD_PREFIX  0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX  0x0e
#define AML_SCOPE_OP	  0x10
#define AML_BUFFER_OP	  0x11
#define AML_PACKAGE_OP	  0x12
#define AML_DUAL_NAME	  0x2e
#define AML_MULTI_NAME	  0x2f
#define AML_EXT_OP	  0x5b
#define AML_DEVICE_OP	  0x82
#define AML_ROOT_CHAR	  '\\'
#define AML_PKGLEN_MAX	  0x0fffffff

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	memset(a, 0, sizeof(*a));
	a->buf = buf;
	a->cap = cap;
}

int aml_finish(struct aml *a, size_t *len)
{
	if (!a->err && a->depth)
		a->err = -EINVAL;
	*len = a->len;
	return a->err;
}

static void emit(struct aml *a, const void *p, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

static void emit_byte(struct aml *a, uint8_t b)
{
	emit(a, &b, 1);
}

static void emit_le(struct aml *a, uint64_t v, unsigned bytes)
{
	uint8_t b[8];
	unsigned i;

	for (i = 0; i < bytes; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	emit(a, b, bytes);
}

/* Put n bytes at pos, moving what follows up. */
static void insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
	if (a->err)
		return;
	if (n > a->cap - a->len) {
		a->err = -ENOSPC;
		return;
	}
	memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
	memcpy(a->buf + pos, p, n);
	a->len += n;
}

/* Encode a PkgLength for n bytes of content that follow it; returns its size or 0. */
static size_t pkglength(uint8_t out[4], size_t n)
{
	size_t extra, total;
	unsigned i;

	if (n + 1 <= 0x3f) {
		out[0] = (uint8_t)(n + 1);
		return 1;
	}
	/* The length counts its own bytes, so try each size until it fits. */
	for (extra = 1; extra <= 3; extra++) {
		total = n + 1 + extra;
		if (total > (1ULL << (4 + 8 * extra)) - 1)
			continue;
		out[0] = (uint8_t)((extra << 6) | (total & 0xf));
		for (i = 1; i <= extra; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return extra + 1;
	}
	return 0;
}

static int name_seg(const char *s, size_t n, uint8_t seg[4])
{
	size_t i;

	if (n == 0 || n > 4 || (s[0] >= '0' && s[0] <= '9'))
		return -EINVAL;
	for (i = 0; i < 4; i++) {
		char c = i < n ? s[i] : '_';

		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
			return -EINVAL;
		seg[i] = (uint8_t)c;
	}
	return 0;
}

void aml_namestring(struct aml *a, const char *path)
{
	uint8_t segs[4 * 16];
	unsigned nsegs = 0;
	const char *p = path, *dot;

	if (a->err)
		return;
	if (*p == AML_ROOT_CHAR) {
		emit_byte(a, AML_ROOT_CHAR);
		p++;
	}
	for (;;) {
		dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (nsegs == 16 || name_seg(p, n, &segs[4 * nsegs])) {
			a->err = -EINVAL;
			return;
		}
		nsegs++;
		if (!dot)
			break;
		p = dot + 1;
	}
	if (nsegs == 2)
		emit_byte(a, AML_DUAL_NAME);
	else if (nsegs > 2) {
		emit_byte(a, AML_MULTI_NAME);
		emit_byte(a, (uint8_t)nsegs);
	}
	emit(a, segs, 4 * nsegs);
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0)
		emit_byte(a, AML_ZERO_OP);
	else if (v == 1)
		emit_byte(a, AML_ONE_OP);
	else if (v <= 0xff) {
		emit_byte(a, AML_BYTE_PREFIX);
		emit_le(a, v, 1);
	} else if (v <= 0xffff) {
		emit_byte(a, AML_WORD_PREFIX);
		emit_le(a, v, 2);
	} else if (v <= 0xffffffff) {
		emit_byte(a, AML_DWORD_PREFIX);
		emit_le(a, v, 4);
	} else {
		emit_byte(a, AML_QWORD_PREFIX);
		emit_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	emit_byte(a, AML_STRING_PREFIX);
	emit(a, s, strlen(s) + 1);
}

void aml_name(struct aml *a, const char *path)
{
	emit_byte(a, AML_NAME_OP);
	aml_namestring(a, path);
}

static void open_pkg(struct aml *a, int is_buffer)
{
	if (a->err)
		return;
	if (a->depth == AML_MAX_DEPTH) {
		a->err = -EINVAL;
		return;
	}
	a->open[a->depth].body = a->len;
	a->open[a->depth].is_buffer = is_buffer;
	a->depth++;
}

void aml_scope(struct aml *a, const char *path)
{
	emit_byte(a, AML_SCOPE_OP);
	open_pkg(a, 0);
	aml_namestring(a, path);
}

void aml_device(struct aml *a, const char *path)
{
	emit_byte(a, AML_EXT_OP);
	emit_byte(a, AML_DEVICE_OP);
	open_pkg(a, 0);
	aml_namestring(a, path);
}

void aml_package(struct aml *a, uint8_t nelems)
{
	emit_byte(a, AML_PACKAGE_OP);
	open_pkg(a, 0);
	emit_byte(a, nelems);
}

void aml_buffer(struct aml *a)
{
	emit_byte(a, AML_BUFFER_OP);
	open_pkg(a, 1);
}

void aml_end(struct aml *a)
{
	uint8_t hdr[4 + 9];
	size_t body, content, n, size_len = 0;
	struct aml sizer;

	if (a->err)
		return;
	if (a->depth == 0) {
		a->err = -EINVAL;
		return;
	}
	a->depth--;
	body = a->open[a->depth].body;
	content = a->len - body;
	if (a->open[a->depth].is_buffer) {
		/* BufferSize comes after the PkgLength and counts only the bytes. */
		aml_init(&sizer, hdr + 4, 9);
		aml_integer(&sizer, content);
		size_len = sizer.len;
	}
	if (content + size_len > AML_PKGLEN_MAX) {
		a->err = -E2BIG;
		return;
	}
	n = pkglength(hdr, content + size_len);
	/* Close the gap so PkgLength and BufferSize are contiguous. */
	memmove(hdr + n, hdr + 4, size_len);
	insert(a, body, hdr, n + size_len);
}

uint32_t aml_eisaid(const char *id)
{
	uint32_t v = 0;
	int i;

	if (strlen(id) != 7)
		return 0;
	for (i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return 0;
		v = (v << 5) | (uint32_t)(id[i] - 'A' + 1);
	}
	for (i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t d;

		if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (uint32_t)(c - 'A' + 10);
		else
			return 0;
		v = (v << 4) | d;
	}
	/* 7 bits of letters + 16 of digits sit in the low 31 bits, stored big-endian. */
	return __builtin_bswap32(v);
}

#define RES_IO	      0x47
#define RES_IRQ	      0x22
#define RES_END	      0x79
#define RES_DWORD     0x87
#define RES_WORD      0x88
#define RES_SPACE_MEM 0
#define RES_SPACE_IO  1
#define RES_SPACE_BUS 2
/* General flags: producer, positive decode, min and max fixed. */
#define RES_PRODUCER_FIXED 0x0c
#define RES_IO_ENTIRE	   0x03
#define RES_MEM_RW	   0x01

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	emit_byte(a, RES_IO);
	emit_byte(a, 1); /* decodes 16 bits */
	emit_le(a, min, 2);
	emit_le(a, max, 2);
	emit_byte(a, align);
	emit_byte(a, len);
}

void aml_res_irq(struct aml *a, uint8_t irq)
{
	emit_byte(a, RES_IRQ);
	emit_le(a, irq < 16 ? 1u << irq : 0, 2);
	if (irq >= 16 && !a->err)
		a->err = -EINVAL;
}

static void res_word(struct aml *a, uint8_t space, uint8_t type_flags, uint16_t min, uint16_t max)
{
	emit_byte(a, RES_WORD);
	emit_le(a, 13, 2);
	emit_byte(a, space);
	emit_byte(a, RES_PRODUCER_FIXED);
	emit_byte(a, type_flags);
	emit_le(a, 0, 2); /* granularity */
	emit_le(a, min, 2);
	emit_le(a, max, 2);
	emit_le(a, 0, 2); /* translation */
	emit_le(a, (uint32_t)max - min + 1, 2);
}

void aml_res_word_bus(struct aml *a, uint16_t min, uint16_t max)
{
	res_word(a, RES_SPACE_BUS, 0, min, max);
}

void aml_res_word_io(struct aml *a, uint16_t min, uint16_t max)
{
	res_word(a, RES_SPACE_IO, RES_IO_ENTIRE, min, max);
}

void aml_res_dword_mem(struct aml *a, uint32_t min, uint32_t max)
{
	emit_byte(a, RES_DWORD);
	emit_le(a, 23, 2);
	emit_byte(a, RES_SPACE_MEM);
	emit_byte(a, RES_PRODUCER_FIXED);
	emit_byte(a, RES_MEM_RW);
	emit_le(a, 0, 4); /* granularity */
	emit_le(a, min, 4);
	emit_le(a, max, 4);
	emit_le(a, 0, 4); /* translation */
	emit_le(a, (uint64_t)max - min + 1, 4);
}

void aml_res_end(struct aml *a)
{
	emit_byte(a, RES_END);
	emit_byte(a, 0); /* checksum 0: "treat as correct" */
}
