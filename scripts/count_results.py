"""count_results.py: sums the test layers' results (JUnit XML from ctest and pytest, pg_regress's
summary) into the one closing line "N passed, N failed". A layer that should have run (test.sh lists
them in <out>/expected) but left no result counts as one failure, and so does a <layer>.failed marker
(a build that failed, a pytest that ended for another reason than failed tests), so a broken layer can
never pass silently."""
import os
import re
import sys
import xml.etree.ElementTree as ET

out = sys.argv[1]
passed = failed = skipped = 0
layers = []


def junit(path):
    global passed, failed, skipped
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    p = f = s = 0
    for suite in suites:
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                f += 1
            elif case.find("skipped") is not None:
                s += 1
            else:
                p += 1
    passed += p
    failed += f
    skipped += s
    return p, f, s


for name in ("unit", "contract", "e2e"):
    xml = os.path.join(out, name + ".xml")
    p = f = s = 0
    if os.path.exists(xml):
        p, f, s = junit(xml)
    if os.path.exists(os.path.join(out, name + ".failed")):
        failed += 1
        f += 1
    if os.path.exists(xml) or f:
        layers.append((name, p, f, s))

reg = os.path.join(out, "regress.log")
if os.path.exists(reg):
    text = open(reg, errors="replace").read()
    ok = len(re.findall(r"\.\.\. ok\b|^\s*ok \d+ ", text, re.M))
    bad = len(re.findall(r"\.\.\. FAILED|^\s*not ok \d+ ", text, re.M))
    if ok + bad == 0:
        bad = 1
    passed += ok
    failed += bad
    layers.append(("regress", ok, bad, 0))

expected_path = os.path.join(out, "expected")
expected = open(expected_path).read().split() if os.path.exists(expected_path) else []
for name in expected:
    if name not in [layer[0] for layer in layers]:
        failed += 1
        layers.append((name, 0, 1, 0))
        print(f"  {name}: ran but left no result (counted as one failure)")

for name, p, f, s in layers:
    print(f"  {name}: {p} passed, {f} failed" + (f", {s} skipped" if s else ""))
if not layers:
    failed += 1
line = f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
print(line)
sys.exit(1 if failed else 0)
