# vaed — plain Makefile: one rule per binary, automatic header dependencies.
# `make run` and `make test` are the two commands a new user types.
#
# CFLAGS is the user's (optimisation, debug info: `make CFLAGS=-O0` works);
# the flags vaed needs whatever CFLAGS says are in REQUIRED_CFLAGS and always
# apply. Includes are from the repository root: #include "engine/vae.h".

BUILD   ?= build
CC      ?= cc
PKGS    := libmicrohttpd libcjson openblas libpng sqlite3 zlib libpq
SAN     ?=
OPT     ?= -O2 -march=x86-64-v2
# the engine's loops are where the time goes: let GCC vectorise them
$(BUILD)/engine/%.o: OPT = -O3 -march=x86-64-v2 -fno-math-errno -fno-trapping-math
CFLAGS  ?= $(OPT) -g
REQUIRED_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -MMD -MP -pthread -I.
ALL_CFLAGS = $(CFLAGS) $(REQUIRED_CFLAGS) $(SAN)
LDFLAGS += $(SAN)
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

# pkg-config runs once, when the first object is compiled (not while `make
# test` is still installing the packages): a missing package stops the build
# here with its name, instead of as a missing header later.
define pkg_check
$(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo y),\
    $(info found $(p) $(shell pkg-config --modversion $(p))),\
    $(error pkg-config finds no $(p): run `make deps` (scripts/install-deps.sh) to install the Debian packages)))
