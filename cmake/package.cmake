# package.cmake -- `cpack` in the build folder: Debian packages installing
# under /usr. gpuq (the program, its systemd unit and docs) depends on what
# dpkg-shlibdeps finds the program links (libpcre2-8-0 and libutf8proc for
# the tokenizers among them), no CUDA library;
# gpuq-cuda adds the CUDA module (lib/gpuq/libgpuq-cuda.so) where CUDA was
# built, for hosts with NVIDIA's driver, CUDA runtime and cuBLAS.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gpuq)
set(CPACK_PACKAGE_VENDOR gpuq)
set(CPACK_PACKAGE_CONTACT "gpuq maintainers <gpuq@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)

set(CPACK_DEBIAN_WORKER_PACKAGE_NAME gpuq)
set(CPACK_DEBIAN_WORKER_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_WORKER_PACKAGE_SUGGESTS "redis-server, gpuq-cuda")
set(CPACK_COMPONENT_WORKER_DESCRIPTION "GPU batching job-queue worker over Redis Streams
gpuq takes small compute jobs (mlp, matmul, knn, softmax, ...) from Redis
Streams, batches them into large GEMMs and kernels on the CPU (oneDNN) or,
with gpuq-cuda, a GPU, and writes the results back. One program: the worker
daemon and the client commands (enqueue, wait, stats, dead).")
set(CPACK_COMPONENTS_ALL worker)

if(GPUQ_HAVE_CUDA)
  set(CPACK_COMPONENTS_ALL worker cuda)
  set(CPACK_DEBIAN_CUDA_PACKAGE_NAME gpuq-cuda)
  # the CUDA runtime and cuBLAS come from NVIDIA's toolkit, not Debian's packages
  set(CPACK_DEBIAN_CUDA_PACKAGE_SHLIBDEPS OFF)
  set(CPACK_DEBIAN_CUDA_PACKAGE_DEPENDS "gpuq (= ${PROJECT_VERSION})")
  set(CPACK_COMPONENT_CUDA_DESCRIPTION "CUDA backend for the gpuq worker
The module gpuq loads for --backend auto or cuda: cuBLAS GEMMs and CUDA
kernels for every op. Needs NVIDIA's driver and CUDA ${CUDAToolkit_VERSION_MAJOR}'s runtime and cuBLAS
(found through ${CUDAToolkit_LIBRARY_DIR} or the loader's path).")
endif()
include(CPack)
