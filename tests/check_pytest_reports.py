#!/usr/bin/env python3
"""Checks the pytest reports of one ctest run: every integration test file that
ctest ran left a junit XML, no test in it was skipped, and as many tests ran as
pytest collected. A file that collects fewer tests than it defines (an import
that hides a test, a -k left in the environment) or skips one fails the run.

Usage: check_pytest_reports.py REPORT_DIR CTEST_LOG
"""
import os
import re
import sys
import xml.etree.ElementTree as ET


def main():
    rdir, log = sys.argv[1], sys.argv[2]
    with open(log, errors="replace") as f:
        ran = sorted(set(re.findall(r"Test +#\d+: integration\.(test_\w+) ", f.read())))
    problems = []
    total = 0
    for name in ran:
        xml = os.path.join(rdir, name + ".xml")
        if not os.path.exists(xml) or not os.path.exists(xml + ".collected"):
            problems.append("%s: no pytest report (%s)" % (name, xml))
            continue
        with open(xml + ".collected") as f:
            collected = int(f.read().strip() or 0)
        cases = {}
        skipped = []
        for tc in ET.parse(xml).getroot().iter("testcase"):
            key = (tc.get("classname"), tc.get("name"))
            cases[key] = tc
            if tc.find("skipped") is not None:
                skipped.append(tc.get("name"))
        total += len(cases)
        if collected == 0:
            problems.append("%s: pytest collected no test" % name)
        if len(cases) != collected:
            problems.append("%s: %d tests ran of %d collected" % (name, len(cases), collected))
        for t in skipped:
            problems.append("%s: %s was skipped" % (name, t))
    for p in problems:
        print("pytest reports: " + p)
    print("pytest reports: %d files, %d tests ran, %d problems" % (len(ran), total, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