endef
PKG_CFLAGS = $(eval PKG_CFLAGS := $(pkg_check)$(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

ENGINE_SRC := $(wildcard engine/*.c)
SERVER_SRC := $(wildcard server/*.c)
CLI_SRC    := $(wildcard cli/*.c)
SCHEMA     := $(sort $(wildcard schema/[0-9]*.sql))
PG_SCHEMA  := $(sort $(wildcard schema/pg/[0-9]*.sql))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
HTTP_SRC   := $(wildcard tests/http/test_*.c)
TESTLIB_SRC:= $(filter-out tests/lib/fault_inject.c,$(wildcard tests/lib/*.c))
# Fuzz targets: tests/fuzz/fuzz_NAME.c, each also a unit test (replay_main.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(filter-out tests/fuzz/fuzz_env.c,$(wildcard tests/fuzz/fuzz_*.c)))

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o $(BUILD)/gen/openapi_yaml.o \
              $(BUILD)/gen/ui_assets.o $(BUILD)/gen/schema_pg_sql.o
UI_FILES   := $(sort $(wildcard server/ui/*))
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ:= $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit_%)
HTTP_BIN   := $(HTTP_SRC:tests/http/%.c=$(BUILD)/tests/http_%)
FUZZ_REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/unit_fuzz_%)
FUZZ_ENV_OBJ := $(BUILD)/tests/fuzz/fuzz_env.o
ENGINE_LIB := $(BUILD)/libvaed_engine.a
SERVER_LIB := $(BUILD)/libvaed_server.a

.PHONY: all deps data run test asan bench bench-onnx clean fuzz fuzz-build tsan soak
all: $(BUILD)/vaed $(UNIT_BIN) $(HTTP_BIN) $(FUZZ_REPLAY_BIN) $(BUILD)/tests/vaed_fault $(BUILD)/tests/pg_run

deps:
	@bash scripts/install-deps.sh

data:
	@bash scripts/get-data.sh all

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -DVAED_VERSION='"$(VERSION)"' -c $< -o $@

$(BUILD)/gen/schema_sql.c: $(SCHEMA) scripts/embed-schema.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-schema.sh $(SCHEMA) > $@

# The PostgreSQL registry's migrations (server/registry_pg.c).
$(BUILD)/gen/schema_pg_sql.c: $(PG_SCHEMA) scripts/embed-schema.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-schema.sh --name vaed_pg_schema $(PG_SCHEMA) > $@

# schema/openapi.yaml, served at /openapi.yaml, compiled into the server library.
$(BUILD)/gen/openapi_yaml.c: schema/openapi.yaml scripts/embed-file.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-file.sh vaed_openapi_yaml schema/openapi.yaml > $@

# The dashboard (server/ui/*, served at / and /ui/NAME) as one C table: a
# fresh clone serves it without npm. Written whole or not at all.
$(BUILD)/gen/ui_assets.c: $(UI_FILES) scripts/embed-ui.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-ui.sh $(UI_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(ENGINE_LIB): $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SERVER_LIB): $(SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

# MPI (Open MPI's ompi-c) is the CLI's alone: cli/dist_mpi.c is the one file
# that includes <mpi.h>, and only vaed links it.
MPI_CFLAGS = $(eval MPI_CFLAGS := $(if $(shell pkg-config --exists ompi-c && echo y),\
    $(shell pkg-config --cflags ompi-c),\
    $(error pkg-config finds no ompi-c: run `make deps` (scripts/install-deps.sh) to install libopenmpi-dev)))$(MPI_CFLAGS)
MPI_LIBS   = $(eval MPI_LIBS := $(shell pkg-config --libs ompi-c))$(MPI_LIBS)
$(BUILD)/cli/dist_mpi.o: ALL_CFLAGS += $(MPI_CFLAGS)

# The CLI is the program's own: it links the server and the engine, and no
# test binary links it.
$(BUILD)/vaed: LDLIBS += $(MPI_LIBS)
$(BUILD)/vaed: $(CLI_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/unit_%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/http_%: $(BUILD)/tests/http/%.o $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# vaed with faults on purpose (tests/lib/fault.h): the daemon's own calls
# to these go through tests/lib/fault_inject.c, which fails the N-th one.
FAULT_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=write,--wrap=fsync,--wrap=rename
$(BUILD)/tests/vaed_fault: LDLIBS += $(MPI_LIBS)
$(BUILD)/tests/vaed_fault: $(CLI_OBJ) $(BUILD)/tests/lib/fault_inject.o $(BUILD)/tests/lib/fault.o $(SERVER_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(FAULT_WRAP) $^ $(LDLIBS) -o $@

# The shell tests' PostgreSQL server: tests/lib/pg_server.c's, around a
# command (tests/tools/pg_run.c).
$(BUILD)/tests/pg_run: $(BUILD)/tests/tools/pg_run.o $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# A fuzz target replaying the corpora, built with the build's compiler: a unit test.
$(BUILD)/tests/unit_fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay_main.o $(FUZZ_ENV_OBJ) $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# The same target with libFuzzer's main (make fuzz: BUILD=build-fuzz, clang).
$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_ENV_OBJ) $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

# The load of scripts/soak.sh.
$(BUILD)/soak_load: $(BUILD)/scripts/soak_load.o $(TESTLIB_OBJ) $(SERVER_LIB) $(ENGINE_LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The step's matrix products alone, vaed's ceiling (scripts/bench-train.sh).
$(BUILD)/bench_sgemm_ceiling: $(BUILD)/scripts/bench_sgemm_ceiling.o $(ENGINE_LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The conv VAE's layers on the implicit GEMM against im2col + gemm.
$(BUILD)/bench_conv: $(BUILD)/scripts/bench_conv.o $(ENGINE_LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The main job: install, build, fetch MNIST, train the default model when the
# registry is empty, serve on 127.0.0.1:8080.
run: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/get-data.sh mnist
	@bash scripts/run.sh

# Every test; the last line is "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/get-data.sh all
	@bash scripts/run-tests.sh $(BUILD)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan: deps
	@$(MAKE) --no-print-directory all BUILD=build-asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
	@bash scripts/get-data.sh all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    VAED_SANITIZED=1 bash scripts/run-tests.sh build-asan

# Every fuzz target under libFuzzer with ASan and UBSan for FUZZ_SECONDS
# each (scripts/fuzz.sh: exec/s and coverage per target; a crash is kept in
# tests/fuzz/corpus/NAME/ for make test to replay).
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
fuzz:
	@bash scripts/install-deps.sh --with-fuzz
	@$(MAKE) --no-print-directory fuzz-build BUILD=build-fuzz CC=clang-14 OPT="-O1 -g" SAN="$(FUZZ_SAN)"
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh build-fuzz
fuzz-build: $(FUZZ_NAMES:%=$(BUILD)/fuzz_%)

# The concurrency tests under ThreadSanitizer: the job pool, the model,
# response and data caches, the compute pool, and event streams and jobs
# through the daemon (also built with TSan).
TSAN_TESTS ?= unit_test_jobs_pool unit_test_model_cache unit_test_response_cache unit_test_compute_pool unit_test_data_cache http_test_concurrency
tsan: deps
	@$(MAKE) --no-print-directory all BUILD=build-tsan OPT=-O1 SAN="-fsanitize=thread -fno-omit-frame-pointer"
	@bash scripts/get-data.sh all
	@TSAN_OPTIONS="second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" VAED_SANITIZED=1 \
	    TESTS="$(TSAN_TESTS)" bash scripts/run-tests.sh build-tsan

# A mixed load at 64 connections for SOAK_SECONDS (300) on the ASan build,
# then the release build (scripts/soak.sh): statuses, sanitizer reports, RSS drift.
soak: deps
	@$(MAKE) --no-print-directory all build/soak_load
	@$(MAKE) --no-print-directory all build-asan/soak_load BUILD=build-asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
	@bash scripts/soak.sh build-asan build

bench: deps
	@$(MAKE) --no-print-directory all $(BUILD)/bench_sgemm_ceiling $(BUILD)/bench_conv
	@bash scripts/get-data.sh all
	@bash scripts/bench-train.sh

# vaed against ONNX Runtime behind node:http on the same weights; builds that
# reference itself (scripts/bench-onnx.sh).
bench-onnx:
	@bash scripts/install-deps.sh --with-bench
	@$(MAKE) --no-print-directory all
	@bash scripts/onnx/install.sh >/dev/null
	@VAED_BUILD=$(BUILD) bash scripts/bench-onnx-selftest.sh
	@bash scripts/bench-onnx.sh $(BUILD)

clean:
	rm -rf build build-asan build-fuzz build-tsan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
