#!/usr/bin/env bash
# Installs the dependencies, builds everything (CPU + CUDA when nvcc exists) and runs every
# test: the Release suite, then the ASan/UBSan suite of the bad-input tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/install-deps.sh
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
JOBS="${JOBS:-2}"
CUDA_FLAGS=(-DREASON_CUDA=OFF)
if [ -x /usr/local/cuda/bin/nvcc ]; then
  CUDA_FLAGS=(-DREASON_CUDA=ON -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCMAKE_CUDA_ARCHITECTURES=90)
fi
# Bindings on (ctest runs their tests too); prefix /usr so that build/ also makes the Debian packages.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DREASON_TESTS=ON -DREASON_BINDINGS=ON \
  -DCMAKE_INSTALL_PREFIX=/usr "${CUDA_FLAGS[@]}"
cmake --build build -j "$JOBS"
# Every file configure and build read outside the tree comes from a package install-deps.sh installs.
python3 packaging/audit_deps.py build
# Only reason_* symbols may be exported from libreason.so.
bad=$(nm -D --defined-only build/capi/libreason.so | awk '{print $3}' | grep -v -e '^reason_' -e '^LIBREASON_[0-9]*$' || true)
if [ -n "$bad" ]; then echo "libreason.so exports non-reason_ symbols:"; echo "$bad"; exit 1; fi
readelf -d build/capi/libreason.so | grep -q 'SONAME.*libreason.so.0' || { echo "SONAME is not libreason.so.0"; exit 1; }
# Tests are not benchmarks: passive OpenMP waiting keeps parallel test processes from spinning
# against each other on 2 cores.
export OMP_WAIT_POLICY=PASSIVE
(cd build && ctest --output-on-failure -j "$JOBS")
# Sanitizers: the bad-input and API tests under ASan/UBSan (CPU only).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREASON_SANITIZE=ON -DREASON_CUDA=OFF -DREASON_TESTS=ON
cmake --build build-asan -j "$JOBS" --target test_safetensors test_hf_dir fuzz_safetensors test_gguf fuzz_gguf test_quant test_tokenizer fuzz_tokenizer fuzz_jinja test_jinja_templates test_gguf_model test_capi_bad_input test_sampler test_moe_config test_reward_runner test_pipeline reason_cli \
  test_config_limits test_jsonl_dataset test_pipeline_paths test_generate_limits test_capi_limits example_c_generate
python3 packaging/audit_deps.py build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j "$JOBS" -R '^(test_safetensors|test_hf_dir|fuzz_safetensors|test_gguf|fuzz_gguf|test_quant|test_tokenizer|fuzz_tokenizer|fuzz_jinja|test_jinja_templates|test_gguf_model|test_capi_bad_input|test_sampler|test_moe_config|test_reward_runner|test_pipeline|test_config_limits|test_jsonl_dataset|test_pipeline_paths|test_generate_limits|test_capi_limits|example_c_generate)$')
# ABI: libreason.so against the committed abidiff baseline; fails on an incompatible change
# without a major-version bump (packaging/abi/README.md).
python3 packaging/abi/check_abi.py build
# Debian packages: build, install, use from outside the tree (C, C++, Java, C#, Go), purge.
bash packaging/test-packages.sh build
