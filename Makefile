# Nexus: build, test and demo.
#
#   make deps       install the Debian packages the project needs (idempotent)
#   make            build/ngx_nexus_module.so, build/libnexus.a, build/nexusctl,
#                   the worker daemons (build/nexus-notify)
#   make test       unit tests (cmocka) and integration tests (prove)
#   make demo       local stack under ./var; make demo-down stops it
#   make fuzz       run each libFuzzer harness of common/ briefly
#   make clean

SHELL      := /bin/bash
ROOT       := $(CURDIR)
BUILD      := $(ROOT)/build
NGX_SRC    ?= /usr/share/nginx/src
NGX_BUILD  := $(BUILD)/nginx

CC         ?= cc
WARN       := -Wall -Wextra -Werror
CFLAGS     ?= -O2 -g
CFLAGS     += $(WARN) -std=gnu11 -fPIC -D_GNU_SOURCE -I$(ROOT)/common \
              -I/usr/include/postgresql
SAN_FLAGS  :=
ifeq ($(SANITIZE),1)
SAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer
endif

COMMON_SRCS := $(wildcard common/nx_*.c)
COMMON_OBJS := $(patsubst common/%.c,$(BUILD)/common/%.o,$(COMMON_SRCS))
COMMON_HDRS := $(wildcard common/*.h)
CLI_SRCS    := $(wildcard cli/*.c)
CLI_HDRS    := $(wildcard cli/*.h)
MOD_SRCS    := $(wildcard ngx_nexus_module/src/*.c)
MOD_HDRS    := $(wildcard ngx_nexus_module/src/*.h)
UNIT_SRCS   := $(wildcard common/tests/test_*.c)
UNIT_BINS   := $(patsubst common/tests/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS   := $(wildcard common/fuzz/fuzz_*.c)
WORKER_SRCS := $(wildcard workers/nxw_*.c)
WORKER_HDRS := $(wildcard workers/*.h workers/*/*.h)
NOTIFY_SRCS := $(wildcard workers/notify/*.c)

LIBS_CRYPTO := -lcrypto
LIBS_COMMON := -lyajl -lcrypto -lpcre2-8
LIBS_CLI    := -lpq -lcurl $(LIBS_COMMON) -ljemalloc
LIBS_WORKER := -lhiredis -lpq -lcurl $(LIBS_COMMON) -ljemalloc

.PHONY: all deps module lib cli workers test unit integration demo \
        demo-down clean fuzz bench test-asan

all: lib cli module workers

deps:
	@scripts/deps.sh

lib: $(BUILD)/libnexus.a

$(BUILD)/common/%.o: common/%.c $(COMMON_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -c -o $@ $<

$(BUILD)/libnexus.a: $(COMMON_OBJS)
	@rm -f $@
	ar rcs $@ $^

cli: $(BUILD)/nexusctl

$(BUILD)/nexusctl: $(CLI_SRCS) $(CLI_HDRS) $(BUILD)/libnexus.a \
        $(BUILD)/gen/cli_plans_json.h
	$(CC) $(CFLAGS) $(SAN_FLAGS) -Icli -I$(BUILD)/gen -o $@ $(CLI_SRCS) \
	    $(BUILD)/libnexus.a $(LIBS_CLI)

# the default plan catalog, compiled into nexusctl as a C string
$(BUILD)/gen/cli_plans_json.h: config/plans.json
	@mkdir -p $(dir $@)
	{ echo '/* generated from config/plans.json */'; \
	  echo 'static const char  cli_plans_json[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/    "/' \
	      -e 's/$$/\\n"/' $<; \
	  echo '    ;'; } > $@.tmp && mv $@.tmp $@

# The worker daemons: the runtime of workers/ and one directory each.
workers: $(BUILD)/nexus-notify

$(BUILD)/nexus-notify: $(NOTIFY_SRCS) $(WORKER_SRCS) $(WORKER_HDRS) \
        $(COMMON_HDRS) $(BUILD)/libnexus.a
	$(CC) $(CFLAGS) $(SAN_FLAGS) -Iworkers -Iworkers/notify -o $@ \
	    $(NOTIFY_SRCS) $(WORKER_SRCS) $(BUILD)/libnexus.a $(LIBS_WORKER)

# The module is built by nginx's own build system from the nginx-dev tree.
# configure runs again whenever the set of module files or the addon config
# changes; nginx's Makefile then tracks the sources themselves.
module: $(BUILD)/ngx_nexus_module.so

$(BUILD)/module.files: FORCE
	@mkdir -p $(BUILD)
	@echo "$(MOD_SRCS) $(MOD_HDRS) $(COMMON_SRCS) $(COMMON_HDRS) $(SANITIZE)" \
	    > $@.new
	@cmp -s $@.new $@ || mv $@.new $@; rm -f $@.new

$(NGX_BUILD)/objs/Makefile: ngx_nexus_module/config $(BUILD)/module.files
	@test -f $(NGX_SRC)/conf_flags || { \
	    echo "nginx-dev is missing: run 'make deps'" >&2; exit 1; }
	rm -rf $(NGX_BUILD) && mkdir -p $(NGX_BUILD)
	cp -a $(NGX_SRC)/. $(NGX_BUILD)/
	cd $(NGX_BUILD) && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-O2 -g -fPIC -Wextra -Wno-unused-parameter \
	        -Wno-sign-compare -Wno-missing-field-initializers $(SAN_FLAGS)" \
	    --with-ld-opt="$(SAN_FLAGS)" \
	    --add-dynamic-module=$(ROOT)/ngx_nexus_module > configure.log 2>&1 \
	    || { tail -30 configure.log; exit 1; }

$(BUILD)/ngx_nexus_module.so: $(NGX_BUILD)/objs/Makefile $(MOD_SRCS) \
        $(MOD_HDRS) $(COMMON_SRCS) $(COMMON_HDRS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new inode: a running nginx keeps the copy it mapped
	cp $(NGX_BUILD)/objs/ngx_nexus_module.so $@.tmp && mv -f $@.tmp $@

FORCE:

unit: $(UNIT_BINS)
	@scripts/run-unit.sh $(UNIT_BINS)

$(BUILD)/tests/%: common/tests/%.c $(BUILD)/libnexus.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN_FLAGS) -o $@ $< $(BUILD)/libnexus.a -lcmocka \
	    $(LIBS_COMMON)

integration: all
	@t/run

test: deps all
	@$(MAKE) -s unit
	@t/run

test-asan:
	$(MAKE) clean
	$(MAKE) SANITIZE=1 all
	$(MAKE) SANITIZE=1 unit
	NEXUS_ASAN=1 t/run

fuzz: lib
	@scripts/fuzz.sh $(FUZZ_SRCS)

demo: deps all
	@scripts/demo.sh up

demo-down:
	@scripts/demo.sh down

bench: all $(BUILD)/bench-policy
	@$(BUILD)/bench-policy bench/policy_rules.json
	@NEXUS_RUN=bench/auth.pl t/run
	@NEXUS_RUN=bench/gateway.pl t/run
	@NEXUS_RUN=bench/governance.pl t/run
	@NEXUS_RUN=bench/notify.pl t/run

$(BUILD)/bench-policy: bench/policy.c $(BUILD)/libnexus.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libnexus.a $(LIBS_COMMON)

clean:
	rm -rf $(BUILD)
