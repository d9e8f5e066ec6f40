#!/usr/bin/env python3
"""tests/test_eval_cli.py — `calograd evaluate` on bad input: every case exits 2 with one
message naming the problem (and the file), or, for samples too small for a metric, exits 0
with null metrics and warnings in metrics.json and the report. Python's standard library
only.

usage: test_eval_cli.py CALOGRAD
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

failures = []


def run(cg, args):
    return subprocess.run([cg] + args, capture_output=True, text=True)


def expect(what, p, code, *needles):
    msg = (p.stderr + p.stdout).strip()
    ok = p.returncode == code and all(n in msg for n in needles)
    if code == 2:
        ok = ok and msg.count("\n") == 0 and msg.startswith("calograd evaluate: ")  # one line
    print("  %-4s %-40s exit %d: %s" % ("ok" if ok else "FAIL", what, p.returncode, msg.splitlines()[:1]))
    if not ok:
        failures.append(what)


def main():
    cg = sys.argv[1]
    work = tempfile.mkdtemp(prefix="cg_eval_cli.")
    try:
        def sim(name, *args):
            path = os.path.join(work, name)
            subprocess.run([cg, "simulate", "-o", path, "--seed", "3"] + list(args), check=True, capture_output=True)
            return path
        a = sim("a.cvox", "--geometry", "custom", "--grid", "4,6,6", "--events", "60")
        b = sim("b.cvox", "--geometry", "custom", "--grid", "4,6,6", "--events", "60")
        other = sim("other.cvox", "--geometry", "custom", "--grid", "4,6,7", "--events", "60")
        theta = sim("theta.cvox", "--geometry", "custom", "--grid", "4,6,6", "--events", "60", "--theta", "60:90")
        empty = sim("empty.cvox", "--geometry", "custom", "--grid", "4,6,6", "--events", "0")
        small = sim("small.cvox", "--geometry", "custom", "--grid", "4,6,6", "--events", "5")
        trunc = os.path.join(work, "trunc.cvox")
        with open(a, "rb") as f, open(trunc, "wb") as g:
            g.write(f.read()[:-40])
        flipped = os.path.join(work, "flipped.cvox")
        data = bytearray(open(a, "rb").read())
        data[len(data) // 2] ^= 0x40
        open(flipped, "wb").write(bytes(data))
        afile = os.path.join(work, "a_file")
        open(afile, "w").write("x")
        out = os.path.join(work, "out")

        def ev(ref, gen, *extra, o=out):
            return run(cg, ["evaluate", "--reference", ref, "--generated", gen, "--out", o] + list(extra))

        expect("no arguments", run(cg, ["evaluate"]), 2, "--reference")
        p = run(cg, ["evaluate", "--help"])
        print("  %-4s %-40s exit %d" % ("ok" if p.returncode == 0 and "--generated" in p.stdout else "FAIL",
                                         "--help", p.returncode))
        if p.returncode != 0:
            failures.append("--help")
        expect("unknown flag", ev(a, b, "--bogus"), 2, "--bogus")
        expect("missing reference file", ev(os.path.join(work, "nope.cvox"), b), 2, "nope.cvox")
        expect("missing generated file", ev(a, os.path.join(work, "nope2.cvox")), 2, "nope2.cvox")
        expect("not a .cvox file", ev(afile, b), 2, "a_file")
        expect("truncated file", ev(a, trunc), 2, "trunc.cvox")
        expect("corrupted file", ev(flipped, b), 2, "flipped.cvox")
        expect("different geometries", ev(a, other), 2, "different geometries", "other.cvox")
        expect("mismatched conditioning", ev(a, theta), 2, "mismatched conditioning", "theta")
        expect("empty reference", ev(empty, b), 2, "empty.cvox has no events")
        expect("empty generated", ev(a, empty), 2, "empty.cvox has no events")
        expect("negative threshold", ev(a, b, "--threshold", "-1"), 2, "--threshold")
        expect("decreasing energy bins", ev(a, b, "--energy-bins", "50,10"), 2, "--energy-bins")
        expect("zero classifier width", ev(a, b, "--cls-width", "0"), 2, "--cls-width")
        expect("output folder is a file", ev(a, b, o=afile), 2, "a_file")
        # too few showers for the metrics: exit 0, null metrics and warnings, a report
        p = ev(small, small, "--quiet", o=os.path.join(work, "small_out"))
        ok = p.returncode == 0
        try:
            m = json.load(open(os.path.join(work, "small_out", "metrics.json")),
                          parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            ok = ok and m["observables"]["e_vis"]["separation_power"] is None
            ok = ok and m["classifier"]["high"]["auc"] is None and len(m["warnings"]) >= 3
            ok = ok and os.path.exists(os.path.join(work, "small_out", "index.html"))
        except (OSError, ValueError, KeyError) as e:
            print("    " + str(e))
            ok = False
        print("  %-4s %-40s exit %d" % ("ok" if ok else "FAIL", "too few showers (null + warnings)", p.returncode))
        if not ok:
            failures.append("too few showers")
        # nothing half-written was left in the output folder of a failed run
        left = [f for f in os.listdir(work) if ".tmp." in f]
        if left:
            print("  FAIL temporary files left: %s" % left)
            failures.append("temporary files")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d failed" % len(failures) if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
