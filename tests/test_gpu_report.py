#!/usr/bin/env python3
"""tests/test_gpu_report.py — the GPU benchmark's merged report (bench/gpu_torch.py report),
which no CI machine can produce for real (no GPU): run it on made-up result files and check
what it concludes. Also that gpu_torch.py times the layer suite of bench/layer_suite.h (the
C programs' table; gpu_torch.py keeps the same rows in Python).

    python3 tests/test_gpu_report.py SRCDIR
"""
import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(SRC, "bench", "gpu_torch.py")
failures = 0


def check(ok, what):
    global failures
    print("%s %s" % ("ok  " if ok else "FAIL", what))
    failures += 0 if ok else 1


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_torch", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # defines functions only; torch is imported by run()
    return mod


def c_suite():
    """The rows of CG_LAYER_SUITE in bench/layer_suite.h, as gpu_torch.py's LAYERS tuples."""
    text = open(os.path.join(SRC, "bench", "layer_suite.h")).read()
    body = text[text.index("CG_LAYER_SUITE[] = {"):]
    body = body[:body.index("};")]
    rows = re.findall(r'\{\s*"([^"]+)"\s*,([^}]*)\}', body)
    return [(name,) + tuple(int(v) for v in rest.split(",") if v.strip()) for name, rest in rows]


def layer_flops(L, N=64):
    name, tr, ci, co, k, s, p, d = L
    out = (d - 1) * s - 2 * p + k if tr else (d + 2 * p - k) // s + 1
    return 2.0 * N * ci * co * k ** 3 * (d if tr else out) ** 3


def results(gt, layer_ms, gen_ms, check_err, pp_ms, critic_ms):
    """A result file as gpu_bench (tool "calograd") or gpu_torch.py writes it."""
    rs = []
    for L in gt.LAYERS:
        f = layer_flops(L)
        rs.append(dict(group="layers", case=L[0], mode="fp32", metric="fwd", ms=layer_ms / 3, flops=f, batch=64))
        rs.append(dict(group="layers", case=L[0], mode="fp32", metric="fwd+bwd", ms=layer_ms, flops=3 * f, batch=64))
    for mode, ms in gen_ms.items():
        rs.append(dict(group="generate", case="generate_b1000", mode=mode, metric="batch", ms=ms, flops=6.0e12,
                       batch=1000))
    for mode, e in check_err.items():
        rs.append(dict(group="check", case="generate_b1_vs_cpu", mode=mode, metric="rel_err", ms=e, flops=0, batch=1))
    rs.append(dict(group="train", case="pp_train_b64", mode="fp32", metric="step", ms=pp_ms, flops=2.0e12, batch=64))
    rs.append(dict(group="train", case="critic_gp_b64", mode="fp32", metric="step", ms=critic_ms, flops=0, batch=64))
    return rs


