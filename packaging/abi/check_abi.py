#!/usr/bin/env python3
"""ABI check of libreason.so against the committed baseline (packaging/abi/README.md).

  check_abi.py BUILD_DIR             compare BUILD_DIR/capi/libreason.so with the baseline
  check_abi.py --update BUILD_DIR    write the baseline from BUILD_DIR/capi/libreason.so

The library's public ABI is dumped with abidw (exported reason_* functions and the types of
capi/include reachable from them; the handles stay opaque) and compared with abidiff. It fails
when a function was removed or changed, or a struct or enum changed incompatibly, unless the
SONAME's major version went up. Allowed: new functions, new enumerators, and new members at the
end of a struct that starts with `uint32_t struct_size` (the versioned option/result structs):
before abidiff, such structs of the new build are cut back to the baseline's size, so any other
change to them (a member moved, resized, retyped or removed) still shows.

Needs abigail-tools (abidw, abidiff). The library must carry DWARF for capi/src (capi/CMakeLists.txt
compiles it with -g; the Debian packages are stripped).
"""
import argparse
import copy
import glob
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))

# abidiff exit status bits (libabigail's abidiff_status).
ABIDIFF_ERROR, ABIDIFF_USAGE_ERROR, ABIDIFF_ABI_CHANGE, ABIDIFF_ABI_INCOMPATIBLE_CHANGE = 1, 2, 4, 8


def dump(lib, build_dir, public_headers, out):
    """abidw of the public ABI, with the source paths made relative (machine independent)."""
    cmd = ["abidw", "--no-corpus-path", "--no-comp-dir-path", "--no-show-locs",
           "--exported-interfaces-only", "--drop-private-types",
           "--headers-dir", public_headers,
           "--headers-dir", os.path.join(build_dir, "capi", "include"), lib]
    text = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    prefix = SOURCE_DIR.rstrip("/") + "/"
    text = re.sub(r"path='([^']*)'", lambda m: "path='%s'" % m.group(1).replace(prefix, "", 1), text)
    if "<function-decl name='reason_" not in text:
        sys.exit("check_abi: abidw found no reason_* function with debug info in %s "
                 "(is capi compiled with -g? a stripped library cannot be checked)" % lib)
    with open(out, "w") as f:
        f.write(text)
    return text


def soname_major(abi_file):
    root = ET.parse(abi_file).getroot()
    soname = root.get("soname", "")
    m = re.fullmatch(r"libreason\.so\.(\d+)", soname)
    if not m:
        sys.exit("check_abi: unexpected SONAME '%s' in %s" % (soname, abi_file))
    return soname, int(m.group(1))


def versioned_struct_sizes(root):
    """name -> size in bits of every struct whose first member is struct_size at offset 0."""
    sizes = {}
    for decl in root.iter("class-decl"):
        if decl.get("is-declaration-only") == "yes" or not decl.get("size-in-bits"):
            continue
        members = decl.findall("data-member")
        if not members:
            continue
        first = members[0]
        var = first.find("var-decl")
        if first.get("layout-offset-in-bits") == "0" and var is not None and var.get("name") == "struct_size":
            sizes[decl.get("name")] = int(decl.get("size-in-bits"))
    return sizes


