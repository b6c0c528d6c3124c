#!/usr/bin/env python3
"""One table of ratios from the logs of bench/run-all.sh.

Usage: summarize.py OUT NAME|COMMAND...

From OUT/NAME.log it keeps the lines that carry a ratio, a target, a median
or a latency percentile. A line printed once per run (the same words, other
figures) becomes one row: its first figure (of "min / median / max", the
median) in every run and their median.
Prints a Markdown table: benchmark, figure, the runs' values, the median.
"""
import os
import re
import statistics
import sys

KEEP = re.compile(r"ratio|target|median|p99|/ null|/ traffic|/ ceiling|/ plain|/ single",
                  re.IGNORECASE)
SECTION = re.compile(r"^map: ")
NUMBER = re.compile(r"(?<![\w.-])-?\d[\d,]*\.?\d*")  # not the digits of a name: p99, c256


def rows(log):
    """(label, [first figure of each occurrence]) in order of first appearance."""
    order, values = [], {}
    section = ""
    header = None  # a table's header line that names a ratio: its rows are kept
    for line in log.splitlines():
        line = line.strip()
        if not line:
            header = None
            continue
        if KEEP.search(line) and not NUMBER.search(line):
            header = re.sub(r"\s+", " ", line)
            continue
        if header is not None and re.match(r"[A-Za-z][\w+.-]* +-?\d", line):
            word, nums = line.split()[0], NUMBER.findall(line)
            label = "%s%s: %s (%s)" % (section, header.split()[0], word, header)
            if label not in values:
                order.append(label)
                values[label] = []
            # the column named "ratio", else the first figure
            cols = header.split()
            at = cols.index("ratio") - 1 if "ratio" in cols else 0
            values[label].append(float(nums[min(at, len(nums) - 1)].replace(",", "")))
            continue
        if SECTION.match(line):  # e.g. run-blockmap.sh's two maps
            section = "[%s] " % line[:40]
            continue
        if not line or not KEEP.search(line) or not NUMBER.search(line):
            continue
        if len(re.findall(r"\w=", line)) >= 3:  # a raw key=value dump of one run
            continue
        # What comes before the first ": " names the figure, numbers and all
        # ("... 256 connections: 0.21"); the value is the first number after it.
        head, sep, rest = line.partition(": ")
        if not sep or not NUMBER.search(rest):
            head, rest = "", line
        label = section + (head + ": " if head else "") + NUMBER.sub("#", rest)
        label = re.sub(r"\s+", " ", label)
        nums = NUMBER.findall(rest)
        # "min / median / max": the median
        first = (nums[1] if "min / median / max" in line and len(nums) > 1 else nums[0]).replace(",", "")
        try:
            value = float(first)
        except ValueError:
            continue
        if label not in values:
            order.append(label)
            values[label] = []
        values[label].append(value)
    return [(label, values[label]) for label in order]


def fmt(v):
    return ("%.0f" % v) if abs(v) >= 100 else ("%.3g" % v)


def main():
    out = sys.argv[1]
    print()
    machine = os.path.join(out, "machine.txt")
    if os.path.exists(machine):
        with open(machine, encoding="utf-8") as f:
            print(f.read().strip())
        print()
    print("| benchmark | figure (# = the value) | each run | median |")
    print("|---|---|---|---|")
    for entry in sys.argv[2:]:
        name = entry.split("|", 1)[0]
        path = os.path.join(out, name + ".log")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            found = rows(f.read())
        if not found:
            print("| %s | (no ratio line: see %s) | | |" % (name, path))
        for label, vals in found:
            med = statistics.median(vals)
            print("| %s | %s | %s | %s |" % (name, label.replace("|", "/"),
                                             ", ".join(fmt(v) for v in vals), fmt(med)))


if __name__ == "__main__":
    main()
