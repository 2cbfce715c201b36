#!/usr/bin/env python3
"""Dependency audit: every file outside the source and build trees that configure and build
read must come from a Debian package that install-deps.sh installs.

    python3 packaging/audit_deps.py BUILD_DIR [BUILD_DIR ...] [--deps-script packaging/install-deps.sh]

install-deps.sh installs with --no-install-recommends, so a package counts as installed by it
when the script names it in its PACKAGES=( ... ) array, or when a named package Depends or
Pre-Depends on it, transitively (Recommends and Suggests do not count). Essential packages are
on every Debian system and count as well. The array is parsed from the script's text, never
executed, so older versions of the script (without --list) can be audited too.

Files read (absolute paths outside the source tree and the build directories):
  - compile: `ninja -t deps` (every header each object read, from the compiler's depfiles);
    Makefile builds: the *.d depfiles;
  - link and other build commands: absolute paths in `ninja -t commands` (libraries, tools,
    jars), -l flags resolved through -L and the compiler's implicit link directories, the
    compiler's implicit link libraries, and the files GNU ld scripts (libc.so) point to;
  - configure: the CMake files the Ninja generator lists as implicit inputs of
    `build build.ninja: RERUN_CMAKE` (Makefiles: CMAKE_MAKEFILE_DEPENDS), CMakeCache.txt values
    that are existing files, the *Config.cmake / *-config.cmake files in the <Pkg>_DIR package
    directories, the header a find_path() result directory was found by, and the .pc files of
    pkg_check_modules().
Files under /usr/local/cuda (the CUDA toolkit, installed by hand and optional) are allowed and
counted separately. Symbolic links are followed: every packaged file on the way must be from
an installed package, and the file at the end must be packaged.

Exit status: 0 when every file passes, 1 on a violation, 2 on a usage or parse error.
Python 3 standard library only.
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
import sys
import time

PROG = "audit_deps"
CUDA_ROOT = "/usr/local/cuda"
# merged-/usr: dpkg may know a file under either name
MERGED = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def die(msg):
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- install-deps.sh


def parse_packages(text):
    """Package names in the PACKAGES=( ... ) (and PACKAGES+=( ... )) arrays of a bash script."""
    pkgs, inside, found = [], False, False
    for line in text.splitlines():
        code = re.sub(r"(^|\s)#.*", "", line)  # a comment starts a word
        if not inside:
            m = re.match(r"\s*(?:(?:declare|local|readonly)\s+-a\s+)?PACKAGES\+?=\(", code)
            if not m:
                continue
            inside, found, code = True, True, code[m.end():]
        end = code.find(")")
        words = (code[:end] if end >= 0 else code).split()
        if end >= 0:
            inside = False
        for w in words:
            w = w.strip("'\"")
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?", w):
                die(f"cannot read package name {w!r} in the PACKAGES array")
            pkgs.append(w.split(":")[0])
    if not found or inside:
        die("no complete PACKAGES=( ... ) array in the deps script")
    return pkgs


# ---------------------------------------------------------------- dpkg database


def read_dpkg_files(admindir="/var/lib/dpkg"):
    """{path: set(packages)} from the *.list files, with diversions applied."""
    owners = {}
    for lst in glob.glob(os.path.join(admindir, "info", "*.list")):
        pkg = os.path.basename(lst)[:-5].split(":")[0]
        with open(lst, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                p = line.rstrip("\n")
                if p and p != "/.":
                    owners.setdefault(p, set()).add(pkg)
    try:
        with open(os.path.join(admindir, "diversions"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for i in range(0, len(lines) - 2, 3):
        path, to, by = lines[i], lines[i + 1], lines[i + 2]
        listed = owners.get(path, set())
        others = listed - {by}
        if others:  # the diverted packages' file lives at `to`
            owners.setdefault(to, set()).update(others)
        if by == ":":  # local diversion: the file at `path` is nobody's
            owners.pop(path, None)
        else:
            owners[path] = {by} if by in listed else set()
            if not owners[path]:
                owners.pop(path)
    return owners


def split_relations(field):
    """'a (>= 1) | b:any, c' -> [['a', 'b'], ['c']]"""
    groups = []
    for group in field.split(","):
        alts = []
        for alt in group.split("|"):
            alt = re.sub(r"\(.*?\)|\[.*?\]|<.*?>", "", alt).strip()
            if alt:
                alts.append(alt.split(":")[0])
        if alts:
            groups.append(alts)
    return groups


def read_installed():
    """{package: {'depends': [[alts]], 'recommends': [...], 'essential': bool}}, {virtual: {providers}}"""
    fmt = "${Package}\\t${db:Status-Abbrev}\\t${Essential}\\t${Pre-Depends}\\t${Depends}\\t${Recommends}\\t${Suggests}\\t${Provides}\\n"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt], capture_output=True, text=True, check=True).stdout
    pkgs, provides = {}, {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 8 or not f[1].startswith("ii"):
            continue
        name = f[0]
        e = pkgs.setdefault(name, {"depends": [], "recommends": [], "essential": False})
        e["essential"] |= f[2].strip() == "yes"
        e["depends"] += split_relations(f[3]) + split_relations(f[4])
        e["recommends"] += split_relations(f[5]) + split_relations(f[6])
        for alts in split_relations(f[7]):
            for v in alts:
                provides.setdefault(v, set()).add(name)
    return pkgs, provides


def closure(roots, pkgs, provides):
    """The packages an apt-get install --no-install-recommends of roots brings: Depends and
    Pre-Depends, transitively; of alternatives `a | b`, any that is installed; virtual names
    through Provides."""
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen or p not in pkgs:
            continue
        seen.add(p)
        for alts in pkgs[p]["depends"]:
            for a in alts:
                for q in ([a] if a in pkgs else []) + sorted(provides.get(a, ())):
                    if q not in seen:
                        todo.append(q)
    return seen


# ---------------------------------------------------------------- files read


class Files:
    def __init__(self):
        self.why = {}
        self.waived = []  # (cache variable, value)

    def add(self, path, why):
        reasons = self.why.setdefault(os.path.normpath(path), [])
        if why not in reasons:
            reasons.append(why)

    def reasons(self, path, n=3):
        r = self.why[path]
        return "; ".join(r[:n]) + (f"; and {len(r) - n} more" if len(r) > n else "")


def run_ninja(build, tool):
    # -n: a dry run does not open .ninja_log / .ninja_deps for writing (no recompaction)
    r = subprocess.run(["ninja", "-n", "-C", build, "-t", tool], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"ninja -t {tool} in {build} failed: {r.stderr.strip()}")
    return r.stdout


def ninja_unescape_split(s):
    """Split a ninja path list (spaces escaped as '$ ', '$:' and '$$')."""
    out, cur, i = [], "", 0
    while i < len(s):
        c = s[i]
        if c == "$" and i + 1 < len(s):
            cur += s[i + 1]
            i += 2
            continue
        if c == " ":
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if cur:
        out.append(cur)
    return out


def configure_files_ninja(build):
    """Implicit inputs of `build build.ninja: RERUN_CMAKE ... | <files>`."""
    with open(os.path.join(build, "build.ninja"), encoding="utf-8", errors="surrogateescape") as f:
        text = f.read().replace("$\n", " ")
    for line in text.splitlines():
        if line.startswith("build build.ninja") and "RERUN_CMAKE" in line:
            rest = line.split("RERUN_CMAKE", 1)[1]
            if " | " in rest:
                deps = rest.split(" | ", 1)[1].split(" || ")[0]
                return [os.path.join(build, p) for p in ninja_unescape_split(deps)]
    return []


def configure_files_make(build):
    path = os.path.join(build, "CMakeFiles", "Makefile.cmake")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    m = re.search(r"set\(CMAKE_MAKEFILE_DEPENDS(.*?)\)\s*$", text, re.S | re.M)
    if not m:
        return []
    return [os.path.join(build, p) for p in re.findall(r'"([^"]+)"', m.group(1))]


def read_cache(build):
    cache = {}
    with open(os.path.join(build, "CMakeCache.txt"), encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith(("//", "#")):
                continue
            m = re.match(r'"?([^":=]+)"?:([A-Z]+)=(.*)', line)
            if m:
                cache[m.group(1)] = (m.group(2), m.group(3))
    return cache


# CMakeCache.txt entries that find modules only probe for and the build never uses: a fresh
# machine leaves them NOTFOUND and configures and builds the same. They are printed, not checked.
# (The same files still count when a compile or a link reads them.)
WAIVED = {
    "JAVA_AWT_INCLUDE_PATH": "FindJNI looks for jawt.h when find_package(JNI) names no components;"
                             " libreason uses only jni.h and jni_md.h",
    "JAVA_AWT_LIBRARY": "FindJNI looks for libjawt.so when find_package(JNI) names no components;"
                        " nothing links it",
}

FIND_KEYWORDS = {
    "HINTS", "PATHS", "PATH_SUFFIXES", "DOC", "REQUIRED", "ENV", "NAMES_PER_DIR", "NO_CACHE",
    "VALIDATOR", "REGISTRY_VIEW", "CMAKE_FIND_ROOT_PATH_BOTH", "ONLY_CMAKE_FIND_ROOT_PATH",
    "NO_DEFAULT_PATH", "NO_PACKAGE_ROOT_PATH", "NO_CMAKE_PATH", "NO_CMAKE_ENVIRONMENT_PATH",
    "NO_SYSTEM_ENVIRONMENT_PATH", "NO_CMAKE_SYSTEM_PATH", "NO_CMAKE_INSTALL_PREFIX",
    "NO_CMAKE_FIND_ROOT_PATH",
}


def find_path_names(cmake_files):
    """{VAR: [names]} from the find_path(VAR ...) calls in the CMake files configure read."""
    result = {}
    for path in cmake_files:
        if not path.endswith(".cmake") or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for m in re.finditer(r"\bfind_path\s*\(", text, re.I):
            depth, i, quoted = 1, m.end(), False
            while i < len(text) and depth:
                c = text[i]
                if c == '"' and text[i - 1] != "\\":
                    quoted = not quoted
                elif not quoted and c == "(":
                    depth += 1
                elif not quoted and c == ")":
                    depth -= 1
                i += 1
            body = re.sub(r"#[^\n]*", "", text[m.end():i - 1])
            args = [a.strip('"') for a in re.findall(r'"[^"]*"|[^\s"]+', body)]
            if len(args) < 2 or "$" in args[0]:
                continue
            if "NAMES" in args:
                names = []
                for a in args[args.index("NAMES") + 1:]:
                    if a in FIND_KEYWORDS:
                        break
                    names.append(a)
            else:
                names = [args[1]]
            names = [n for n in names if "$" not in n]
            if names:
                result.setdefault(args[0], names)
    return result


def pkg_config_dirs(pkg_config):
    try:
        r = subprocess.run([pkg_config, "--variable", "pc_path", "pkg-config"], capture_output=True, text=True)
        dirs = r.stdout.strip().split(":")
    except OSError:
        dirs = []
    return [d for d in os.environ.get("PKG_CONFIG_PATH", "").split(":") + dirs if d]


def configure_files(build, files):
    if os.path.exists(os.path.join(build, "build.ninja")):
        cmake_files = configure_files_ninja(build)
    else:
        cmake_files = configure_files_make(build)
    for p in cmake_files:
        files.add(p, "configure (CMake input)")
    cache = read_cache(build)
    found_by = find_path_names(cmake_files)
    pc_dirs = None
    for key, (typ, value) in sorted(cache.items()):
        if key in WAIVED:
            if value.startswith("/") and os.path.exists(value):
                files.waived.append((key, value))
            continue
        for v in value.split(";"):
            if not v.startswith("/"):
                continue
            if os.path.isfile(v):
                files.add(v, f"CMakeCache.txt {key}")
            elif os.path.isdir(v) and key in found_by:  # a find_path() result: the header it found
                hit = next((n for n in found_by[key] if os.path.isfile(os.path.join(v, n))), None)
                if hit:
                    files.add(os.path.join(v, hit), f"CMakeCache.txt {key} (find_path)")
            elif os.path.isdir(v) and key.endswith("_DIR") and typ == "PATH":  # <Pkg>_DIR
                for c in sorted(glob.glob(os.path.join(v, "*[Cc]onfig*.cmake"))):
                    files.add(c, f"CMakeCache.txt {key} (package config)")
        if key.endswith("_MODULE_NAME") and typ == "INTERNAL" and value:
            if pc_dirs is None:
                pc_dirs = pkg_config_dirs(cache.get("PKG_CONFIG_EXECUTABLE", ("", "pkg-config"))[1])
            for mod in value.split(";"):
                pc = next((os.path.join(d, mod + ".pc") for d in pc_dirs
                           if os.path.isfile(os.path.join(d, mod + ".pc"))), None)
                if pc:
                    files.add(pc, f"pkg-config module {mod}")
    return cache


def implicit_link(build):
    """Implicit link libraries and directories of the enabled languages."""
    libs, dirs = [], []
    for cfile in glob.glob(os.path.join(build, "CMakeFiles", "*", "CMake*Compiler.cmake")):
        with open(cfile, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for m in re.finditer(r'set\(CMAKE_\w+?_IMPLICIT_LINK_(LIBRARIES|DIRECTORIES) "([^"]*)"\)', text):
            items = [x for x in m.group(2).split(";") if x]
            (libs if m.group(1) == "LIBRARIES" else dirs).extend(items)
    return list(dict.fromkeys(libs)), list(dict.fromkeys(dirs))


def resolve_lib(name, dirs, static):
    if name.startswith(":"):
        cands = [name[1:]]
    else:
        cands = ([] if static else [f"lib{name}.so"]) + [f"lib{name}.a"]
    for d in dirs:
        for c in cands:
            p = os.path.join(d, c)
            if os.path.isfile(p):
                return p
    return None


def ld_script_inputs(path):
    """Absolute paths named by a GNU ld script (e.g. libc.so); [] for ELF files and archives."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return []
    if head[:4] == b"\x7fELF" or head[:7] == b"!<arch>" or b"\0" in head:
        return []
    text = head.decode("utf-8", "replace")
    if not re.search(r"\b(GROUP|INPUT)\s*\(", text):
        return []
    return re.findall(r"(/[^\s()]+)", re.sub(r"/\*.*?\*/", "", text, flags=re.S))