def cut_versioned_structs(new_file, baseline_root, out):
    """Copy of new_file where each versioned struct that grew loses the members past the
    baseline's size (members appended at the end are the allowed way to extend it)."""
    old_sizes = versioned_struct_sizes(baseline_root)
    tree = ET.parse(new_file)
    cut = []
    for decl in tree.getroot().iter("class-decl"):
        name = decl.get("name")
        if name not in old_sizes or not decl.get("size-in-bits"):
            continue
        old, new = old_sizes[name], int(decl.get("size-in-bits"))
        if new <= old:
            continue
        for member in decl.findall("data-member"):
            if int(member.get("layout-offset-in-bits", "0")) >= old:
                decl.remove(member)
        decl.set("size-in-bits", str(old))
        cut.append("%s (%d -> %d bytes)" % (name, old // 8, new // 8))
    tree.write(out, encoding="unicode")
    return sorted(set(cut))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build_dir", help="build directory holding capi/libreason.so")
    ap.add_argument("--update", action="store_true", help="write the baseline instead of checking")
    ap.add_argument("--public-headers", default=os.path.join(SOURCE_DIR, "capi", "include"),
                    help="directory of reason.h (default: capi/include of this tree)")
    args = ap.parse_args()
    build_dir = os.path.abspath(args.build_dir)
    lib = os.path.realpath(os.path.join(build_dir, "capi", "libreason.so"))
    if not os.path.exists(lib):
        sys.exit("check_abi: no %s" % lib)

    with tempfile.TemporaryDirectory() as tmp:
        new_file = os.path.join(tmp, "new.abi")
        dump(lib, build_dir, os.path.abspath(args.public_headers), new_file)
        new_soname, new_major = soname_major(new_file)
        baselines = sorted(glob.glob(os.path.join(HERE, "libreason.so.*.abi")))

        if args.update:
            target = os.path.join(HERE, new_soname + ".abi")
            for old in baselines:
                if old != target:
                    os.remove(old)
                    print("check_abi: removed %s" % os.path.relpath(old, SOURCE_DIR))
            with open(new_file) as src, open(target, "w") as dst:
                dst.write(src.read())
            print("check_abi: wrote %s from %s" % (os.path.relpath(target, SOURCE_DIR), lib))
            return 0

        if len(baselines) != 1:
            sys.exit("check_abi: expected one packaging/abi/libreason.so.*.abi, found %d" % len(baselines))
        baseline = baselines[0]
        old_soname, old_major = soname_major(baseline)
        print("check_abi: %s (%s) against %s" % (lib, new_soname, os.path.relpath(baseline, SOURCE_DIR)))

        # The whole report, additions included, for the log.
        full = subprocess.run(["abidiff", baseline, new_file], stdout=subprocess.PIPE, text=True)
        print(full.stdout.rstrip())
        if full.returncode & (ABIDIFF_ERROR | ABIDIFF_USAGE_ERROR):
            sys.exit("check_abi: abidiff failed (exit %d)" % full.returncode)

        if new_major < old_major:
            sys.exit("check_abi: SONAME went back from %s to %s" % (old_soname, new_soname))
        if new_major > old_major:
            print("check_abi: major version bumped (%s -> %s): incompatible changes are allowed; "
                  "regenerate the baseline (packaging/abi/README.md)" % (old_soname, new_soname))
            return 0

        cut_file = os.path.join(tmp, "new-cut.abi")
        cut = cut_versioned_structs(new_file, ET.parse(baseline).getroot(), cut_file)
        if cut:
            print("check_abi: versioned structs grew (new members at the end are allowed): " + ", ".join(cut))
        strict = subprocess.run(["abidiff", "--no-added-syms", baseline, cut_file],
                                stdout=subprocess.PIPE, text=True)
        if strict.returncode & (ABIDIFF_ERROR | ABIDIFF_USAGE_ERROR):
            print(strict.stdout)
            sys.exit("check_abi: abidiff failed (exit %d)" % strict.returncode)
        if strict.returncode & (ABIDIFF_ABI_CHANGE | ABIDIFF_ABI_INCOMPATIBLE_CHANGE):
            print("---- incompatible ABI changes (after allowing additions) ----")
            print(strict.stdout.rstrip())
            sys.exit("check_abi: FAIL: libreason.so changed its ABI incompatibly without a major-version "
                     "bump (%s). Keep the old functions and structs (add new ones instead), or bump the "
                     "major version in CMakeLists.txt and regenerate the baseline "
                     "(packaging/abi/README.md)." % new_soname)
        print("check_abi: OK (%s compatible with the baseline)" % new_soname)
        return 0


if __name__ == "__main__":
    sys.exit(main())
