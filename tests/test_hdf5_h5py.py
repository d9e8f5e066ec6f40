#!/usr/bin/env python3
"""tests/test_hdf5_h5py.py — calograd's HDF5 interop checked against h5py, an independent
reader and writer (skipped with exit code 77 when h5py or numpy is missing).

  1. The real CLIC sample (../shared/data/clic_gamma_pi0_100, 10 files x 10 showers):
     `calograd import` of all ten files gives, shower by shower, the same energy sums and
     incident energies as h5py reading ECAL (float64) and target[:, 0, 1]; the same for HCAL.
     The .cvox is read with tests/cvox.py, written from io/FORMAT.md alone.
  2. `calograd export` of simulated showers, in both layouts, is what the community's tools
     expect: float32 showers with the gzip and shuffle filters, incident energies in MeV
     (CaloChallenge) or a group with energy (GeV) and layers (ILD), equal to the .cvox
     contents; and a file h5py writes in each of the four layouts imports back exactly.

usage: test_hdf5_h5py.py CALOGRAD CLIC_DIR
"""
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError as e:
    print("skip: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cvox import read_cvox  # noqa: E402

CALOGRAD, CLIC = sys.argv[1], sys.argv[2]
failed = 0


def check(cond, msg):
    global failed
    if not cond:
        failed += 1
        print("FAIL " + msg)
    else:
        print("ok   " + msg)


def run(*args, quiet=False):
    r = subprocess.run([CALOGRAD] + list(args), capture_output=True, text=True)
    if r.returncode != 0 and not quiet:
        print(r.stdout, r.stderr)
    return r


with tempfile.TemporaryDirectory() as tmp:
    # 1. the CLIC sample
    files = [os.path.join(CLIC, "test_data_%d.h5" % i) for i in range(1, 11)]
    if all(os.path.exists(f) for f in files):
        for calo in ("ECAL", "HCAL"):
            out = os.path.join(tmp, calo + ".cvox")
            r = run("import", *files, "--calorimeter", calo.lower(), "-o", out)
            check(r.returncode == 0, "import the CLIC sample (%s)" % calo)
            c = read_cvox(out)
            sums_h5, energy_h5, first = [], [], None
            for f in files:
                with h5py.File(f, "r") as h:
                    x = h[calo][:]
                    sums_h5.append(x.reshape(len(x), -1).sum(axis=1))
                    energy_h5.append(h["target"][:, 0, 1])
                    if first is None:
                        first = x[0]
            sums_h5 = np.concatenate(sums_h5)
            energy_h5 = np.concatenate(energy_h5)
            sums_cg = c["showers"].astype(np.float64).sum(axis=1)
            rel = np.abs(sums_cg - sums_h5) / np.maximum(np.abs(sums_h5), 1e-12)
            check(len(sums_cg) == 100 and rel.max() < 1e-5,
                  "%s per-shower energy sums equal h5py's (max relative difference %.2g over %d showers)"
                  % (calo, rel.max(), len(sums_cg)))
            e = c["cond"][:, c["names"].index("energy")]
            check(np.array_equal(e, energy_h5.astype(np.float32)), "%s incident energies equal target[:, 0, 1]" % calo)
            # calograd's dense order is (layer = z, row = y, col = x): the transpose of the file's (x, y, z)
            X, Y, Z = first.shape
            check(np.array_equal(c["showers"][0].reshape(Z, Y, X), first.transpose(2, 1, 0).astype(np.float32)),
                  "%s cell order: (x, y, z) in the file -> (layer, row, col)" % calo)
    else:
        print("skip the CLIC sample: not found in %s" % CLIC)

    # 2. export: what h5py sees
    sim = os.path.join(tmp, "sim.cvox")
    r = run("simulate", "--events", "300", "--theta", "60:90", "--seed", "5", "-o", sim)
    check(r.returncode == 0, "simulate")
    c = read_cvox(sim)
    cc = os.path.join(tmp, "cc.h5")
    check(run("export", sim, "--format", "calochallenge", "-o", cc).returncode == 0, "export calochallenge")
    with h5py.File(cc, "r") as h:
        s = h["showers"]
        check(s.dtype == np.float32 and s.shape == (300, 27000), "showers float32 (N, 27000)")
        check(s.compression == "gzip" and s.compression_opts == 4 and s.shuffle, "gzip level 4 + shuffle")
        check(np.array_equal(s[:], c["showers"]), "showers equal the .cvox contents")
        ie = h["incident_energies"][:]
        check(ie.shape == (300, 1), "incident_energies (N, 1)")
        check(np.allclose(ie[:, 0], c["cond"][:, 0].astype(np.float64) * 1000, rtol=0, atol=0),
              "incident_energies in MeV")
        check(np.array_equal(h["theta"][:, 0], c["cond"][:, 1]), "theta as an (N, 1) dataset")
    ild = os.path.join(tmp, "ild.h5")
    check(run("export", sim, "--format", "ild", "-o", ild).returncode == 0, "export ild")
    with h5py.File(ild, "r") as h:
        g = h["30x30"]
        check(g["layers"].shape == (300, 30, 30, 30) and g["layers"].dtype == np.float32, "ild layers (N, 30, 30, 30)")
        check(np.array_equal(g["layers"][:].reshape(300, -1), c["showers"]), "ild layers equal the .cvox contents")
        check(np.array_equal(g["energy"][:, 0], c["cond"][:, 0]), "ild energy in GeV")

    # 3. files written by h5py in each layout import back exactly
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))

    def sparse(shape):
        x = rng.exponential(1.0, shape).astype(np.float32)
        x[rng.random(shape) < 0.8] = 0
        return x

    n = 23
    cases = {}
    x = sparse((n, 6480))
    e = rng.uniform(1000, 1e6, (n, 1))
    with h5py.File(os.path.join(tmp, "w_cc.h5"), "w") as h:
        h["incident_energies"] = e
        h["showers"] = x
    cases["calochallenge"] = ("w_cc.h5", x.reshape(n, -1), e[:, 0] / 1000, "calochallenge-ds2")
    layers = [sparse((n, 3, 96)), sparse((n, 12, 12)), sparse((n, 12, 6))]
    e = rng.uniform(1, 100, (n, 1)).astype(np.float32)
    with h5py.File(os.path.join(tmp, "w_calogan.h5"), "w") as h:
        h["energy"] = e
        for i, L in enumerate(layers):
            h["layer_%d" % i] = L
        h["overflow"] = np.zeros((n, 3), np.float32)
    cases["calogan"] = ("w_calogan.h5", np.concatenate([L.reshape(n, -1) for L in layers], axis=1), e[:, 0], "calogan")
    x = sparse((n, 30, 30, 30))
    e = rng.uniform(10, 100, (n, 1)).astype(np.float32)
    with h5py.File(os.path.join(tmp, "w_ild.h5"), "w") as h:
        g = h.create_group("30x30")
        g["energy"] = e
        g["layers"] = x
    cases["ild"] = ("w_ild.h5", x.reshape(n, -1), e[:, 0], "30x30")
    x = sparse((n, 25, 25, 25)).astype(np.float64)
    t = np.zeros((n, 3))
    t[:, 1] = rng.uniform(2, 500, n)
    with h5py.File(os.path.join(tmp, "w_clic.h5"), "w") as h:
        h["ECAL"] = x
        h["target"] = t
    cases["clic"] = ("w_clic.h5", x.transpose(0, 3, 2, 1).reshape(n, -1).astype(np.float32), t[:, 1], "clic-ecal")
    for layout, (name, want, energy, geom) in cases.items():
        out = os.path.join(tmp, layout + ".cvox")
        r = run("import", os.path.join(tmp, name), "-o", out)
        ok = r.returncode == 0
        if ok:
            c = read_cvox(out)
            ok = (np.array_equal(c["showers"], want) and c["geometry"] == geom and
                  np.array_equal(c["cond"][:, c["names"].index("energy")], energy.astype(np.float32)))
        check(ok, "h5py-written %s file imports exactly (geometry %s)" % (layout, geom))
        r = run("import", os.path.join(tmp, name), "--format", "clic" if layout != "clic" else "ild", "-o", out + "x",
                quiet=True)
        check(r.returncode == 2 and name in r.stderr and not os.path.exists(out + "x"),
              "%s file forced to a wrong layout: exit 2 with a message naming it" % layout)

print("%s" % ("all passed" if not failed else "%d failed" % failed))
sys.exit(1 if failed else 0)
