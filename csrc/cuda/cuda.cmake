# fastgates_add_cuda_kernels(target): compiles the CUDA kernels (csrc/cuda/kernels.cu) into
# `target` when CMake finds nvcc, and says so to the code through FG_WITH_CUDA, FG_CUDA_ARCHS
# and FG_CUDA_VERSION (read by build_info()). Without nvcc the target keeps the CPU kernels and
# the emulated CUDA kernels, which are plain C++ and always compiled.
#
# The kernels use no libtorch and no cuBLAS (the caller's GEMMs go through torch); the CUDA
# runtime is linked statically, so that the module needs only the driver at run time and
# imports on machines without one.
#
# Architectures: CMAKE_CUDA_ARCHITECTURES if given, else the environment variable
# FASTGATES_CUDA_ARCHS (same syntax, e.g. "86-real;90-virtual"), else the data-centre and
# consumer GPUs from Ampere on plus PTX of the newest for forward compatibility.
# A separate file so that tests/test_cuda_build.py can configure it on its own.

set(FASTGATES_CUDA_SOURCE_DIR "${CMAKE_CURRENT_LIST_DIR}")

# A macro, not a function: enable_language() must run at file scope.
macro(fastgates_add_cuda_kernels target)
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(STATUS "fastgates: nvcc not found, building without the CUDA kernels (the emulated ones are built)")
  else()
    # Chosen before enable_language, which would otherwise pick the compiler's default.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      if(NOT "$ENV{FASTGATES_CUDA_ARCHS}" STREQUAL "")
        set(CMAKE_CUDA_ARCHITECTURES "$ENV{FASTGATES_CUDA_ARCHS}")
      else()
        set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual")
      endif()
    endif()
    enable_language(CUDA)
    _fastgates_cuda_target(${target})
  endif()
endmacro()

function(_fastgates_cuda_target target)
  target_sources(${target} PRIVATE "${FASTGATES_CUDA_SOURCE_DIR}/kernels.cu")
  # The target exists already: its properties do not pick up the variables set above.
  set_target_properties(${target} PROPERTIES CUDA_RUNTIME_LIBRARY Static
                                             CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                                             CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  string(REPLACE ";" "," archs "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(${target} PRIVATE FG_WITH_CUDA=1 "FG_CUDA_ARCHS=\"${archs}\""
                                               "FG_CUDA_VERSION=\"${CMAKE_CUDA_COMPILER_VERSION}\"")
  message(STATUS "fastgates: CUDA kernels for ${CMAKE_CUDA_ARCHITECTURES} (nvcc ${CMAKE_CUDA_COMPILER_VERSION})")
endfunction()
