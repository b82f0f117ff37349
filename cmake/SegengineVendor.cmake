# cuDNN and cuBLAS as benchmark baselines (bench/vendor): found only for the real CUDA build, never needed by
# the emulated or CPU-only builds, never linked by the engine.
#   SEGENGINE_VENDOR_BENCH  build the cuDNN/cuBLAS reference columns of `segengine bench kernels` and the
#                           .../cudnn, .../cublas cases of bench/ (default ON when cuDNN and cuBLAS are found)
# cuDNN is looked for in the CUDA toolkit (where the toolkit's own packages put it), CUDNN_ROOT (CMake or
# environment variable) and the standard locations (Debian/Ubuntu's libcudnn9-dev-cuda-*).
set(se_vendor_available OFF)
set(se_vendor_unavailable "")
if(SEGENGINE_CUDA_MODE STREQUAL "real")
  find_path(SE_CUDNN_INCLUDE_DIR cudnn.h
            HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_INCLUDE_DIRS} ${CUDAToolkit_LIBRARY_ROOT}
            PATH_SUFFIXES include)
  find_library(SE_CUDNN_LIBRARY cudnn
               HINTS ${CUDNN_ROOT} $ENV{CUDNN_ROOT} ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
               PATH_SUFFIXES lib64 lib lib/x64)
  if(NOT SE_CUDNN_INCLUDE_DIR OR NOT SE_CUDNN_LIBRARY)
    set(se_vendor_unavailable "cuDNN not found (cudnn.h: ${SE_CUDNN_INCLUDE_DIR}, libcudnn: ${SE_CUDNN_LIBRARY}; set CUDNN_ROOT)")
  elseif(NOT TARGET CUDA::cublas)
    set(se_vendor_unavailable "cuBLAS not found (CUDA::cublas of the CUDA toolkit)")
  else()
    set(se_vendor_available ON)
  endif()
else()
  set(se_vendor_unavailable "they need the real CUDA build (this one is '${SEGENGINE_CUDA_MODE}')")
endif()

option(SEGENGINE_VENDOR_BENCH "cuDNN/cuBLAS reference columns in the benchmarks" ${se_vendor_available})
if(SEGENGINE_VENDOR_BENCH AND NOT se_vendor_available)
  if(SEGENGINE_CUDA_MODE STREQUAL "real")
    message(FATAL_ERROR "SEGENGINE_VENDOR_BENCH is ON but ${se_vendor_unavailable}; "
                        "configure with -DSEGENGINE_VENDOR_BENCH=OFF to build without the vendor comparison")
  endif()
  # The cached ON of an earlier real configuration does not apply to this one.
  set(SEGENGINE_VENDOR_BENCH OFF)
endif()

if(SEGENGINE_VENDOR_BENCH)
  add_library(se::cudnn UNKNOWN IMPORTED)
  set_target_properties(se::cudnn PROPERTIES IMPORTED_LOCATION "${SE_CUDNN_LIBRARY}"
                                             INTERFACE_INCLUDE_DIRECTORIES "${SE_CUDNN_INCLUDE_DIR}")
  message(STATUS "segengine: vendor benchmarks on: cuDNN ${SE_CUDNN_LIBRARY}, cuBLAS of the CUDA toolkit")
elseif(se_vendor_available)
  message(STATUS "segengine: vendor benchmarks off (SEGENGINE_VENDOR_BENCH=OFF)")
else()
  message(STATUS "segengine: vendor benchmarks off: ${se_vendor_unavailable}; "
                 "`segengine bench kernels --device cuda` will say \"vendor comparison: not built\"")
endif()
