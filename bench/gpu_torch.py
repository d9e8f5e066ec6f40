#!/usr/bin/env python3
"""bench/gpu_torch.py — PyTorch's side of issue 4's GPU benchmark, and the merged report.

    python3 bench/gpu_torch.py run --json bench/results/gpu_torch.json [--modes fp32,tf32,bf16] [--smoke]
    python3 bench/gpu_torch.py report --calograd C.json --torch T.json --out bench/results/gpu.json

`run` times the very cases of bench/gpu_bench.c with PyTorch on the same GPU: eager mode,
cuDNN with cudnn.benchmark (its best algorithm per shape), in three modes: fp32 with TF32
off (torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False), tf32 (both on),
bf16 (autocast). It also measures the GPU's ceilings: fp32, tf32 and bf16 matrix products
(8192^3, random data) and a device-to-device copy (bytes read + written). Timing: CUDA
events around each repetition, medians after warm-up, as gpu_bench.

`run --smoke` uses tiny sizes and one repetition, and runs on the CPU when PyTorch sees no
GPU: a check of this script (it was checked so, on the CPU, before any GPU run).

`report` pairs the two result files case by case and prints one table (ms, TFLOP/s, % of
the measured peak of the mode, PyTorch ms / calograd ms), then the issue's goals with
PASS/FAIL, and writes everything to --out (a temporary file, then renamed).

Model definitions mirror gpu_bench.c (../shared/reference/models.md §1.3, §1.5): the
post-processor's energy conditioning is concatenated after conv1's 128 channels.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

MODES = ("fp32", "tf32", "bf16")

# One shower generated on the GPU against the CPU reference (gpu_bench --check): the largest
# ‖gpu − cpu‖/‖cpu‖ accepted per math mode, the tolerance docs/cuda.md documents: the CUDA
# emulator measures 1.9e-5, 9.9e-3 and 6.9e-2 (the GPU sums inside an mma in another order).
GENERATE_TOL = {"fp32": 1e-4, "tf32": 5e-2, "bf16": 2.5e-1}

LAYERS = [  # name, transpose, ci, co, k, s, p, d  (issue 3's suite)
    ("enc_c1_k4s2_1to32_30", 0, 1, 32, 4, 2, 1, 30),
    ("c3_32to32_30", 0, 32, 32, 3, 1, 1, 30),
    ("c4s2_32to64_15", 0, 32, 64, 4, 2, 1, 15),
    ("c3_64to64_15", 0, 64, 64, 3, 1, 1, 15),
    ("ct4s2_64to32_15to30", 1, 64, 32, 4, 2, 1, 15),
    ("ct3_32to1_30", 1, 32, 1, 3, 1, 1, 30),
    ("pp_k1_2to128_30", 0, 2, 128, 1, 1, 0, 30),
    ("pp_k1_128to128_30", 0, 128, 128, 1, 1, 0, 30),
    ("gan3d_k5_8to8_25", 0, 8, 8, 5, 1, 2, 25),
]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- run ----

def run(args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    if not torch.cuda.is_available() and not args.smoke:
        sys.exit("gpu_torch.py: no GPU visible to PyTorch")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    sm = args.smoke  # tiny sizes, one run: checks this script (on the CPU too), not the GPU
    if sm:
        args.warmup, args.reps = 0, 1
    results = []

    def empty_cache():
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    def set_mode(mode):
        tf32 = mode == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def autocast(mode):
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=(mode == "bf16"))

    def time_ms(fn):
        for _ in range(args.warmup):
            fn()
        ts = []
        for _ in range(args.reps):
            if dev.type == "cpu":
                t = time.perf_counter()
                fn()
                ts.append(1e3 * (time.perf_counter() - t))
                continue
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
        return statistics.median(ts)

    def record(group, case, mode, metric, ms, flops, batch):
        results.append(dict(group=group, case=case, mode=mode, metric=metric, ms=ms, flops=flops, batch=batch))

    modes = [m for m in MODES if m in args.modes.split(",")]

    # ---- ceilings ----
    peaks = {}
    n = 256 if sm else 8192
    for mode, dtype in (("fp32", torch.float32), ("tf32", torch.float32), ("bf16", torch.bfloat16)):
        set_mode(mode)
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        ms = time_ms(lambda: torch.mm(a, b))
        peaks[mode + "_tflops"] = 2 * n ** 3 / ms / 1e9
        del a, b
    set_mode("fp32")
    src = torch.randn(1 << (20 if sm else 30), device=dev)  # 4 GiB
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    peaks["copy_tbps"] = 2 * src.numel() * 4 / ms / 1e9
    del src, dst
    empty_cache()
    print("ceilings: fp32 %.1f TFLOP/s, tf32 %.1f, bf16 %.1f, copy %.2f TB/s"
          % (peaks["fp32_tflops"], peaks["tf32_tflops"], peaks["bf16_tflops"], peaks["copy_tbps"]))

    cases = args.cases.split(",")
    # ---- layer suite ----
    if "layers" in cases:
        N = 1 if sm else 64
        print("\nlayer suite, batch %d" % N)
        for name, tr, ci, co, k, s, p, d in LAYERS:
            if sm:
                d = d // 3 if d // 3 > k else k + 1
            out = (d - 1) * s - 2 * p + k if tr else (d + 2 * p - k) // s + 1
            x = torch.randn(N, ci, d, d, d, device=dev, requires_grad=True)
            w = (0.1 * torch.randn(*((ci, co) if tr else (co, ci)), k, k, k, device=dev)).requires_grad_()
            gy = torch.randn(N, co, out, out, out, device=dev)
            conv = (lambda x, w: F.conv_transpose3d(x, w, stride=s, padding=p)) if tr else \
                   (lambda x, w: F.conv3d(x, w, stride=s, padding=p))
            vox = d ** 3 if tr else out ** 3
            flops = 2.0 * N * ci * co * k ** 3 * vox

            def fwd():
                with torch.no_grad():
                    conv(x, w)

            gy16 = gy.to(torch.bfloat16)

            def fwdbwd():
                y = conv(x, w)
                y.backward(gy if y.dtype == gy.dtype else gy16)  # autocast: bf16 output
                x.grad = None
                w.grad = None

            for mode in modes:
                set_mode(mode)
                with autocast(mode):
                    f, fb = time_ms(fwd), time_ms(fwdbwd)
                print("%-22s %-5s fwd %8.3f ms  fwd+bwd %8.3f ms" % (name, mode, f, fb))
                record("layers", name, mode, "fwd", f, flops, N)
                record("layers", name, mode, "fwd+bwd", fb, 3 * flops, N)
            del x, w, gy, gy16
            empty_cache()

    # ---- BIB-AE decoder + post-processor ----
    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.cond1, self.cond2, self.cond3 = nn.Linear(513, 768), nn.Linear(768, 4000), nn.Linear(4000, 8000)
            self.deconv1 = nn.ConvTranspose3d(8, 8, 3, stride=3, padding=1, output_padding=2, bias=False)
            self.deconv2 = nn.ConvTranspose3d(8, 16, 3, stride=2, padding=1, output_padding=1, bias=False)
            self.conv0 = nn.Conv3d(16, 8, 2, stride=2, bias=False)
            self.conv1 = nn.Conv3d(8, 16, 3, padding=1, bias=False)
            self.conv2 = nn.Conv3d(16, 32, 3, padding=1, bias=False)
            self.conv3 = nn.Conv3d(32, 16, 3, padding=1, bias=False)
            self.conv4 = nn.Conv3d(16, 1, 3, padding=1, bias=False)
            self.norms = nn.ModuleList([nn.LayerNorm([60] * 3 if i == 1 else [30] * 3) for i in range(6)])

        def forward(self, z, E):
            lr = lambda t: F.leaky_relu(t, 0.2)
            h = lr(self.cond3(lr(self.cond2(lr(self.cond1(torch.cat((z, E), 1)))))))
            h = h.view(-1, 8, 10, 10, 10)
            h = lr(self.norms[0](self.deconv1(h)))
            h = lr(self.norms[1](self.deconv2(h)))
            for i, c in enumerate((self.conv0, self.conv1, self.conv2, self.conv3)):
                h = lr(self.norms[i + 2](c(h)))
            return F.relu(self.conv4(h))

    class PostProcess(nn.Module):
        def __init__(self):
            super().__init__()
            self.fcec1, self.fcec2, self.fcec3 = nn.Linear(2, 64), nn.Linear(64, 64), nn.Linear(64, 64)
            self.conv1 = nn.Conv3d(1, 128, 1)
            self.conv2 = nn.Conv3d(192, 128, 1)
            self.conv3, self.conv4, self.conv5 = nn.Conv3d(128, 128, 1), nn.Conv3d(128, 128, 1), nn.Conv3d(128, 128, 1)
            self.conv6 = nn.Conv3d(128, 1, 1, bias=False)
            self.norms = nn.ModuleList([nn.LayerNorm([30, 30, 30]) for _ in range(4)])

        def forward(self, img, E):
            lr = lambda t: F.leaky_relu(t, 0.01)
            B = img.shape[0]
            ec = torch.cat((img.sum(dim=(1, 2, 3, 4)).view(B, 1), E), 1)
            ec = lr(self.fcec3(lr(self.fcec2(lr(self.fcec1(ec))))))
            x = lr(self.norms[0](self.conv1(img)))
            x = torch.cat((x, ec.view(B, 64, 1, 1, 1).expand(-1, -1, 30, 30, 30)), 1)
            x = lr(self.norms[1](self.conv2(x)))
            x = lr(self.norms[2](self.conv3(x)))
            x = lr(self.norms[3](self.conv4(x)))
            x = lr(self.conv5(x))
            return self.conv6(x)

    def bibae_flops_per_shower():
        mac = 513 * 768 + 768 * 4000 + 4000 * 8000
        mac += 8 * 8 * 27 * 1000 + 8 * 16 * 27 * 27000 + 16 * 8 * 8 * 27000
        mac += (8 * 16 + 16 * 32 + 32 * 16 + 16) * 27 * 27000
        mac += 27000 * (128 + 192 * 128 + 3 * 128 * 128 + 128) + 2 * 64 + 64 * 64 * 2
        return 2.0 * mac

    if "generate" in cases:
        dec, pp = Decoder().to(dev).eval(), PostProcess().to(dev).eval()
        fps = bibae_flops_per_shower()
        print("\nBIB-AE decoder + post-processor generation (%.2f GFLOP per shower)" % (fps / 1e9))
        for Bn in ((1, 2) if sm else (100, 1000)):
            z = torch.randn(Bn, 512, device=dev)
            E = 10 + 90 * torch.rand(Bn, 1, device=dev)

            def gen():
                with torch.no_grad():
                    pp(dec(z, E), E)

            reps, warm = args.reps, args.warmup
            if Bn >= 1000:  # most of a second per batch: fewer repetitions, as gpu_bench
                args.reps, args.warmup = min(reps, 5), min(warm, 1)
            for mode in modes:
                set_mode(mode)
                with autocast(mode):
                    ms = time_ms(gen)
                print("generate_b%-12d %-5s %9.2f ms  %.4f ms/shower" % (Bn, mode, ms, ms / Bn))
                record("generate", "generate_b%d" % Bn, mode, "batch", ms, fps * Bn, Bn)
            args.reps, args.warmup = reps, warm
            empty_cache()
        del dec, pp
        empty_cache()

    if "pp_train" in cases:
        pp = PostProcess().to(dev)
        opt = torch.optim.Adam(pp.parameters(), lr=5e-4, betas=(0.5, 0.9))
        Bn = 1 if sm else 64
        x = torch.rand(Bn, 1, 30, 30, 30, device=dev)
        E = 10 + 90 * torch.rand(Bn, 1, device=dev)
        target = torch.rand(Bn, 1, 30, 30, 30, device=dev)
        fwd = 27000.0 * (128 + 192 * 128 + 3 * 128 * 128 + 128) * 2 * Bn

        def step():
            loss = F.mse_loss(pp(x, E), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        print("\npost-processor training step, batch %d" % Bn)
        for mode in modes:
            set_mode(mode)
            with autocast(mode):
                ms = time_ms(step)
            print("%-22s %-5s %9.2f ms" % ("pp_train_b64", mode, ms))
            record("train", "pp_train_b64", mode, "step", ms, 3 * fwd, Bn)
        del pp, opt, x, target
        empty_cache()

    if "critic" in cases:
        class Critic(nn.Module):
            def __init__(self):
                super().__init__()
                self.convs = nn.ModuleList([nn.Conv3d(a, b, 4, stride=2, padding=1) for a, b in ((1, 32), (32, 64), (64, 128))])
                self.fc = nn.Linear(128 * 27, 1)

            def forward(self, x):
                for c in self.convs:
                    x = F.leaky_relu(c(x), 0.2)
                return self.fc(x.flatten(1))

        D = Critic().to(dev)
        opt = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
        Bn = 2 if sm else 64
        real = torch.rand(Bn, 1, 30, 30, 30, device=dev)
        fake = torch.rand(Bn, 1, 30, 30, 30, device=dev)

        def step():
            eps = torch.rand(Bn, 1, 1, 1, 1, device=dev)
            xhat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            g, = torch.autograd.grad(D(xhat).sum(), xhat, create_graph=True)
            gp = ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
            loss = D(fake).mean() - D(real).mean() + 10 * gp
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        print("\nWGAN-GP critic step, batch %d" % Bn)
        for mode in modes:
            set_mode(mode)
            with autocast(mode):
                ms = time_ms(step)
            print("%-22s %-5s %9.2f ms" % ("critic_gp_b64", mode, ms))
            record("train", "critic_gp_b64", mode, "step", ms, 0, Bn)

    out = dict(tool="pytorch", torch=torch.__version__, cudnn=torch.backends.cudnn.version(),
               gpu=torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", command=" ".join(sys.argv),
               peaks=peaks, results=results)
    if args.json:
        write_json(args.json, out)


# ------------------------------------------------------------- report ----

def same_work(a, b):
    """Whether two result rows (calograd's, PyTorch's) time the same problem: the same batch,
    and the same FLOP count where both sides count one (to rounding: C prints 6 digits)."""
    if a.get("batch") != b.get("batch"):
        return False
    fa, fb = a.get("flops") or 0, b.get("flops") or 0
    return not (fa > 0 and fb > 0) or abs(fa - fb) <= 1e-5 * max(fa, fb)


def report(args):
    with open(args.calograd) as f:
        cg = json.load(f)
    with open(args.torch) as f:
        th = json.load(f)
    peaks = th.get("peaks", {})
    tmap = {(r["group"], r["case"], r["mode"], r["metric"]): r for r in th["results"]}
    rows = []
    print("GPU: %s (calograd) / %s (PyTorch %s, cuDNN %s)" % (cg.get("gpu"), th.get("gpu"), th.get("torch"), th.get("cudnn")))
    print("measured ceilings: fp32 %.1f TFLOP/s, tf32 %.1f, bf16 %.1f, copy %.2f TB/s" % (
        peaks.get("fp32_tflops", float("nan")), peaks.get("tf32_tflops", float("nan")),
        peaks.get("bf16_tflops", float("nan")), peaks.get("copy_tbps", float("nan"))))
    print("%-9s %-22s %-5s %-8s %11s %11s %8s %8s %7s" % ("group", "case", "mode", "metric", "calograd ms",
                                                         "torch ms", "speedup", "TFLOP/s", "% peak"))
    mismatched = []
    for r in cg["results"]:
        key = (r["group"], r["case"], r["mode"], r["metric"])
        t = tmap.get(key)
        if t and not same_work(r, t):  # a ratio of two different problems means nothing
            mismatched.append("%s/%s/%s/%s: calograd %.6g FLOP at batch %s, PyTorch %.6g at batch %s" % (
                key + (r.get("flops") or 0, r.get("batch"), t.get("flops") or 0, t.get("batch"))))
            t = None
        tflops = r["flops"] / r["ms"] / 1e9 if r.get("flops") and r["ms"] > 0 and r["metric"] != "rel_err" else None
        peak = peaks.get(r["mode"] + "_tflops")
        row = dict(group=r["group"], case=r["case"], mode=r["mode"], metric=r["metric"], calograd_ms=r["ms"],
                   torch_ms=t["ms"] if t else None, speedup=(t["ms"] / r["ms"]) if t and r["ms"] > 0 else None,
                   calograd_tflops=tflops, pct_peak=(100 * tflops / peak) if tflops and peak else None,
                   batch=r.get("batch"))
        rows.append(row)
        if r["group"] == "generate_profile":  # gpu_bench printed these stage by stage already
            continue
        fmt = lambda v, f: (f % v) if v is not None else "-"
        print("%-9s %-22s %-5s %-8s %11s %11s %8s %8s %7s" % (
            row["group"], row["case"], row["mode"], row["metric"], fmt(row["calograd_ms"], "%.4g"),
            fmt(row["torch_ms"], "%.4g"), fmt(row["speedup"], "%.2fx"), fmt(tflops, "%.2f"),
            fmt(row["pct_peak"], "%.0f%%")))

    def get(group, case, mode, metric):
        for row in rows:
            if (row["group"], row["case"], row["mode"], row["metric"]) == (group, case, mode, metric):
                return row
        return None

    goals = []

    def goal(text, ok, detail):
        goals.append(dict(goal=text, ok=ok, detail=detail))

    if cg.get("gpu") != th.get("gpu"):
        goal("both sides ran on the same GPU", False, "calograd: %s, PyTorch: %s" % (cg.get("gpu"), th.get("gpu")))
    if mismatched:
        goal("both sides timed the same work (FLOPs and batch of every paired case)", False,
             "%d differ, no ratio for them: %s" % (len(mismatched), "; ".join(mismatched)))
    # each goal is listed, measured or not: a goal without its rows FAILs as "not measured"
    sp = [get("layers", L[0], "fp32", "fwd+bwd") for L in LAYERS]
    sp = [r for r in sp if r and r["speedup"]]
    missing = [L[0] for L in LAYERS if not any(r["case"] == L[0] for r in sp)]
    slow = [r["case"] for r in sp if r["speedup"] < 1.0]
    goal("every layer: fp32 forward+backward at most PyTorch's time", bool(sp) and not slow and not missing,
         "slower: %s%s" % (", ".join(slow) or "none", "; not measured: " + ", ".join(missing) if missing else ""))
    gm = math.exp(sum(math.log(r["speedup"]) for r in sp) / len(sp)) if sp else None
    goal("layer suite: geometric mean speedup >= 1.5 (fp32 fwd+bwd)", gm is not None and gm >= 1.5 and not missing,
         "%.2fx over %d of %d layers" % (gm, len(sp), len(LAYERS)) if sp else "not measured")

    def per_shower(r):
        return r["calograd_ms"] / r["batch"]

    g = get("generate", "generate_b1000", "fp32", "batch")
    goal("generation <= 0.15 ms/shower in fp32 (batch 1000)", bool(g) and per_shower(g) <= 0.15,
         "%.4f ms/shower" % per_shower(g) if g else "not measured")
    tc = [r for r in (get("generate", "generate_b1000", m, "batch") for m in ("tf32", "bf16")) if r]
    best = min(tc, key=per_shower) if tc else None
    goal("generation <= 0.04 ms/shower in a tensor-core mode (batch 1000)", bool(best) and per_shower(best) <= 0.04,
         "%.4f ms/shower (%s)" % (per_shower(best), best["mode"]) if best else "not measured")
    chk = [r for r in rows if r["group"] == "check" and r["metric"] == "rel_err"]
    over = [r for r in chk if not r["calograd_ms"] <= GENERATE_TOL[r["mode"]]]  # NaN is over
    detail = ", ".join("%s %.2e (tolerance %g)" % (r["mode"], r["calograd_ms"], GENERATE_TOL[r["mode"]]) for r in chk)
    goal("a generated shower matches the CPU reference within the documented tolerance (docs/cuda.md)",
         bool(chk) and not over, detail or "not measured (run with --check)")
    for case, mode, need, text in (("pp_train_b64", "fp32", 3, "post-processor training step <= 1/3"),
                                   ("critic_gp_b64", "fp32", 2, "WGAN-GP critic step <= 1/2")):
        r = get("train", case, mode, "step")
        ok = bool(r and r["speedup"])
        goal(text + " of PyTorch's time (fp32)", ok and r["speedup"] >= need,
             "%.2fx" % r["speedup"] if ok else "not measured")
    print("\ngoals of issue 4:")
    for gl in goals:
        print("  %s  %s (%s)" % ("PASS" if gl["ok"] else "FAIL", gl["goal"], gl["detail"]))
    for r in cg["results"]:
        if r["metric"] == "rel_err":
            print("  check: one shower vs the CPU in %s: rel err %.2e" % (r["mode"], r["ms"]))
    out = dict(gpu=cg.get("gpu"), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), command=args.command,
               torch=th.get("torch"), cudnn=th.get("cudnn"), peaks=peaks, comparison=rows, goals=goals,
               calograd=cg, pytorch=th)
    write_json(args.out, out)
    print("wrote %s" % args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time PyTorch on the benchmark's cases")
    r.add_argument("--json", help="write results here")
    r.add_argument("--modes", default="fp32,tf32,bf16")
    r.add_argument("--cases", default="layers,generate,pp_train,critic")
    r.add_argument("--warmup", type=int, default=3)
    r.add_argument("--reps", type=int, default=10)
    r.add_argument("--smoke", action="store_true", help="tiny sizes, one run (runs on the CPU too)")
    m = sub.add_parser("report", help="merge calograd's and PyTorch's results")
    m.add_argument("--calograd", required=True)
    m.add_argument("--torch", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--command", default="bash bench/gpu.sh")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
