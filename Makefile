# vaed — plain Makefile: one rule per binary, automatic header dependencies.
# `make run` and `make test` are the two commands a new user types.

BUILD   ?= build
CC      ?= cc
PKGS    := libmicrohttpd libcjson openblas libpng sqlite3
SAN     ?=
OPT     ?= -O2 -march=x86-64-v2
# the engine's loops are where the time goes: let GCC vectorise them
$(BUILD)/engine/%.o: OPT = -O3 -march=x86-64-v2 -fno-math-errno -fno-trapping-math
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -MMD -MP -pthread $(SAN)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  += $(PKG_LIBS) -lz -lm -pthread
LDFLAGS += $(SAN)
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

ENGINE_SRC := $(wildcard engine/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
SCHEMA     := $(sort $(wildcard schema/[0-9]*.sql))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
HTTP_SRC   := $(wildcard tests/http/test_*.c)
TESTLIB_SRC:= $(filter-out $(UNIT_SRC) $(HTTP_SRC),$(wildcard tests/unit/*.c tests/http/*.c))

ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/schema_sql.o $(BUILD)/gen/openapi_yaml.o
TESTLIB_OBJ:= $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit_%)
HTTP_BIN   := $(HTTP_SRC:tests/http/%.c=$(BUILD)/tests/http_%)

.PHONY: all deps data run test asan bench clean check-tests
all: $(BUILD)/vaed $(UNIT_BIN) $(HTTP_BIN)

deps:
	@bash scripts/install-deps.sh

data:
	@bash scripts/get-data.sh all

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -DVAED_VERSION='"$(VERSION)"' -c $< -o $@

$(BUILD)/gen/schema_sql.c: $(SCHEMA) scripts/embed-schema.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-schema.sh $(SCHEMA) > $@

$(BUILD)/gen/schema_sql.o: $(BUILD)/gen/schema_sql.c
	$(CC) $(CFLAGS) -c $< -o $@

# schema/openapi.yaml, served at /openapi.yaml, compiled into the server library.
$(BUILD)/gen/openapi_yaml.c: schema/openapi.yaml scripts/embed-file.sh
	@mkdir -p $(dir $@)
	bash scripts/embed-file.sh vaed_openapi_yaml schema/openapi.yaml > $@

$(BUILD)/gen/openapi_yaml.o: $(BUILD)/gen/openapi_yaml.c
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvae_engine.a: $(ENGINE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libvaed_server.a: $(SERVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vaed: $(BUILD)/server/main.o $(BUILD)/libvaed_server.a $(BUILD)/libvae_engine.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/unit_%: $(BUILD)/tests/unit/%.o $(TESTLIB_OBJ) $(BUILD)/libvaed_server.a $(BUILD)/libvae_engine.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

$(BUILD)/tests/http_%: $(BUILD)/tests/http/%.o $(TESTLIB_OBJ) $(BUILD)/libvaed_server.a $(BUILD)/libvae_engine.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

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

bench: deps
	@$(MAKE) --no-print-directory all
	@bash scripts/get-data.sh all
	@bash scripts/bench-train.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
