# SPDX-License-Identifier: MIT
# vmm: a tiny KVM VMM whose guests survive the loss of their host.

VERSION    := 0.1.0
CC         ?= cc
PREFIX     ?= /usr/local
DESTDIR    ?=
BUILD      := build

WARN       := -Wall -Wextra -Werror -Wno-missing-field-initializers
CFLAGS     ?= -O2 -g
CFLAGS     += -std=gnu11 $(WARN) -Iinclude -D_GNU_SOURCE -DVMM_VERSION=\"$(VERSION)\" -pthread
SANFLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS     := -lfdt -lxxhash -lcurl -pthread

# Every .c under these folders is part of the monitor; main.c holds only main().
LIB_SRCS   := $(sort $(filter-out vmm/main.c,$(wildcard vmm/*.c devices/*.c replication/*.c)))
LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
ASAN_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/asan/%.o)
UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/unit/%)
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all vmm images check unit integration nested fuzz bench soak demo install clean format linux-guest

all: vmm images

vmm: $(BUILD)/vmm

$(BUILD)/vmm: $(BUILD)/obj/vmm/main.o $(LIB_OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The sanitizer build of the monitor, used by the integration tests.
$(BUILD)/vmm-asan: $(BUILD)/asan/vmm/main.o $(ASAN_OBJS)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -MMD -MP -c -o $@ $<

# Tests link against an archive so each pulls in only the modules it uses.
$(BUILD)/libvmm-asan.a: $(ASAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libvmm-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) -Itests/unit -o $@ $^ $(LDLIBS) -lcmocka

# libFuzzer targets: clang only, each linked with an instrumented archive of the monitor.
FUZZ_CC    := clang
FUZZ_FLAGS := -std=gnu11 -g -O1 -Iinclude -D_GNU_SOURCE -pthread -DVMM_VERSION=\"$(VERSION)\" \
	      -fsanitize=address,undefined
FUZZ_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/fuzzobj/%.o)

$(BUILD)/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(BUILD)/libvmm-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libvmm-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

images:
	$(MAKE) -C images

unit: $(UNIT_BINS)
	@tests/run-unit.sh $(UNIT_BINS)

integration: $(BUILD)/vmm $(BUILD)/vmm-asan images
	@tests/integration/run.sh

nested: $(BUILD)/vmm images
	@tests/nested/run.sh

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh $(FUZZ_BINS)

# Everything CI runs, in order, with one summary line at the end.
check: all $(BUILD)/vmm-asan $(UNIT_BINS)
	@tests/check.sh

bench: all
	@tests/bench/run.sh

demo: all
	@tests/demo.sh

# Hundreds of failover trials (CI runs 20; SOAK_TRIALS=N to change) and the nested
# failover of a Linux guest under a TCP client three times (CI runs it once).
soak: all
	@REPL_TRIALS=$${SOAK_TRIALS:-300} VMM=$(BUILD)/vmm tests/integration/replication.sh
	@NESTED_TEST_TIMEOUT=900 tests/nested/run.sh tests/nested/test_failover.sh tests/nested/test_failover.sh tests/nested/test_failover.sh

linux-guest:
	images/linux/build.sh

install: $(BUILD)/vmm
	install -D -m 0755 $(BUILD)/vmm $(DESTDIR)$(PREFIX)/bin/vmm
	install -d $(DESTDIR)$(PREFIX)/share/vmm/images
	install -m 0644 images/out/*.elf $(DESTDIR)$(PREFIX)/share/vmm/images/
	install -D -m 0644 docs/vmm.1 $(DESTDIR)$(PREFIX)/share/man/man1/vmm.1

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)
	$(MAKE) -C images clean

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
