# User-facing commands. Each installs the Debian packages it needs first (scripts/install_deps.sh,
# idempotent), then configures and builds with CMake.
#   make build   release CLI at build/segengine (CUDA real when nvcc exists, else off)
#   make demo    build, then train configs/unet.json on the built-in synthetic data and evaluate it
#   make test    build the real-CUDA and the emulated-CUDA configurations and run the whole suite,
#                the CUDA tests a second time under the emulator's random thread schedule
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
EMU_SEED ?= 20261121

.PHONY: deps build demo test test-real test-emu clean

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

clean:
	rm -rf build build-emu
