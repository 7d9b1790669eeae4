"""Is the test suite slower than at an earlier commit? Runs both suites one after the
other on this machine and compares the tests they have in common, each test's time
(setup + call + teardown, from pytest's JUnit XML), so that tests added since do not
count as a slowdown.

    .venv/bin/python bench/suite.py --old 18b78a5       # both suites, ~12 minutes
    .venv/bin/python bench/suite.py --compare OLD.xml NEW.xml

The earlier commit is checked out with ``git worktree`` into a temporary folder and run
with this checkout's .venv (PYTHONPATH points at the worktree, so its own modules are
the ones imported). A test is "the same" when its file name and its name (parameters
included) match, since files moved between folders. Run it alone: a training beside it
measures nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """``rev`` checked out with ``git worktree`` in a temporary folder, removed after."""
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), rev],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            yield worktree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)],
                           cwd=ROOT, check=False, capture_output=True)


def run_suite(checkout: Path, xml: Path) -> float:
    """pytest over ``checkout``'s tests; the wall seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={xml}"], cwd=checkout, env=env, check=False,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def test_times(xml: Path) -> dict[tuple[str, str], float]:
    """(file name, test name) -> seconds, for the tests that passed."""
    out: dict[tuple[str, str], float] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        if any(child.tag in ("failure", "error", "skipped") for child in case):
            continue
        module = case.attrib["classname"].split(".")
        # A test in a class has the class as the last part: keep the file's part.
        name = next((m for m in reversed(module) if m.startswith("test_")), module[-1])
        out[(name, case.attrib["name"])] = float(case.attrib["time"])
    return out


def compare(old_xml: Path, new_xml: Path) -> dict:
    old, new = test_times(old_xml), test_times(new_xml)
    common = sorted(old.keys() & new.keys())
    old_s = sum(old[k] for k in common)
    new_s = sum(new[k] for k in common)
    slower = sorted(common, key=lambda k: new[k] - old[k], reverse=True)[:8]
    return {"tests_old": len(old), "tests_new": len(new), "tests_in_both": len(common),
            "common_old_s": round(old_s, 1), "common_new_s": round(new_s, 1),
            "common_ratio_new_over_old": round(new_s / old_s, 3) if old_s else None,
            "all_old_s": round(sum(old.values()), 1), "all_new_s": round(sum(new.values()), 1),
            "most_slowed": [{"test": f"{f}::{n}", "old_s": round(old[(f, n)], 2),
                             "new_s": round(new[(f, n)], 2)} for f, n in slower]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", help="the earlier commit to run and compare with")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD_XML", "NEW_XML"),
                   help="compare two JUnit XML files instead of running anything")
    args = p.parse_args(argv)
    if not (args.old or args.compare):
        p.error("give --old REV or --compare OLD_XML NEW_XML")
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                               f"{os.cpu_count()} cores"}
    if args.compare:
        result.update(compare(*args.compare))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            old_xml, new_xml = Path(tmp) / "old.xml", Path(tmp) / "new.xml"
            with checkout(args.old) as worktree:
                result["old_wall_s"] = round(run_suite(worktree, old_xml), 1)
            result["new_wall_s"] = round(run_suite(ROOT, new_xml), 1)
            result.update({"old": args.old}, **compare(old_xml, new_xml))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