def read_depfile(path, build, files, why):
    """A Make-syntax depfile: every prerequisite (paths relative to the build directory)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read().replace("\\\n", " ")
    except OSError:
        return
    for rule in re.split(r"\n(?=\S)", text):
        parts = re.split(r":(?:\s|$)", rule, maxsplit=1)
        if len(parts) < 2:
            continue
        for p in re.split(r"(?<!\\)\s+", parts[1].strip()):
            if p:
                files.add(os.path.join(build, p.replace("\\ ", " ")), why)


def build_files(build, files, use_ninja):
    if use_ninja:
        # Custom commands with a DEPFILE (SWIG) have no `deps = gcc`: ninja reads their depfile
        # on every run, so it stays on disk (CMakeFiles/d/) instead of in .ninja_deps.
        with open(os.path.join(build, "build.ninja"), encoding="utf-8", errors="surrogateescape") as f:
            edge = "?"
            for line in f:
                if line.startswith("build "):
                    edge = line[6:].split(" ", 1)[0].rstrip(":")
                m = re.match(r"\s+depfile = (.+)$", line)
                if m and "$" not in m.group(1):
                    read_depfile(os.path.join(build, m.group(1).strip()), build, files, f"custom command {edge}")
        current = "?"
        for line in run_ninja(build, "deps").splitlines():
            if not line.strip():
                continue
            if line[0] in " \t":
                files.add(os.path.join(build, line.strip()), f"compile of {current}")
            else:
                current = line.split(": #deps", 1)[0]
        commands = run_ninja(build, "commands").splitlines()
    else:
        for d in glob.glob(os.path.join(build, "**", "*.d"), recursive=True):
            read_depfile(d, build, files, f"compile ({os.path.relpath(d, build)})")
        commands = []
        for t in glob.glob(os.path.join(build, "**", "link.txt"), recursive=True):
            with open(t, encoding="utf-8", errors="surrogateescape") as f:
                commands += f.read().splitlines()
    implicit_libs, implicit_dirs = implicit_link(build)
    linked = False
    for cmd in commands:
        try:
            toks = shlex.split(cmd)
        except ValueError:
            toks = cmd.split()
        is_compile = "-c" in toks
        out = toks[toks.index("-o") + 1] if "-o" in toks[:-1] else None
        tool = next((os.path.basename(t) for t in toks
                     if t.startswith("/") and os.path.isfile(t) and os.access(t, os.X_OK)), "?")
        why = f"compile of {out}" if is_compile else f"link of {out}" if out else f"build command ({tool})"
        ldirs, static, libs = [], False, []
        for i, t in enumerate(toks):
            pieces = [t]
            if t.startswith("-Wl,"):
                pieces = t[4:].split(",")
            for piece in pieces:
                for sub in re.split(r"[:=]", piece) if not piece.startswith("/") else [piece]:
                    if sub.startswith("/") and os.path.isfile(sub):
                        files.add(sub, why)
                if piece in ("-Bstatic", "-static", "-dn", "-non_shared"):
                    static = True
                elif piece in ("-Bdynamic", "-dy", "-call_shared"):
                    static = False
                elif piece.startswith("-L") and len(piece) > 2:
                    ldirs.append(os.path.join(build, piece[2:]))
                elif not is_compile and piece.startswith("-l") and len(piece) > 2:
                    libs.append((piece[2:], static))
        if is_compile or not libs and not any(re.search(r"\.(so[.0-9]*|a|o)$", t) for t in toks):
            continue
        linked = True
        for name, st in libs:
            p = resolve_lib(name, ldirs + implicit_dirs, st)
            if p:
                files.add(p, f"{why} (-l{name})")
    if linked:
        for name in implicit_libs:
            p = resolve_lib(name, implicit_dirs, False)
            if p:
                files.add(p, f"implicit link library -l{name}")
    # files a linker script (libc.so) pulls in
    for p in list(files.why):
        if re.search(r"\.so$|\.a$", p) and os.path.isfile(p):
            for q in ld_script_inputs(p):
                if os.path.isfile(q):
                    files.add(q, f"linker script {p}")


# ---------------------------------------------------------------- checking


def aliases(path):
    """The names dpkg may know a file by: as given, and its merged-/usr twin."""
    out = [path]
    for top in MERGED:
        if path.startswith(top + "/"):
            out.append("/usr" + path)
        elif path.startswith("/usr" + top + "/"):
            out.append(path[4:])
    return out


def link_chain(path):
    """The files a lookup of `path` goes through: [(literal name, name with real dirs)], the
    symbolic links in order and the file itself last."""
    chain, cur = [], path
    for _ in range(40):
        canon = os.path.join(os.path.realpath(os.path.dirname(cur)), os.path.basename(cur))
        chain.append((cur, canon))
        if not os.path.islink(canon):
            break
        cur = os.path.normpath(os.path.join(os.path.dirname(canon), os.readlink(canon)))
    return chain


def inside(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def main():
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dirs", nargs="+", metavar="BUILD_DIR")
    ap.add_argument("--deps-script", default=None, help="default: install-deps.sh next to this script")
    ap.add_argument("--verbose", "-v", action="store_true", help="list every file and its package")
    args = ap.parse_args()
    t0 = time.monotonic()

    deps_script = args.deps_script or os.path.join(os.path.dirname(os.path.abspath(__file__)), "install-deps.sh")
    try:
        with open(deps_script, encoding="utf-8") as f:
            named = parse_packages(f.read())
    except OSError as e:
        die(f"cannot read {deps_script}: {e}")
    script_name = os.path.basename(deps_script)

    files = Files()
    trees = set()
    for b in args.build_dirs:
        b = os.path.abspath(b)
        if not os.path.isfile(os.path.join(b, "CMakeCache.txt")):
            die(f"{b} is not a CMake build directory (no CMakeCache.txt)")
        use_ninja = os.path.exists(os.path.join(b, "build.ninja"))
        cache = configure_files(b, files)
        build_files(b, files, use_ninja)
        trees.add(b)
        trees.add(os.path.realpath(b))
        src = cache.get("CMAKE_HOME_DIRECTORY", ("", ""))[1]
        if src:
            trees.add(src)
            trees.add(os.path.realpath(src))

    cuda_roots = {CUDA_ROOT, os.path.realpath(CUDA_ROOT)}
    owners = read_dpkg_files()
    pkgs, provides = read_installed()
    missing = [p for p in named if p not in pkgs and p not in provides]
    essential = {p for p, e in pkgs.items() if e["essential"]}
    allowed = closure(named, pkgs, provides)
    allowed_ess = closure(sorted(essential), pkgs, provides)
    allowed_all = allowed | allowed_ess

    def owners_of(name_pair):
        s = set()
        for n in dict.fromkeys(name_pair):
            for a in aliases(n):
                s |= owners.get(a, set())
        return s

    checked, cuda, gone, used_pkgs, ess_only = 0, 0, 0, set(), {}
    violations = []  # (file, how to show it, its packages or None for no package)
    for path in sorted(files.why):
        if not path.startswith("/") or inside(path, trees) or inside(os.path.realpath(path), trees):
            continue
        if not os.path.exists(path):
            gone += 1  # a stale dependency of an earlier build
            continue
        if os.path.isdir(path):
            continue
        chain = link_chain(path)
        real = os.path.realpath(path)
        if any(inside(n, cuda_roots) for pair in chain for n in pair) or inside(real, cuda_roots):
            cuda += 1
            continue
        checked += 1
        bad, final_owned = [], False
        for i, pair in enumerate(chain):
            own = owners_of(pair)
            if not own:
                continue
            if i == len(chain) - 1:
                final_owned = True
            if own & allowed_all:
                used_pkgs |= own & allowed_all
                if not own & allowed:
                    ess_only.setdefault(path, own & allowed_ess)
                if args.verbose:
                    print(f"{PROG}: {pair[0]}: {', '.join(sorted(own & allowed_all))}")
            else:
                bad.append((pair[0], sorted(own)))
        if not final_owned and not bad:
            violations.append((path, path if real == path else f"{path} (real path {real})", None))
        for name, own in bad:
            violations.append((path, path if name == path else f"{path} (-> {name})", own))

    print(f"{PROG}: {checked} files checked in {', '.join(args.build_dirs)}, from {len(used_pkgs)} packages; "
          f"{script_name} names {len(named)} packages, {len(allowed)} with their Depends"
          f" (+ {len(allowed_ess - allowed)} essential)")
    if cuda:
        print(f"{PROG}: {cuda} files not from Debian: CUDA toolkit (optional), {CUDA_ROOT} -> {os.path.realpath(CUDA_ROOT)}")
    if ess_only:
        ess = sorted(set().union(*ess_only.values()))
        print(f"{PROG}: {len(ess_only)} files from Essential packages (on every Debian system): {', '.join(ess)}")
    if gone:
        print(f"{PROG}: {gone} files named by stale dependency records no longer exist (skipped)")
    for key, value in sorted(set(files.waived)):
        print(f"{PROG}: not checked: CMakeCache.txt {key}={value}: {WAIVED[key]}")
    for p in missing:
        print(f"{PROG}: warning: {script_name} names {p}, which is not installed here")

    by_pkg = {}
    for path, shown, own in violations:
        if own is None:
            print(f"{PROG}: {shown} belongs to no Debian package, and is not under {CUDA_ROOT}")
            print(f"    read by: {files.reasons(path)}")
            by_pkg.setdefault("(no package)", []).append(path)
            continue
        pkg = ", ".join(own)
        print(f"{PROG}: {shown} belongs to {pkg}, which {script_name} does not install "
              f"(not named, not a Depends of a named package)")
        hint = sorted(q for q in allowed if any(set(alts) & set(own) for alts in pkgs[q]["recommends"]))
        print(f"    read by: {files.reasons(path)}" + (f"; Recommended by {', '.join(hint)}" if hint else ""))
        for o in own:
            by_pkg.setdefault(o, []).append(path)
    dt = time.monotonic() - t0
    if violations:
        summary = ", ".join(f"{p} ({len(v)} file{'s' if len(v) > 1 else ''})" for p, v in sorted(by_pkg.items()))
        print(f"{PROG}: FAIL: {len(violations)} files from packages {script_name} does not install or from no"
              f" package: {summary} [{dt:.1f}s]")
        return 1
    print(f"{PROG}: OK [{dt:.1f}s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
