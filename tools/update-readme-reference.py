#!/usr/bin/env python3
"""Replace the README's config reference with `blockhub --config-reference`.

usage: tools/update-readme-reference.py [path/to/blockhub]   (default build/blockhub)
"""
import os
import subprocess
import sys

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "blockhub")
ref = subprocess.run([binary, "--config-reference"], check=True, stdout=subprocess.PIPE,
                     text=True).stdout.strip()
path = os.path.join(root, "README.md")
with open(path, encoding="utf-8") as f:
    text = f.read()
begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
with open(path, "w", encoding="utf-8") as f:
    f.write(text[:i] + ref + "\n" + text[j:])
