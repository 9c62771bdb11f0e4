# ias: one Makefile for every binary, test and check.
#
# Conventions (add files, never rules):
#   libcommon/src/*.c                 -> build/lib/libcommon.a (and a sanitizer copy)
#   services/<name>/*.c               -> build/bin/ias-<name>
#   tests/unit/test_<x>.c             -> build/asan/tests/unit/test_<x>        (cmocka, run by make test)
#   tests/integration/test_<x>.c      -> build/asan/tests/integration/test_<x> (needs the test stack)
#   tests/fuzz/fuzz_<x>.c             -> build/fuzz/fuzz_<x> (libFuzzer), corpus in tests/fuzz/corpus/<x>/

# BUILD: output directory (helpers and parallel checkouts may use their own).
BUILD    ?= build
B        := $(BUILD)
CC       ?= cc
CLANG    ?= clang
PKGS     := libevent libevent_pthreads hiredis librabbitmq libpq libcjson libjwt libcrypt libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
BASEFLAGS := -std=c11 -D_GNU_SOURCE -Ilibcommon/include -Itests/lib $(PKG_CFLAGS) $(WARN) -MMD -MP
CFLAGS   ?= -O2 -g
ASANFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
LDLIBS   := $(PKG_LIBS) -lpthread -lm
# Extra libraries of one binary only: LIBS_<service>.
LIBS_admin := $(shell pkg-config --libs libcurl 2>/dev/null)

LIB_SRCS  := $(sort $(wildcard libcommon/src/*.c))
SERVICES  := $(sort $(notdir $(patsubst %/,%,$(dir $(wildcard services/*/main.c)))))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
INTEG_SRCS := $(sort $(wildcard tests/integration/test_*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
TESTLIB_SRCS := $(sort $(wildcard tests/lib/*.c))

BIN       := $(addprefix $(B)/bin/ias-,$(SERVICES))
ASAN_BIN  := $(addprefix $(B)/asan/bin/ias-,$(SERVICES))
UNIT_BIN  := $(patsubst tests/unit/%.c,$(B)/asan/tests/unit/%,$(UNIT_SRCS))
INTEG_BIN := $(patsubst tests/integration/%.c,$(B)/asan/tests/integration/%,$(INTEG_SRCS))
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRCS))

.PHONY: all asan tests fuzz-build fuzz test unit integration run stop lint format deps clean bench
all: $(BIN)
asan: $(ASAN_BIN) $(UNIT_BIN) $(INTEG_BIN)
tests: $(UNIT_BIN) $(INTEG_BIN)
fuzz-build: $(FUZZ_BIN)

# ---- release build ----
$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -c $< -o $@
$(B)/lib/libcommon.a: $(patsubst %.c,$(B)/obj/%.o,$(LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
# Under secondary expansion a literal % in a prerequisite is the stem; $(PCT) keeps patsubst's own %.
PCT := %
.SECONDEXPANSION:
$(B)/bin/ias-%: $$(patsubst $$(PCT).c,$(B)/obj/$$(PCT).o,$$(wildcard services/$$*/*.c)) $(B)/lib/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(LIBS_$*)

# ---- sanitizer build (what the tests run) ----
$(B)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(ASANFLAGS) -c $< -o $@
$(B)/asan/lib/libcommon.a: $(patsubst %.c,$(B)/asan/obj/%.o,$(LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(B)/asan/lib/libtestlib.a: $(patsubst %.c,$(B)/asan/obj/%.o,$(TESTLIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(B)/asan/bin/ias-%: $$(patsubst $$(PCT).c,$(B)/asan/obj/$$(PCT).o,$$(wildcard services/$$*/*.c)) $(B)/asan/lib/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ASANFLAGS) -o $@ $^ $(LDLIBS) $(LIBS_$*)
$(B)/asan/tests/%: $(B)/asan/obj/tests/%.o $(B)/asan/lib/libtestlib.a $(B)/asan/lib/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(ASANFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# ---- libFuzzer build (clang) ----
$(B)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(BASEFLAGS) $(FUZZFLAGS) -c $< -o $@
$(B)/fuzz/lib/libcommon.a: $(patsubst %.c,$(B)/fuzz/obj/%.o,$(LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(B)/fuzz/fuzz_%: $(B)/fuzz/obj/tests/fuzz/fuzz_%.o $(B)/fuzz/lib/libcommon.a
	@mkdir -p $(dir $@)
	$(CLANG) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

# ---- commands ----
deps:
	@bash scripts/deps.sh
test:
	@bash scripts/test.sh
unit: $(UNIT_BIN)
	@bash scripts/test.sh unit
integration: asan
	@bash scripts/test.sh integration
fuzz: $(FUZZ_BIN)
	@bash scripts/fuzz.sh $${FUZZ_SECONDS:-60}
run:
	@bash scripts/run.sh start
stop:
	@bash scripts/run.sh stop
bench: all
	@bash bench/run.sh
lint:
	@bash scripts/lint.sh
format:
	@clang-format -i $(LIB_SRCS) $(wildcard libcommon/include/ias/*.h services/*/*.c services/*/*.h tests/*/*.c tests/*/*.h)
clean:
	rm -rf build

-include $(shell find $(B) -name '*.d' 2>/dev/null)
