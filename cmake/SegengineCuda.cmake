# se_add_cuda_library(<name> <sources.cu>...)
# Builds one static library from CUDA sources the way SEGENGINE_CUDA_MODE says:
#   real      nvcc compiles them for CMAKE_CUDA_ARCHITECTURES and links the CUDA runtime;
#   emulated  g++ compiles each .cu as C++ through a generated wrapper that includes the emulator
#             header first (kernels/emu/cuda_emu.h); <cuda_runtime.h>, <cuda_fp16.h>, <mma.h>, ...
#             resolve to the emulator's shims in kernels/emu/include.
# The same .cu source serves both; see shared/DESIGN.md for the rules kernels follow.

if(SEGENGINE_CUDA_MODE STREQUAL "real" OR SEGENGINE_CUDA_MODE STREQUAL "emulated")
  add_compile_definitions(SEGENGINE_HAS_CUDA=1)
endif()
if(SEGENGINE_CUDA_MODE STREQUAL "emulated")
  add_compile_definitions(SEGENGINE_CUDA_EMU=1)
endif()

function(se_add_cuda_library name)
  set(sources ${ARGN})
  if(SEGENGINE_CUDA_MODE STREQUAL "real")
    add_library(${name} STATIC ${sources})
    set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF CUDA_RESOLVE_DEVICE_SYMBOLS ON)
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
    # ptxas reports register spills and any local memory (a spill, or a per-thread array indexed at run
    # time): each access is then a load or store to device memory (cached in L1/L2) instead of a register,
    # a slowdown no CPU test can see. Under SEGENGINE_WERROR (CI) nvcc's -Werror=all-warnings turns the
    # reports into errors. A source whose local memory is deliberate sets the source property
    # SE_CUDA_LOCAL_MEMORY_OK and keeps the spill check. tools/dev/cuda_resources.py lists every kernel's
    # registers, shared memory and stack.
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=--warn-on-spills>)
    foreach(src IN LISTS sources)
      get_source_file_property(local_memory_ok "${src}" SE_CUDA_LOCAL_MEMORY_OK)
      if(NOT local_memory_ok)
        set_property(SOURCE "${src}" APPEND PROPERTY COMPILE_OPTIONS -Xptxas=--warn-on-local-memory-usage)
      endif()
    endforeach()
    target_link_libraries(${name} PUBLIC CUDA::cudart PRIVATE se_warnings)
  elseif(SEGENGINE_CUDA_MODE STREQUAL "emulated")
    set(wrappers)
    foreach(src IN LISTS sources)
      get_filename_component(abs "${src}" ABSOLUTE)
      file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${abs}")
      string(REPLACE "/" "__" flat "${rel}")
      # The wrapper names the source relative to the project root (on the include path), so that two
      # checkouts produce identical wrappers and a compiler cache (ccache base_dir) can share objects.
      set(wrapper "${CMAKE_BINARY_DIR}/emulated_cuda/${flat}.cpp")
      file(CONFIGURE OUTPUT "${wrapper}"
           CONTENT "// Generated: ${rel} compiled as C++ for the CUDA emulator.\n#include \"kernels/emu/cuda_emu.h\"\n#include \"${rel}\"\n")
      list(APPEND wrappers "${wrapper}")
    endforeach()
    add_library(${name} STATIC ${wrappers})
    target_include_directories(${name} BEFORE PRIVATE "${PROJECT_SOURCE_DIR}/kernels/emu/include")
    target_link_libraries(${name} PUBLIC se_emu PRIVATE se_warnings)
  else()
    message(FATAL_ERROR "se_add_cuda_library(${name}): CUDA is off in this build")
  endif()
  target_include_directories(${name} PUBLIC "${PROJECT_SOURCE_DIR}")
endfunction()
