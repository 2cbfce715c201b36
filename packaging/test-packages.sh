#!/usr/bin/env bash
# Builds the Debian packages of an already built tree, installs them with apt-get, then builds
# and runs, OUTSIDE the source tree and against the installed files only: a C program through
# pkg-config, a C++ program through find_package(Reason), and the Java, C# and Go examples.
# Finally purges the packages and checks that nothing of theirs is left.
#
# Usage (Debian 12; root, or a user with sudo): packaging/test-packages.sh [BUILD_DIR]  (default: build)
# The build directory must be configured with -DCMAKE_INSTALL_PREFIX=/usr (scripts/test.sh does)
# and -DREASON_BINDINGS=ON for the binding packages.
set -euo pipefail
START=$SECONDS
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR=/usr/lib/$MULTIARCH
SYSLIB="\(/usr\)\?/lib/$MULTIARCH"  # grep pattern: with merged /usr, ld.so may name /lib
MODEL_SRC=$SRC/tests/fixtures/pipeline/addition-base
PROMPT=$'User: What is 23 + 45?\nAssistant:'

# has PATTERN CMD...: CMD's output matches PATTERN (captured first: `CMD | grep -q` can kill CMD
# with SIGPIPE, which pipefail turns into a failure).
has() { local out; out=$("${@:2}") || return 1; grep -q -e "$1" <<<"$out"; }
say() { printf '\n=== test-packages: %s\n' "$*"; }
die() { printf 'test-packages: FAIL: %s\n' "$*" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi   # apt-get install/remove
apt_get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
[ -f "$BUILD/CPackConfig.cmake" ] || die "$BUILD is not a configured build directory"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
[ "$prefix" = /usr ] || die "$BUILD has CMAKE_INSTALL_PREFIX=$prefix; configure it with -DCMAKE_INSTALL_PREFIX=/usr"
VERSION=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$BUILD/CPackConfig.cmake")
RELEASE=$(sed -n 's/^set(CPACK_DEBIAN_PACKAGE_RELEASE "\(.*\)")$/\1/p' "$BUILD/CPackConfig.cmake")
MAJOR=${VERSION%%.*}
COMPONENTS=$(sed -n 's/^set(CPACK_COMPONENTS_ALL "\(.*\)")$/\1/p' "$BUILD/CPackConfig.cmake" | tr ';' ' ')
declare -A PKG=([runtime]=libreason$MAJOR [dev]=libreason-dev [tools]=reason-tools
                [java]=libreason-java [csharp]=libreason-cil [go]=golang-libreason-dev)
ALL_PKGS="${PKG[runtime]} ${PKG[dev]} ${PKG[tools]} ${PKG[java]} ${PKG[csharp]} ${PKG[go]}"
PKGS=""
for c in $COMPONENTS; do PKGS="$PKGS ${PKG[$c]}"; done
echo "libreason $VERSION-$RELEASE; components: $COMPONENTS"

installed_pkgs() {
  local p out=""
  for p in $ALL_PKGS; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then out="$out $p"; fi
  done
  echo "$out"
}
WORK=$(mktemp -d /tmp/libreason-pkgtest.XXXXXX)
cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then
    local left; left=$(installed_pkgs)
    if [ -n "$left" ]; then echo "test-packages: purging$left after the failure"; apt_get remove --purge -y -qq $left >/dev/null || true; fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
left=$(installed_pkgs)
if [ -n "$left" ]; then say "purging packages left by an earlier run:$left"; apt_get remove --purge -y -qq $left; fi

# ---- build the packages -------------------------------------------------------------------
say "cpack -G DEB in $BUILD"
cmake --build "$BUILD" -j "${JOBS:-2}"
rm -f "$BUILD"/packages/*.deb
(cd "$BUILD" && cpack -G DEB >/dev/null) || die "cpack failed (rerun: cd $BUILD && cpack -G DEB --verbose)"
cd "$BUILD/packages"
for p in $PKGS; do
  ls "${p}_${VERSION}-${RELEASE}_"*.deb >/dev/null 2>&1 || die "no package $p"
done
for f in *.deb; do
  echo "--- $f"
  dpkg-deb -f "$f" Package Version Architecture Depends | sed 's/^/    /'
  [ "$(dpkg-deb -f "$f" Version)" = "$VERSION-$RELEASE" ] || die "$f: version is not $VERSION-$RELEASE"
  dpkg-deb -c "$f" > "$WORK/$f.contents"  # (grep -q on the pipe would break dpkg-deb's pipe)
  grep -q "/usr/share/doc/$(dpkg-deb -f "$f" Package)/copyright$" "$WORK/$f.contents" || die "$f: no copyright file"
done
rt=$(ls ${PKG[runtime]}_${VERSION}-${RELEASE}_*.deb)
grep -q "\./usr/lib/$MULTIARCH/libreason.so.$MAJOR -> libreason.so.$VERSION$" "$WORK/$rt.contents" || die "$rt: no libreason.so.$MAJOR link"
grep -q "\./usr/lib/$MULTIARCH/libreason.so -> libreason.so.$MAJOR$" "$WORK/$(ls ${PKG[dev]}_*.deb).contents" || die "libreason-dev: no libreason.so link"
dpkg-deb -I "$rt" shlibs | grep -x "libreason $MAJOR ${PKG[runtime]} (>= $VERSION-$RELEASE)" || die "$rt: shlibs"
has libdnnl dpkg-deb -f "$rt" Depends || die "$rt: no oneDNN dependency"
has libprotobuf dpkg-deb -f "$rt" Depends || die "$rt: no protobuf dependency"
has "${PKG[runtime]} (= $VERSION-$RELEASE)" dpkg-deb -f "$(ls ${PKG[dev]}_*.deb)" Depends || die "libreason-dev: Depends"

# ---- install --------------------------------------------------------------------------------
say "apt-get install$PKGS"
debs=()
for p in $PKGS; do debs+=("./$(ls "${p}_${VERSION}-${RELEASE}_"*.deb)"); done
apt_get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null || die "apt-get install failed"
cd "$WORK"
for p in $PKGS; do dpkg -L "$p" > "$WORK/$p.list"; done
[ "$(readlink $LIBDIR/libreason.so.$MAJOR)" = "libreason.so.$VERSION" ] || die "$LIBDIR/libreason.so.$MAJOR does not point to libreason.so.$VERSION"
[ "$(readlink $LIBDIR/libreason.so)" = "libreason.so.$MAJOR" ] || die "$LIBDIR/libreason.so does not point to libreason.so.$MAJOR"
has "SONAME.*\[libreason.so.$MAJOR\]" readelf -d "$LIBDIR/libreason.so.$VERSION" || die "SONAME is not libreason.so.$MAJOR"
has "libreason.so.$MAJOR .*=> $SYSLIB/libreason.so.$MAJOR" ldconfig -p || die "ldconfig does not know libreason.so.$MAJOR"
[ "$(zcat /usr/share/doc/${PKG[runtime]}/changelog.Debian.gz | sed -n '1s/.*(\(.*\)).*/\1/p')" = "$VERSION-$RELEASE" ] \
  || die "packaging/changelog has no entry for $VERSION-$RELEASE: add one"
reason --help >/dev/null 2>&1 || die "/usr/bin/reason --help failed"

# Everything below runs in $WORK, with the model and the example sources copied there. Nothing
# may resolve into the source tree or the build directory.
unset LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH CLASSPATH MONO_PATH GOPATH GOFLAGS
export REASON_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
cp -r "$MODEL_SRC" "$WORK/model"
no_tree_paths() {  # FILE...: fail when a file names the source or build directory
  if grep -l -F -e "$SRC/" -e "$BUILD/" "$@" 2>/dev/null; then die "$* refer to $SRC or $BUILD"; fi
}
uses_installed_lib() {  # BINARY: libreason must resolve to the installed copy
  has "libreason.so.$MAJOR => $SYSLIB/libreason.so.$MAJOR" ldd "$1" || { ldd "$1"; die "$1 does not use $LIBDIR/libreason.so.$MAJOR"; }
}

# ---- C through pkg-config ---------------------------------------------------------------------
say "C program via pkg-config"
mkdir c && cp "$SRC/examples/c/generate.c" c/
echo "pkg-config --cflags --libs reason: $(pkg-config --cflags --libs reason)"
[ "$(pkg-config --modversion reason)" = "$VERSION" ] || die "pkg-config --modversion reason is not $VERSION"
# shellcheck disable=SC2046  # pkg-config output is meant to be split into words
(cd c && cc -std=c11 -Wall -o generate generate.c $(pkg-config --cflags --libs reason)) || die "C: cc failed"
uses_installed_lib c/generate
(cd c && ./generate "$WORK/model" "$PROMPT") | tee c/out.txt || die "C: generate failed"
grep -q "^libreason $VERSION$" c/out.txt || die "C: wrong version"
grep -q '16 tokens, 16 streamed' c/out.txt || die "C: no streamed completion"
grep -q 'bad path -> REASON_ERR_IO' c/out.txt || die "C: bad path"

# ---- C++ through find_package(Reason) -----------------------------------------------------------
say "C++ program via find_package(Reason)"
cp -r "$SRC/packaging/tests/cpp-consumer" cpp
cmake -S cpp -B cpp/build -G Ninja -DCMAKE_BUILD_TYPE=Release >cpp/configure.log || { cat cpp/configure.log; die "C++: configure"; }
grep 'Reason_DIR' cpp/build/CMakeCache.txt
grep -q "^Reason_DIR:PATH=$LIBDIR/cmake/Reason$" cpp/build/CMakeCache.txt || die "C++: Reason not found in $LIBDIR/cmake/Reason"
cmake --build cpp/build >/dev/null || die "C++: build"
no_tree_paths cpp/build/build.ninja cpp/build/CMakeCache.txt
uses_installed_lib cpp/build/cpp_consumer
cpp/build/cpp_consumer "$WORK/model" | tee cpp/out.txt || die "C++: cpp_consumer failed"
grep -q 'cpp_consumer: OK' cpp/out.txt || die "C++ consumer"

# ---- Java ---------------------------------------------------------------------------------------
say "Java example (libreason-java)"
if [ ! -f "$SRC/examples/java/GenerateServer.java" ] || [ ! -f "$SRC/examples/java/ServerCheck.java" ]; then
  echo "SKIP: examples/java not present"
elif [[ " $COMPONENTS " != *" java "* ]]; then
  echo "SKIP: libreason-java was not built (REASON_BINDINGS=OFF or no JDK)"
else
  mkdir java && cp "$SRC"/examples/java/*.java java/
  (cd java && javac --release 17 -encoding UTF-8 -cp /usr/share/java/libreason.jar -d classes *.java) || die "Java: javac"
  # The JNI glue is found on java.library.path ($LIBDIR/jni is in Debian's default path).
  (cd java && java -Djava.library.path="$LIBDIR/jni" -cp /usr/share/java/libreason.jar:classes \
     ServerCheck "$WORK/model") 2>&1 | tee java/out.txt || die "Java: ServerCheck failed"
  grep -q 'example_java_http: OK' java/out.txt || die "Java example"
fi

# ---- C# -----------------------------------------------------------------------------------------
say "C# example (libreason-cil)"
if [ ! -f "$SRC/examples/csharp/GrpoLoop.cs" ]; then
  echo "SKIP: examples/csharp not present"
elif [[ " $COMPONENTS " != *" csharp "* ]]; then
  echo "SKIP: libreason-cil was not built (REASON_BINDINGS=OFF or no mono)"
else
  mkdir csharp && cp "$SRC/examples/csharp/GrpoLoop.cs" csharp/
  (cd csharp && mcs -nologo -langversion:7 -r:/usr/lib/cli/libreason/LibReason.dll -out:grpo-loop.exe GrpoLoop.cs) || die "C#: mcs"
  # mono finds LibReason.dll through MONO_PATH, and the glue next to it.
  (cd csharp && MONO_PATH=/usr/lib/cli/libreason mono grpo-loop.exe "$WORK/model" 2) 2>&1 | tee csharp/out.txt || die "C#: grpo-loop.exe failed"
  grep -q 'grpo: 2 steps, reward first' csharp/out.txt || die "C# example"
fi

# ---- Go -----------------------------------------------------------------------------------------
say "Go example (golang-libreason-dev)"
if [ ! -f "$SRC/examples/go/main.go" ] || [ ! -f "$SRC/examples/go/go.mod" ]; then
  echo "SKIP: examples/go not present"
elif [[ " $COMPONENTS " != *" go "* ]]; then
  echo "SKIP: golang-libreason-dev was not built (REASON_BINDINGS=OFF or no go)"
else
  mkdir go && cp "$SRC"/examples/go/main.go "$SRC"/examples/go/go.mod go/
  [ -f "$SRC/examples/go/go.sum" ] && cp "$SRC/examples/go/go.sum" go/
  grep -q '=> /usr/share/gocode/src/libreason.org/go/reason' go/go.mod || die "Go: examples/go/go.mod does not replace with the installed package"
  export GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1
  (cd go && go build -o reason-go .) || die "Go: go build"
  uses_installed_lib go/reason-go
  (cd go && ./reason-go generate -model "$WORK/model" -template 'User: {prompt}\nAssistant:' -max-tokens 48 \
     "What is 23 + 45?") 2>&1 | tee go/out.txt || die "Go: reason-go failed"
  grep -q '\\boxed{68}' go/out.txt || die "Go example: no \\boxed{68}"
  unset GOPATH GOCACHE GOFLAGS GOPROXY GOTOOLCHAIN CGO_ENABLED
fi

# ---- purge and check that nothing is left ---------------------------------------------------------
say "apt-get remove --purge$PKGS"
apt_get remove --purge -y -qq $PKGS >/dev/null || die "apt-get remove --purge failed"
for p in $PKGS; do
  # Purged: unknown to dpkg or "un" (not "rc", which would mean configuration files are left).
  st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  case "$st" in ""|un*) ;; *) die "$p: dpkg status '$st' after the purge" ;; esac
  while IFS= read -r path; do
    [ "$path" = "/." ] && continue
    [ -e "$path" ] || [ -L "$path" ] || continue
    # Only a directory another package owns may stay.
    if [ -d "$path" ] && [ ! -L "$path" ] && dpkg -S "$path" >/dev/null 2>&1; then continue; fi
    [ -d "$path" ] && ls -lA "$path"
    die "$path of $p is still there after the purge"
  done < "$WORK/$p.list"
done
echo "nothing left of$PKGS"
say "OK in $((SECONDS - START)) s"
