# User-facing commands. Each installs the Debian packages it needs first (scripts/install_deps.sh,
# idempotent), then configures and builds with CMake.
#   make build   release CLI at build/segengine (CUDA real when nvcc exists, else off)
#   make demo    build, then train configs/unet.json on the built-in synthetic data and evaluate it
#   make test    build the real-CUDA and the emulated-CUDA configurations and run the whole suite,
#                the CUDA tests a second time under the emulator's random thread schedule
#   make sanitize  the emulated build under ASan + UBSan, all tests (not part of make test)
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
EMU_SEED ?= 20261121

.PHONY: deps build demo test test-real test-emu sanitize clean

deps:
	./scripts/install_deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build build -j $(JOBS) --target segengine

demo: build
	./build/segengine train configs/unet.json --out runs/demo --overwrite
	./build/segengine eval configs/unet.json --checkpoint runs/demo/best.safetensors --no-progress

# The real build: nvcc compiles every kernel (a compile-and-link check on machines without a GPU,
# where the CUDA tests skip themselves); its CPU tests run. Both builds' suites run with
# SEGENGINE_POISON=1 (engine/allocator.h): new tensor memory is NaN bytes, so a kernel that reads
# memory it did not write fails every time instead of depending on what the block held.
test-real: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSEGENGINE_WERROR=ON $(CMAKE_FLAGS)
	cmake --build build -j $(JOBS)
	SEGENGINE_POISON=1 ctest --test-dir build --output-on-failure -j $(JOBS)

# The emulated build: the same .cu sources compiled by g++ against kernels/emu; CUDA tests run on the CPU.
test-emu: deps
	cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DSEGENGINE_CUDA=emulated -DSEGENGINE_WERROR=ON \
	  -DSEGENGINE_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-emu -j $(JOBS)
	SEGENGINE_POISON=1 ctest --test-dir build-emu --output-on-failure -j $(JOBS)
	SEGENGINE_POISON=1 SEGENGINE_EMU_SCHEDULE=random:$(EMU_SEED) ctest --test-dir build-emu -L cuda --output-on-failure -j $(JOBS)

test: test-real test-emu

# The emulated build under AddressSanitizer and UndefinedBehaviorSanitizer, every test: the CPU kernels and,
# through the emulator, the CUDA kernels (compute-sanitizer's memcheck for a machine without a GPU). Our
# allocators mark the rounding past each tensor and their cached free blocks unaddressable, and the emulator
# the dynamic shared memory past a launch's size, so an overrun or a use after free is reported where it
# happens; any report fails its test. Not part of `make test` (a third build, tests ~4x slower); CI runs it after.
# -g1: line tables, all a report's stack trace needs; full -g made the build ~20 % longer on a 2-core machine
# (kernels/cpu/elementwise.cpp: 88 s with -g, 70 s with -g1). A debugger's session wants -g: set
# CMAKE_CXX_FLAGS_RELWITHDEBINFO through CMAKE_FLAGS.
sanitize: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
	  -DSEGENGINE_CUDA=emulated \
	  -DSEGENGINE_SANITIZE=address,undefined -DSEGENGINE_WERROR=ON -DSEGENGINE_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	SEGENGINE_POISON=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j $(JOBS)

clean:
	rm -rf build build-emu build-asan