def report(tmp, cg, th):
    paths = [os.path.join(tmp, n) for n in ("cg.json", "th.json", "gpu.json")]
    for path, obj in zip(paths, (cg, th)):
        with open(path, "w") as f:
            json.dump(obj, f)
    if os.path.exists(paths[2]):
        os.remove(paths[2])
    r = subprocess.run([sys.executable, SCRIPT, "report", "--calograd", paths[0], "--torch", paths[1], "--out",
                        paths[2], "--command", "test"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None, r
    with open(paths[2]) as f:
        out = json.load(f)
    check(not os.path.exists(paths[2] + ".tmp"), "report leaves no temporary file")
    return Goals(out["goals"]), out


class Goals(dict):
    """The report's goals by their text; goals["fragment"] is the one goal whose text holds it."""

    def __init__(self, goals):
        super().__init__((g["goal"], g) for g in goals)

    def __getitem__(self, fragment):
        hits = [g for text, g in self.items() if fragment in text]
        assert len(hits) == 1, "%d goals match %r" % (len(hits), fragment)
        return hits[0]

    def __contains__(self, fragment):
        return any(fragment in text for text in self.keys())


def main():
    gt = load_script()
    check(c_suite() == [tuple(L) for L in gt.LAYERS],
          "gpu_torch.py's LAYERS are bench/layer_suite.h's rows (%d cases)" % len(gt.LAYERS))
    peaks = {"fp32_tflops": 50.0, "tf32_tflops": 400.0, "bf16_tflops": 800.0, "copy_tbps": 3.0}
    th = dict(tool="pytorch", gpu="NVIDIA H100 80GB HBM3", torch="x", cudnn=1, peaks=peaks,
              results=results(gt, layer_ms=3.0, gen_ms={"fp32": 598.0, "tf32": 420.0}, check_err={}, pp_ms=68.4,
                              critic_ms=19.4))
    good = dict(tool="calograd", gpu="NVIDIA H100 80GB HBM3",
                results=results(gt, layer_ms=1.5, gen_ms={"fp32": 140.0, "tf32": 35.0},
                                check_err={"fp32": 2e-5, "tf32": 1e-2}, pp_ms=20.0, critic_ms=9.0))
    with tempfile.TemporaryDirectory() as tmp:
        # 1. calograd twice as fast everywhere, within every time goal and tolerance: all PASS
        goals, out = report(tmp, good, th)
        check(goals is not None, "report runs on well-formed results")
        if goals is None:
            return 1
        check(all(g["ok"] for g in goals.values()) and len(goals) == 7,
              "all 7 goals PASS on results that meet them: %s" % [(k[:24], g["ok"]) for k, g in goals.items()])
        row = next(r for r in out["comparison"] if r["case"] == "c3_32to32_30" and r["metric"] == "fwd+bwd")
        check(abs(row["speedup"] - 2.0) < 1e-12 and abs(row["pct_peak"] - 100 * 3 * layer_flops(gt.LAYERS[1]) / 1.5e-3
                                                           / 1e12 / 50.0) < 1e-9, "ratio and % of peak of a layer")

        # 2. one layer slower than PyTorch, a tensor-core generation too slow, tf32 out of tolerance
        bad = copy.deepcopy(good)
        for r in bad["results"]:
            if r["case"] == "gan3d_k5_8to8_25" and r["metric"] == "fwd+bwd":
                r["ms"] = 3.3
            if r["group"] == "generate" and r["mode"] == "tf32":
                r["ms"] = 45.0
            if r["group"] == "check" and r["mode"] == "tf32":
                r["ms"] = 0.2
        goals, _ = report(tmp, bad, th)
        check(not goals["every layer:"]["ok"] and "gan3d_k5_8to8_25" in goals["every layer:"]["detail"],
              "a layer slower than PyTorch FAILs 'every layer' and is named")
        check(goals["layer suite:"]["ok"], "... while the geometric mean still passes")
        check(goals["in fp32 (batch 1000)"]["ok"], "... and the fp32 generation")
        gen = goals["tensor-core mode"]
        check(not gen["ok"] and "0.0450" in gen["detail"], "tensor-core generation at 0.045 ms/shower FAILs")
        check(not goals["a generated"]["ok"] and "tf32" in goals["a generated"]["detail"],
              "a shower outside the tolerance FAILs the accuracy goal")

        # 3. the two sides timed different problems: no ratio, and the goals say so
        other = copy.deepcopy(th)
        for r in other["results"]:
            if r["case"] == "c4s2_32to64_15":
                r["flops"] *= 8  # as when one side had the 30³ input
        goals, out = report(tmp, good, other)
        row = next(r for r in out["comparison"] if r["case"] == "c4s2_32to64_15" and r["metric"] == "fwd+bwd")
        check(row["speedup"] is None, "a case whose FLOPs differ gets no ratio")
        check(not goals["both sides"]["ok"] and "c4s2_32to64_15" in goals["both sides"]["detail"],
              "... and a FAILing goal naming it")
        check(not goals["every layer:"]["ok"] and not goals["layer suite:"]["ok"],
              "... and the layer-suite goals FAIL (a layer not measured)")

        # 4. nothing but the layers measured: the other goals are listed as not measured
        only = dict(good, results=[r for r in good["results"] if r["group"] == "layers"])
        goals, _ = report(tmp, only, dict(th, gpu="NVIDIA H200"))
        nm = [k[:24] for k, g in goals.items() if not g["ok"] and g["detail"].startswith("not measured")]
        check(len(nm) == 5, "unmeasured goals are listed as FAIL, not measured: %s" % nm)
        check("both sides" in goals and "H200" in goals["both sides"]["detail"], "results of two GPUs FAIL")
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
