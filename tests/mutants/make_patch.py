#!/usr/bin/env python3
"""Write a mutant: tests/mutants/make_patch.py NAME CTEST_REGEX [PYTEST_K] < spec.

spec: blocks of "@@@ path", then the old text, "---8<---", the new text, "@@@ end".
The patch replaces the old text (which must occur once) in the current tree.
"""
import difflib
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
name, regex = sys.argv[1], sys.argv[2]
kexpr = sys.argv[3] if len(sys.argv) > 3 else None
spec = sys.stdin.read()
out = ["# ctest: %s\n" % regex]
if kexpr:
    out.append("# pytest-k: %s\n" % kexpr)
originals, mutated = {}, {}
for block in spec.split("@@@ ")[1:]:
    head, _, body = block.partition("\n")
    if head.strip() == "end":
        continue
    path = head.strip()
    old, _, new = body.partition("---8<---\n")
    if path not in originals:
        with open(os.path.join(root, path)) as f:
            originals[path] = mutated[path] = f.read()
    text = mutated[path]
    assert text.count(old) == 1, "%s: the old text occurs %d times" % (path, text.count(old))
    mutated[path] = text.replace(old, new)
for path in originals:
    out.extend(difflib.unified_diff(originals[path].splitlines(True),
                                    mutated[path].splitlines(True), "a/" + path, "b/" + path))
with open(os.path.join(root, "tests", "mutants", name + ".patch"), "w") as f:
    f.writelines(out)
