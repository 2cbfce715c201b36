#!/usr/bin/env bash
# Installs every Debian 12 package libreason's build and tests need. Idempotent.
# Usage: sudo packaging/install-deps.sh        (runs apt-get update first)
#        packaging/install-deps.sh --list       (prints the package names, one a line; installs nothing)
# Packages are installed without their Recommends, so everything the build reads must be named
# here or be a Depends of something named here: packaging/audit_deps.py checks that in CI.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libdnnl-dev                      # oneDNN 2.6: CPU matmul primitives
  ocl-icd-opencl-dev               # dnnl-config.cmake finds OpenCL (libdnnl-dev only Recommends it)
  libprotobuf-dev protobuf-compiler
  libpcre2-dev libutf8proc-dev     # tokenizer regexes (PCRE2 + JIT), NFC
  nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev
  libcpp-httplib-dev curl          # `reason serve`'s HTTP server; curl for its tests
  libopenmpi-dev openmpi-bin       # data-parallel jobs over MPI: mpi.h + libmpi, mpirun for the 2-rank tests
  catch2                           # Catch2 v2 single header
  swig
  default-jdk-headless junit5      # Java binding: javac/jar/jni.h, JUnit 5 console launcher
  abigail-tools dpkg-dev file python3   # packaging: abidw/abidiff ABI check, dpkg-shlibdeps for CPack
  golang-go                        # Go binding: cgo, go test (-race, -asan with gcc)
  mono-devel libnunit-cil-dev nunit-console   # C# binding: mcs/mono, NUnit 2.6 tests
)
if [ "${1:-}" = "--list" ]; then printf '%s\n' "${PACKAGES[@]}"; exit 0; fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The CUDA toolkit is not a Debian package here: when /usr/local/cuda/bin/nvcc exists the
# build compiles the CUDA backend (sm_90) as well; without it the CPU build is complete.
if [ -x /usr/local/cuda/bin/nvcc ]; then echo "install-deps: CUDA toolkit found at /usr/local/cuda"; fi
echo "install-deps: all packages present"
