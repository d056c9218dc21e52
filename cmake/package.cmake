# package.cmake -- `cpack -G DEB` in the build folder: gpuq_VERSION_arch.deb,
# the program, its systemd unit and docs, installed under /usr. Its Depends
# are what dpkg-shlibdeps finds the program links (hiredis, OpenBLAS, ...).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gpuq)
set(CPACK_PACKAGE_VENDOR gpuq)
set(CPACK_PACKAGE_CONTACT "gpuq maintainers <gpuq@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "GPU batching job-queue worker over Redis Streams")
set(CPACK_PACKAGE_DESCRIPTION "gpuq takes small compute jobs (mlp, matmul, knn, softmax, ...) from Redis
Streams, batches them into large GEMMs and kernels on the CPU (OpenBLAS) or a GPU,
and writes the results back. One program: the worker daemon and the client
commands (enqueue, wait, stats, dead).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS redis-server)
set(CPACK_COMPONENTS_ALL worker)
include(CPack)
