// SPDX-License-Identifier: MIT
/*
 * key=value parsing of the boot command line.
 */
#include "kit.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

const char *cmdline_find(const char *cmdline, const char *key, size_t *len)
{
	size_t klen = strlen(key);
	const char *p = cmdline, *found = NULL;

	while (*p) {
		const char *tok;
		size_t tlen = 0;

		while (is_space(*p))
			p++;
		tok = p;
		while (*p && !is_space(*p))
			p++;
		tlen = (size_t)(p - tok);
		if (tlen >= klen && !strncmp(tok, key, klen)) {
			if (tlen == klen) {
				found = tok + tlen; /* a bare key: empty value */
				*len = 0;
			} else if (tok[klen] == '=') {
				found = tok + klen + 1;
				*len = tlen - klen - 1;
			}
		}
	}
	return found;
}

bool parse_u64(const char *s, size_t len, uint64_t *out)
{
	unsigned base = 10;
	uint64_t v = 0;
	size_t i = 0;

	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i == len)
		return false;
	for (; i < len; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		if (v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	*out = v;
	return true;
}

uint64_t cmdline_get_u64(const char *key, uint64_t def)
{
	size_t len;
	const char *val = cmdline_find(kit_cmdline(), key, &len);
	uint64_t v;

	if (!val)
		return def;
	if (!parse_u64(val, len, &v)) {
		printf("kit: warning: bad number for %s=, using %lu\n", key, def);
		return def;
	}
	return v;
}

bool cmdline_get_str(const char *key, char *buf, size_t size)
{
	size_t len;
	const char *val = cmdline_find(kit_cmdline(), key, &len);

	if (!val)
		return false;
	if (size) {
		if (len >= size)
			len = size - 1;
		memcpy(buf, val, len);
		buf[len] = '\0';
	}
	return true;
}
