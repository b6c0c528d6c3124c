"""The suite's own rules: a skipped pytest test fails, and the test command's
report check (tests/check_pytest_reports.py) refuses a run in which a test was
skipped or fewer tests ran than were collected. Each layer is checked alone."""
import os
import shutil
import subprocess
import sys

from conftest import SRC

CHECK = os.path.join(SRC, "tests", "check_pytest_reports.py")
SAMPLE = '''import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("a prerequisite is missing")

def test_other():
    pass
'''


def run_sample(tmp_path, *args, body=SAMPLE):
    d = tmp_path / "sample"
    d.mkdir(exist_ok=True)
    shutil.copy(os.path.join(SRC, "tests", "integration", "conftest.py"), d / "conftest.py")
    (d / "test_sample.py").write_text(body)
    xml = tmp_path / "reports" / "test_sample.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--junitxml=%s" % xml, "test_sample.py", *args],
                       cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120)
    return r, xml


def check(tmp_path, xml_dir):
    log = tmp_path / "ctest.log"
    log.write_text("1/1 Test #1: integration.test_sample ......   Passed    1.00 sec\n")
    return subprocess.run([sys.executable, CHECK, str(xml_dir), str(log)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)


def test_a_skipped_test_fails_pytest(tmp_path):
    r, _ = run_sample(tmp_path)
    assert r.returncode != 0, r.stdout
    assert "1 failed, 2 passed" in r.stdout, r.stdout
    assert "does not skip" in r.stdout, r.stdout


def test_report_check_refuses_a_skip(tmp_path):
    d = tmp_path / "reports"
    d.mkdir()
    (d / "test_sample.xml").write_text(
        '<testsuites><testsuite tests="2" skipped="1">'
        '<testcase classname="test_sample" name="test_runs"/>'
        '<testcase classname="test_sample" name="test_skips"><skipped message="x"/></testcase>'
        '</testsuite></testsuites>')
    (d / "test_sample.xml.collected").write_text("2\n")
    r = check(tmp_path, d)
    assert r.returncode == 1, r.stdout
    assert "test_skips was skipped" in r.stdout, r.stdout


def test_report_check_refuses_fewer_ran_than_collected(tmp_path):
    r, xml = run_sample(tmp_path, "-k", "not test_skips")
    assert r.returncode == 0, r.stdout
    assert (xml.parent / "test_sample.xml.collected").read_text().strip() == "3"
    c = check(tmp_path, xml.parent)
    assert c.returncode == 1, c.stdout
    assert "2 tests ran of 3 collected" in c.stdout, c.stdout


def test_report_check_refuses_a_missing_report(tmp_path):
    d = tmp_path / "reports"
    d.mkdir()
    c = check(tmp_path, d)
    assert c.returncode == 1, c.stdout
    assert "no pytest report" in c.stdout, c.stdout


def test_report_check_accepts_a_full_run(tmp_path):
    r, xml = run_sample(tmp_path, body=SAMPLE.replace('pytest.skip("a prerequisite is missing")',
                                                      "pass"))
    assert r.returncode == 0, r.stdout
    c = check(tmp_path, xml.parent)
    assert c.returncode == 0, c.stdout
    assert "1 files, 3 tests ran, 0 problems" in c.stdout, c.stdout
