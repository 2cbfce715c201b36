#!/usr/bin/env bash
# The crash/leak check of the Java binding under AddressSanitizer (ctest binding_java_asan, in a
# build configured with -DREASON_SANITIZE=ON so libreason.so and libreason_java.so are
# instrumented). The JVM itself is not instrumented: libasan (and libstdc++, so that ASan's
# __cxa_throw interceptor resolves: the JVM links its own C++ runtime statically) are preloaded.
#   handle_segv=0 / allow_user_segv_handler=1: the JVM uses SIGSEGV itself (implicit null checks,
#     safepoint polls); ASan must leave it alone.
#   use_tls=0: LeakSanitizer's stop-the-world tracer faults when it reads the JVM threads' TLS.
# The tests (ModelTest, ConcurrencyTest: a Java reward called from the pipeline's worker threads,
# generation with Java listeners on several threads, closing a model under running calls;
# CleanerTest: objects freed by the Cleaner in any order) run twice in one JVM, then LeakCheck
# makes the GC/Cleaner/finalizers free everything unreachable and exits. LeakSanitizer then lists
# what is still allocated; the JVM's own allocations (never freed at exit) are not ours, so the
# check fails only on a leak whose allocation was made by libreason or the glue (its first
# frame past the allocator is in them). Any ASan error (use-after-free, overflow, double free)
# fails the run at once.
# Usage: asan_check.sh JAVA GLUE_SO LIBREASON_JAR TESTS_JAR JUNIT_STANDALONE_JAR FIXTURES_DIR
set -u
JAVA=$1 GLUE=$2 JAR=$3 TESTS=$4 JUNIT=$5 FIXTURES=$6
CXX=${CXX:-c++}
ASAN_RT=$($CXX -print-file-name=libasan.so)
STDCXX=$($CXX -print-file-name=libstdc++.so.6)
LOG=$(mktemp /tmp/binding_java_asan.XXXXXX)
trap 'rm -f "$LOG"' EXIT
LD_PRELOAD="$ASAN_RT $STDCXX" \
ASAN_OPTIONS=detect_leaks=1:handle_segv=0:allow_user_segv_handler=1:halt_on_error=1:fast_unwind_on_malloc=0 \
LSAN_OPTIONS=use_tls=0:report_objects=0 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$JAVA" -Dlibreason.java.library="$GLUE" -Dlibreason.fixtures="$FIXTURES" -XX:+UseSerialGC \
  -cp "$JAR:$TESTS:$JUNIT" org.libreason.LeakCheck 2 >"$LOG" 2>&1
rc=$?
grep -v '^\s*#\|^\s*$' "$LOG" | grep -v 'leak of\|^-\+$\|SUMMARY: AddressSanitizer: [0-9]* byte(s) leaked' | tail -40
if grep -q 'ERROR: AddressSanitizer\|runtime error:' "$LOG"; then
  echo "binding_java_asan: AddressSanitizer/UBSan error:"
  grep -A40 'ERROR: AddressSanitizer\|runtime error:' "$LOG" | head -80
  exit 1
fi
if ! grep -q 'LeakCheck: all tests passed' "$LOG"; then
  echo "binding_java_asan: the tests failed or the JVM crashed (exit $rc)"
  exit 1
fi
# Direct leaks whose allocating frame (the first one past malloc/new) is libreason or the glue.
ours=$(awk '
  /^Direct leak of/ { head = $0; frames = ""; inblk = 1; first = ""; next }
  inblk && /^ *#[0-9]+ / {
    frames = frames "\n" $0
    if (first == "" && $0 !~ /asan_|libasan|operator new|malloc|calloc|realloc|aligned_alloc|posix_memalign|libstdc\+\+/) first = $0
    next
  }
  inblk && /^ *$/ {
    if (first ~ /libreason|reason_java|reason_binding|\/sdk\/|\/capi\/|\/kernels\/|\/bindings\//) print head frames "\n"
    inblk = 0
  }' "$LOG")
total=$(grep -o 'SUMMARY: AddressSanitizer: [0-9]* byte(s) leaked in [0-9]* allocation(s)' "$LOG" || echo "no leak report")
if [ -n "$ours" ]; then
  echo "binding_java_asan: memory allocated by libreason or the glue was leaked:"
  echo "$ours" | head -120
  exit 1
fi
echo "binding_java_asan: no ASan error; LeakSanitizer at exit: $total, none allocated by libreason or the glue"
echo "binding_java_asan: OK"
