# Makefile: the canonical build (PGXS) and the project's commands.
#   make            build the extension (squaresync.so)
#   make install    install it into the PostgreSQL found by PG_CONFIG
#   make test       install what is missing, build, run every test layer, print "N passed, N failed"
#   make demo       install what is missing, build, start a throwaway cluster and the fake Square, sync
#   make bench      the benchmark (docs/benchmarks.md)
#   make unit | regress | e2e | contract   one test layer alone (builds and installs first, as make test)

PG_CONFIG ?= pg_config

MODULE_big = squaresync
CORE_SRCS = $(sort $(wildcard src/core/*.cpp))
PG_SRCS = $(sort $(wildcard src/pg/*.cpp))
OBJS = $(CORE_SRCS:.cpp=.o) $(PG_SRCS:.cpp=.o)

EXTENSION = squaresync
EXTVERSION = 0.2.0
# The install script is assembled from one file per concern. Released versions' install scripts
# (sql/releases) and the update scripts between versions (sql/updates) are installed as they are.
DATA_built = squaresync--$(EXTVERSION).sql
DATA = $(wildcard sql/releases/squaresync--*.sql) $(wildcard sql/updates/squaresync--*--*.sql)
EXTRA_CLEAN = squaresync--$(EXTVERSION).sql
PGFILEDESC = "squaresync - incremental sync of Square into PostgreSQL"

SHLIB_LINK += -lcurl -lsimdjson -lstdc++ -pthread

# No LLVM bitcode: the JIT inlining files need clang, and squaresync has nothing worth inlining.
override with_llvm = no

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

WERROR ?= -Werror
override CXXFLAGS := $(filter-out -fexceptions,$(CXXFLAGS)) -std=c++17 -pthread -fPIC -fexceptions -Wall -Wextra $(WERROR) \
	-Wno-unused-parameter -Wno-missing-field-initializers -Wno-cast-function-type -Wno-register
override CPPFLAGS := -Isrc/core -Isrc/pg $(CPPFLAGS)

src/core/%.o: src/core/%.cpp $(wildcard src/core/*.hpp)
	$(CXX) $(CXXFLAGS) -Isrc/core -c -o $@ $<

src/pg/%.o: src/pg/%.cpp $(wildcard src/core/*.hpp) $(wildcard src/pg/*.hpp)
	$(CXX) $(CXXFLAGS) $(CPPFLAGS) -c -o $@ $<

squaresync--$(EXTVERSION).sql: $(sort $(wildcard sql/install/*.sql))
	cat $^ > $@

.PHONY: deps test demo bench unit regress e2e contract
deps:
	bash scripts/deps.sh

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

bench:
	bash bench/run.sh

unit regress e2e contract:
	bash scripts/test.sh --only $@
