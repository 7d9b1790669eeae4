"""bench/suite.py's comparison of two JUnit XML files: only tests in both count, matched
by file name and test name whatever folder the file moved to; failed and skipped tests
do not count."""
import json

import pytest

from bench import suite

OLD = """<testsuites><testsuite>
<testcase classname="tests.genmodels.test_service" name="test_a[1]" time="1.0"/>
<testcase classname="tests.genmodels.test_service" name="test_b" time="2.0"/>
<testcase classname="tests.test_gone" name="test_removed" time="9.0"/>
<testcase classname="tests.test_x.TestGroup" name="test_c" time="0.5"/>
</testsuite></testsuites>"""
NEW = """<testsuites><testsuite>
<testcase classname="tests.serving.test_service" name="test_a[1]" time="1.5"/>
<testcase classname="tests.serving.test_service" name="test_b" time="2.5"><failure/></testcase>
<testcase classname="tests.test_x.TestGroup" name="test_c" time="0.8"/>
<testcase classname="tests.test_new" name="test_added" time="30.0"/>
</testsuite></testsuites>"""


def test_only_tests_in_both_are_compared(tmp_path):
    (tmp_path / "old.xml").write_text(OLD)
    (tmp_path / "new.xml").write_text(NEW)
    got = suite.compare(tmp_path / "old.xml", tmp_path / "new.xml")
    assert got["tests_in_both"] == 2  # test_a moved folders; test_b failed in new
    assert (got["common_old_s"], got["common_new_s"]) == (1.5, 2.3)
    assert got["common_ratio_new_over_old"] == pytest.approx(2.3 / 1.5, abs=1e-3)
    assert got["all_new_s"] == 32.3
    assert got["most_slowed"][0] == {"test": "test_service::test_a[1]", "old_s": 1.0,
                                     "new_s": 1.5}


def test_compare_mode_prints_json(tmp_path, capsys):
    (tmp_path / "a.xml").write_text(OLD)
    assert suite.main(["--compare", str(tmp_path / "a.xml"), str(tmp_path / "a.xml")]) == 0
    assert json.loads(capsys.readouterr().out)["common_ratio_new_over_old"] == 1.0


def test_nothing_to_do_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        suite.main([])
    assert e.value.code == 2
