#!/usr/bin/env python3
"""Import circles between the top-level modules of each crate (and between crates).

    scripts/module-cycles.py [CRATE_DIR ...]     (default: every crate under crates/)

A module's dependencies are the `crate::NAME` paths its files mention (a module is a file
`src/NAME.rs` or a directory `src/NAME/`; in the binary crate, crates/cli/NAME.rs), and
`use crate::{a, b::c}` lists. Test modules (`#[cfg(test)]` to the end of a file) and comments
are left out: tests may reach across, and doc links are not imports. Prints every cycle found; exit status 1 if there is one.
"""
import os
import re
import sys


def strip_tests(text):
    """The file's code before its test module, without comments (doc links are no imports)."""
    i = text.find("#[cfg(test)]")
    text = text if i < 0 else text[:i]
    return re.sub(r"//[^\n]*", "", text)


def modules(src):
    mods = {}
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods[name[:-3]] = [p]
        elif os.path.isdir(p):
            files = [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if f.endswith(".rs")]
            mods.setdefault(name, []).extend(files)
    return mods


def deps(files, names):
    out = set()
    for f in files:
        text = strip_tests(open(f).read())
        for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
            g = m.group(1)
            parts = re.findall(r"(?:^|[{,]\s*)(\w+)", g) if g.startswith("{") else [g]
            out.update(p for p in parts if p in names)
    return out


def cycles(graph):
    found, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cyc = path[path.index(nxt):]
                key = frozenset(cyc)
                if key not in seen:
                    seen.add(key)
                    found.append(cyc + [nxt])
            elif len(path) < 12:
                walk(nxt, path + [nxt])

    for n in sorted(graph):
        walk(n, [n])
    return found


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = sys.argv[1:] or sorted(
        os.path.join(root, "crates", d) for d in os.listdir(os.path.join(root, "crates")))
    bad = 0
    for d in dirs:
        src = os.path.join(d, "src") if os.path.isdir(os.path.join(d, "src")) else d
        mods = modules(src)
        graph = {m: deps(fs, mods) - {m} for m, fs in mods.items()}
        cyc = cycles(graph)
        print(f"{os.path.basename(d)}: {len(mods)} modules, "
              f"{'no cycle' if not cyc else f'{len(cyc)} cycle(s)'}")
        for c in cyc:
            print("   " + " -> ".join(c))
        bad += len(cyc)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
