// SPDX-License-Identifier: MIT
/*
 * selftest: checks the kit's own formatting and parsing in the guest, with
 * the real freestanding build.  Prints "selftest: ok" or one line per
 * failure, then "selftest: FAIL n".  No keys.
 */
#include "kit.h"

static unsigned failures;

static void expect_fmt(const char *want, const char *got, int n)
{
	if (strcmp(want, got) || n != (int)strlen(want)) {
		printf("selftest: format: want \"%s\" got \"%s\" (n=%d)\n", want, got, n);
		failures++;
	}
}

#define FMT(want, ...)                                                                             \
	do {                                                                                       \
		char b_[64];                                                                       \
		int n_ = snprintf(b_, sizeof(b_), __VA_ARGS__);                                    \
		expect_fmt(want, b_, n_);                                                          \
	} while (0)

static void expect_find(const char *line, const char *key, const char *want)
{
	size_t len = 0;
	const char *v = cmdline_find(line, key, &len);
	bool ok = want ? v && len == strlen(want) && !memcmp(v, want, len) : !v;

	if (!ok) {
		printf("selftest: cmdline_find(\"%s\", \"%s\") wrong\n", line, key);
		failures++;
	}
}

static void expect_u64(const char *s, bool ok, uint64_t want)
{
	uint64_t v = 0;
	bool r = parse_u64(s, strlen(s), &v);

	if (r != ok || (ok && v != want)) {
		printf("selftest: parse_u64(\"%s\") wrong\n", s);
		failures++;
	}
}

int main(const char *cmdline)
{
	char small[4];
	int n;

	(void)cmdline;
	FMT("42 -7 0 4294967295", "%d %d %u %u", 42, -7, 0u, 4294967295u);
	FMT("-9223372036854775808", "%ld", (long)(-9223372036854775807L - 1));
	FMT("18446744073709551615", "%lu", 18446744073709551615UL);
	FMT("ff FF 0x10", "%x %X %p", 255u, 255u, (void *)16);
	FMT("00042|   42|42   |", "%05d|%5d|%-5d|", 42, 42, 42);
	FMT("-0042", "%05d", -42);
	FMT("00000000deadbeef", "%016lx", 0xdeadbeefUL);
	FMT("[ab] [  ab] x %", "[%s] [%4s] %c %%", "ab", "ab", 'x');
	FMT("7.05", "%lu.%02lu", 7UL, 5UL);
	n = snprintf(small, sizeof(small), "%s", "abcdef");
	if (n != 6 || strcmp(small, "abc")) {
		printf("selftest: truncation wrong\n");
		failures++;
	}

	expect_find("a=1 b=2", "a", "1");
	expect_find("a=1 b=2", "b", "2");
	expect_find("ab=1 a=2", "a", "2");
	expect_find("a=1 a=3", "a", "3");
	expect_find("  a=1\tflag  ", "flag", "");
	expect_find("a=1", "b", NULL);
	expect_find("abc=1", "ab", NULL);
	expect_find("", "a", NULL);
	expect_find("a=", "a", "");

	expect_u64("0", true, 0);
	expect_u64("1234", true, 1234);
	expect_u64("0x1F", true, 31);
	expect_u64("18446744073709551615", true, UINT64_MAX);
	expect_u64("18446744073709551616", false, 0);
	expect_u64("", false, 0);
	expect_u64("0x", false, 0);
	expect_u64("12a", false, 0);
	expect_u64("-1", false, 0);

	if (failures) {
		printf("selftest: FAIL %u\n", failures);
		return KIT_EXIT_FAIL;
	}
	printf("selftest: ok\n");
	return KIT_EXIT_OK;
}
