#!/usr/bin/env python3
"""tests/test_op_cli.py — `calograd op` against an independent NumPy reference.

Draws many random valid cases (odd sizes, batch 1, channel counts that are not multiples of
8, kernel sizes 1..5, strides 1..3 per axis, paddings up to k-1 and sometimes beyond,
output padding < stride, every axis different), writes them as .npy (float32 or float64,
format versions 1.0, 2.0 and 3.0), runs `calograd op`, and requires each output and each
gradient to agree with tests/op_reference.py to 1e-4 relative: |a - ref| / |ref| with the
Euclidean norm over the whole array (the criterion of issue 2). Some cases run with the
reference kernels (CG_KERNELS=ref) or one thread, so every kernel table is compared.

usage: test_op_cli.py CALOGRAD [N_CASES_SCALE]. Exits 77 (skip) without numpy. The seed is
printed; CG_TEST_SEED=<seed> replays a run.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print('numpy is not installed: skipping the comparison with the NumPy reference')
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import op_reference as R  # noqa: E402

TOL = 1e-4


def rel_err(a, ref, allow=0.0):
    """|a - ref| / |ref| (Euclidean norms). `allow` (an array like ref, or 0): a bound on
    the float32 rounding error of a result that is a small difference of large terms; the
    error is then measured against |ref| + |allow| / TOL, so that rounding within the bound
    passes whatever the cancellation (used for the sorted-kernel MMD)."""
    ref = np.asarray(ref, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if a.shape != ref.shape:
        return float('inf')
    n = np.linalg.norm(ref) + np.linalg.norm(allow) / TOL
    d = np.linalg.norm(a - ref)
    return d / n if n > 0 else d


def axes_arg(rng, flag, v):
    """[flag, value...]: one integer when all axes agree (sometimes spelled out anyway), else
    one per axis as "a,b,c", mostly, or as separate words or "(a, b, c)"."""
    if len(set(v)) == 1 and rng.random() < 0.7:
        return [flag, str(v[0])]
    u = rng.random()
    if u < 0.15:
        return [flag] + [str(int(x)) for x in v]
    if u < 0.25:
        return [flag, '(%s)' % ', '.join(str(int(x)) for x in v)]
    return [flag, ','.join(str(int(x)) for x in v)]


class Runner:
    def __init__(self, exe, tmp, rng):
        self.exe, self.tmp, self.rng = exe, tmp, rng
        self.n = 0
        self.failures = []
        self.worst = {}

    def save(self, name, arr):
        """Write arr as float32 or float64, format version 1.0, 2.0 or 3.0; return the path
        and the array exactly as calograd will see it (float64 is rounded to float32 there,
        which costs ~1e-8 relative: far below the tolerance)."""
        path = os.path.join(self.tmp, '%s.npy' % name)
        dt = np.float32 if self.rng.random() < 0.7 else np.float64
        arr = np.asarray(arr, dtype=dt, order='C')  # (ascontiguousarray would make () into (1,))
        version = [(1, 0), (2, 0), (3, 0)][self.rng.integers(0, 3)]
        with open(path, 'wb') as f:
            np.lib.format.write_array(f, arr, version=version)
        return path, arr

    def run(self, op, arrays, opts, expect):
        """Run `calograd op` on `arrays` ({flag: array}) and compare every file it writes
        with expect ({name: reference}); names missing from expect must not be written."""
        self.n += 1
        case = '%s#%d' % (op, self.n)
        args = [self.exe, 'op', op]
        for flag, arr in arrays.items():
            path, _ = self.save('%s_%s' % (case.replace('#', '_'), flag.strip('-')), arr)
            args += [flag, path]
        out = os.path.join(self.tmp, 'out_%d' % self.n)
        args += opts + ['--out', out]
        env = dict(os.environ)
        u = self.rng.random()
        if u < 0.25:
            env['CG_KERNELS'] = 'ref'
        elif u < 0.4:
            env['CG_THREADS'] = '1'
        p = subprocess.run(args, env=env, capture_output=True, text=True)
        cmd = ' '.join(args)
        if p.returncode != 0:
            self.failures.append('%s: exit %d: %s\n    %s' % (case, p.returncode, p.stderr.strip(), cmd))
            return
        for name in ['output', 'grad_input', 'grad_weight', 'grad_bias', 'grad_target']:
            f = os.path.join(out, name + '.npy')
            if name not in expect:
                if os.path.exists(f):
                    self.failures.append('%s: wrote %s, which it should not\n    %s' % (case, name, cmd))
                continue
            if not os.path.exists(f):
                self.failures.append('%s: did not write %s\n    %s' % (case, name, cmd))
                continue
            got = np.load(f)
            if got.dtype != np.float32:
                self.failures.append('%s: %s has dtype %s' % (case, name, got.dtype))
            ref, allow = expect[name] if isinstance(expect[name], tuple) else (expect[name], 0.0)
            e = rel_err(got, ref, allow)
            key = (op, name)
            self.worst[key] = max(self.worst.get(key, 0.0), e)
            if not e <= TOL:
                self.failures.append('%s: %s relative error %.3g (shape %s, reference %s)\n    %s' %
                                     (case, name, e, got.shape, np.shape(expect[name]), cmd))


def rand(rng, shape, scale=1.0):
    return rng.standard_normal(shape) * scale


# --------------------------------------------------------------------------- conv cases

def conv_case(r, rng, nsp, transpose, fixed=None):
    """A random valid convolution with nsp spatial axes (or the fixed one given)."""
    if fixed:
        N, Ci, Co, size, k, s, p, op = fixed
    else:
        N = int(rng.choice([1, 1, 2, 3]))
        Ci = int(rng.choice([1, 2, 3, 5, 7, 9]))
        Co = int(rng.choice([1, 2, 3, 4, 6, 11]))
        k = [int(rng.integers(1, 6)) for _ in range(nsp)]
        s = [int(rng.integers(1, 4)) for _ in range(nsp)]
        big_pad = rng.random() < 0.15  # padding beyond k-1 is valid too
        p = [int(rng.integers(0, (k[i] + 2) if big_pad else k[i])) for i in range(nsp)]
        op = [int(rng.integers(0, s[i])) for i in range(nsp)] if transpose else [0] * nsp
        size = []
        for i in range(nsp):
            if transpose:  # the output (n-1)s - 2p + k + op must be >= 1
                lo = 1
                while (lo - 1) * s[i] - 2 * p[i] + k[i] + op[i] < 1:
                    lo += 1
            else:  # the kernel must fit in the padded input
                lo = max(1, k[i] - 2 * p[i])
            size.append(int(rng.integers(lo, lo + (int(rng.choice([4, 9])) if nsp == 3 else 12))))
    x = rand(rng, (N, Ci) + tuple(size))
    wshape = ((Ci, Co) if transpose else (Co, Ci)) + tuple(k)
    w = rand(rng, wshape, 1.0 / np.sqrt(Ci * np.prod(k)))
    b = rand(rng, (Co,)) if rng.random() < 0.5 else None
    name = ('conv_transpose%dd' if transpose else 'conv%dd') % nsp
    if nsp == 3:
        fwd = (lambda x, w, b: R.conv_transpose3d(x, w, b, s, p, op)) if transpose else \
              (lambda x, w, b: R.conv3d(x, w, b, s, p))
        grd = (lambda x, w, b, g: R.conv_transpose3d_grad(x, w, b, s, p, op, g)) if transpose else \
              (lambda x, w, b, g: R.conv3d_grad(x, w, b, s, p, g))
    else:
        fwd = (lambda x, w, b: R.conv_transpose2d(x, w, b, s, p, op)) if transpose else \
              (lambda x, w, b: R.conv2d(x, w, b, s, p))
        grd = (lambda x, w, b, g: R.conv_transpose2d_grad(x, w, b, s, p, op, g)) if transpose else \
              (lambda x, w, b, g: R.conv2d_grad(x, w, b, s, p, g))
    arrays = {'--input': x.astype(np.float32), '--weight': w.astype(np.float32)}
    if b is not None:
        arrays['--bias'] = b.astype(np.float32)
    x32, w32 = arrays['--input'], arrays['--weight']
    b32 = arrays.get('--bias')
    y = fwd(x32, w32, b32)
    opts = axes_arg(rng, '--stride', s) + axes_arg(rng, '--padding', p)
    if transpose and (any(op) or rng.random() < 0.3):
        opts += axes_arg(rng, '--output-padding', op)
    expect = {'output': y}
    if rng.random() < 0.9:
        g = rand(rng, y.shape).astype(np.float32)
        arrays['--grad-output'] = g
        dx, dw, db = grd(x32, w32, b32, g)
        expect.update({'grad_input': dx, 'grad_weight': dw})
        if b is not None:
            expect['grad_bias'] = db
    r.run(name, arrays, opts, expect)


# ------------------------------------------------------------------------- other ops

def linear_case(r, rng):
    lead = tuple(int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 4))))
    fin, fout = int(rng.integers(1, 24)), int(rng.integers(1, 24))
    x = rand(rng, lead + (fin,)).astype(np.float32)
    w = rand(rng, (fout, fin)).astype(np.float32)
    b = rand(rng, (fout,)).astype(np.float32) if rng.random() < 0.5 else None
    y = R.linear(x, w, b)
    g = rand(rng, y.shape).astype(np.float32)
    arrays = {'--input': x, '--weight': w, '--grad-output': g}
    dx, dw, db = R.linear_grad(x, w, b, g)
    expect = {'output': y, 'grad_input': dx, 'grad_weight': dw}
    if b is not None:
        arrays['--bias'] = b
        expect['grad_bias'] = db
    r.run('linear', arrays, [], expect)


def layer_norm_case(r, rng):
    nd = int(rng.integers(1, 6))
    shape = tuple(int(rng.integers(1, 7)) for _ in range(nd))
    k = int(rng.integers(1, nd + 1))
    # With 1 or 2 normalised elements the output is ±1 whatever x is, so the true input
    # gradient is O(eps) and float32 cannot give it to 1e-4 relative (nor can PyTorch).
    while int(np.prod(shape[nd - k:])) < 3:
        shape = tuple(int(rng.integers(1, 7)) for _ in range(nd))
    x = (rand(rng, shape, 2.0) + rng.standard_normal()).astype(np.float32)
    gamma = rand(rng, shape[nd - k:]).astype(np.float32) if rng.random() < 0.6 else None
    beta = rand(rng, shape[nd - k:]).astype(np.float32) if rng.random() < 0.6 else None
    eps = float(rng.choice([1e-5, 1e-3]))
    y = R.layer_norm(x, k, gamma, beta, eps)
    g = rand(rng, y.shape).astype(np.float32)
    arrays = {'--input': x, '--grad-output': g}
    dx, dgamma, dbeta = R.layer_norm_grad(x, k, gamma, beta, eps, g)
    expect = {'output': y, 'grad_input': dx}
    if gamma is not None:
        arrays['--weight'] = gamma
        expect['grad_weight'] = dgamma
    if beta is not None:
        arrays['--bias'] = beta
        expect['grad_bias'] = dbeta
    opts = ['--eps', repr(eps)]
    if (gamma is None and beta is None) or rng.random() < 0.5:
        opts += ['--normalized-axes', str(k)]
    r.run('layer_norm', arrays, opts, expect)


def mmd_case(r, rng, defaults=False):
    if defaults:
        shape, kernel, stride, cutoff, alpha = (2, 1, 12, 12, 12), 100, 25, 2000, 200.0
        scale = 0.1
    else:
        nd = int(rng.integers(2, 5))
        shape = (int(rng.integers(1, 4)),) + tuple(int(rng.integers(2, 8)) for _ in range(nd - 1))
        V = int(np.prod(shape[1:]))
        kernel = int(rng.integers(1, V + 3))
        stride = int(rng.integers(1, kernel + 4))
        cutoff = int(rng.integers(1, V + 5))
        scale = float(rng.choice([0.1, 1.0, 10.0]))
        alpha = float(rng.uniform(0.2, 5.0)) / scale ** 2
    # shower-like: non-negative energies, generated and real drawn independently
    recon = (rng.exponential(scale, shape)).astype(np.float32)
    real = (rng.exponential(scale, shape)).astype(np.float32)
    y = R.mmd_sorted_kernel(recon, real, kernel, stride, cutoff, alpha)
    arrays = {'--input': recon, '--target': real}
    g = 1.0
    if rng.random() < 0.5:
        g = np.float32(rng.standard_normal())
        arrays['--grad-output'] = np.array(g, dtype=np.float32)
    dr, dt = R.mmd_sorted_kernel_grad(recon, real, kernel, stride, cutoff, alpha, g)
    # The MMD is a difference of nearly equal kernel sums, and the BIB-AE formula forms each
    # exponent from squares that cancel: float32 (calograd's, PyTorch's) can lose more than
    # 1e-4 of a small result. Allow two rounding errors of every term on top of 1e-4 (a worst
    # case adding every term's error with one sign; typical errors are well inside it).
    few_ulp = 2 * np.finfo(np.float32).eps
    y_b = R.mmd_sorted_kernel(recon, real, kernel, stride, cutoff, alpha, bound=True)
    dr_b, dt_b = R.mmd_sorted_kernel_grad(recon, real, kernel, stride, cutoff, alpha, g, bound=True)
    opts = [] if defaults else ['--kernel', str(kernel), '--stride', str(stride), '--cutoff', str(cutoff),
                                '--alpha', repr(alpha)]
    r.run('mmd_sorted_kernel', arrays, opts, {'output': (y, few_ulp * y_b), 'grad_input': (dr, few_ulp * dr_b),
                                              'grad_target': (dt, few_ulp * dt_b)})


def sparsity_case(r, rng, calogan):
    nd = int(rng.integers(1, 6))
    shape = (int(rng.integers(1, 4)),) + tuple(int(rng.integers(1, 6)) for _ in range(nd - 1))
    # |x| in [0.05, 3] with random signs, and some exactly empty cells (value and gradient
    # are defined there); no values near eps, where the floor has a kink
    x = rng.uniform(0.05, 3.0, shape) * rng.choice([-1.0, 1.0], shape)
    x[rng.random(shape) < 0.2] = 0.0
    x = x.astype(np.float32)
    if calogan:
        y = R.soft_sparsity_calogan(x)
        fgrad = lambda g: R.soft_sparsity_calogan_grad(x, g)[0]  # noqa: E731
        opts = ['--variant', 'calogan']
    else:
        a, b = float(rng.uniform(0.5, 3.0)), float(rng.uniform(0.5, 3.0))
        y = R.soft_sparsity(x, a, b, 1e-6)
        fgrad = lambda g: R.soft_sparsity_grad(x, a, b, 1e-6, g)[0]  # noqa: E731
        opts = ['--alpha', repr(a), '--beta', repr(b)]
    arrays = {'--input': x}
    g = np.ones(y.shape)
    if rng.random() < 0.5:
        g = rand(rng, y.shape).astype(np.float32)
        arrays['--grad-output'] = g
    r.run('soft_sparsity', arrays, opts, {'output': y, 'grad_input': fgrad(g)})


def stale_case(r, rng):
    """A run without --grad-output into a folder holding an earlier run's gradients must
    leave only output.npy (no stale gradient that looks fresh)."""
    x = rand(rng, (1, 2, 4, 5, 3)).astype(np.float32)
    w = rand(rng, (3, 2, 2, 2, 2)).astype(np.float32)
    g = rand(rng, (1, 3, 3, 4, 2)).astype(np.float32)
    r.run('conv3d', {'--input': x, '--weight': w, '--grad-output': g}, [],
          {'output': R.conv3d(x, w, None, (1, 1, 1), (0, 0, 0)),
           'grad_input': R.conv3d_grad(x, w, None, (1, 1, 1), (0, 0, 0), g)[0],
           'grad_weight': R.conv3d_grad(x, w, None, (1, 1, 1), (0, 0, 0), g)[1]})
    out = os.path.join(r.tmp, 'out_%d' % r.n)
    args = [r.exe, 'op', 'conv3d', '--input', r.save('stale_x', x)[0], '--weight', r.save('stale_w', w)[0],
            '--out', out]
    p = subprocess.run(args, capture_output=True, text=True)
    left = sorted(os.listdir(out)) if os.path.isdir(out) else []
    if p.returncode != 0 or left != ['output.npy']:
        r.failures.append('stale results: exit %d, folder holds %s' % (p.returncode, left))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = os.path.abspath(sys.argv[1])
    scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    seed = int(os.environ.get('CG_TEST_SEED', '0'), 0) or int(np.random.SeedSequence().entropy % 2**32)
    print('seed %d (set CG_TEST_SEED to replay)' % seed)
    rng = np.random.default_rng(seed)
    R.selfcheck(rng)  # the reference's own gradients against finite differences
    print('ok   reference gradients agree with finite differences')
    n = lambda k: max(1, int(round(k * scale)))  # noqa: E731
    with tempfile.TemporaryDirectory(prefix='cg_op_') as tmp:
        r = Runner(exe, tmp, rng)
        # the BIB-AE's own layers (models.md §1.2, §1.3), at batch 2
        conv_case(r, rng, 3, False, (2, 1, 8, (30, 30, 30), (4, 4, 4), (2, 2, 2), (2, 2, 2), (0, 0, 0)))
        conv_case(r, rng, 3, True, (2, 8, 8, (10, 10, 10), (3, 3, 3), (3, 3, 3), (1, 1, 1), (2, 2, 2)))
        conv_case(r, rng, 3, True, (1, 8, 16, (12, 12, 12), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)))
        conv_case(r, rng, 3, False, (2, 16, 8, (12, 12, 12), (2, 2, 2), (2, 2, 2), (0, 0, 0), (0, 0, 0)))
        # degenerate corners: one voxel, kernel 1 with stride and padding, kernel = padded input
        conv_case(r, rng, 3, False, (1, 1, 1, (1, 1, 1), (1, 1, 1), (3, 3, 3), (0, 0, 0), (0, 0, 0)))
        conv_case(r, rng, 3, False, (1, 1, 2, (1, 2, 1), (1, 1, 1), (2, 3, 1), (3, 1, 2), (0, 0, 0)))
        conv_case(r, rng, 3, False, (2, 3, 2, (1, 3, 2), (5, 5, 4), (1, 2, 3), (2, 1, 1), (0, 0, 0)))
        conv_case(r, rng, 3, True, (1, 1, 1, (1, 1, 1), (1, 1, 1), (3, 3, 3), (0, 0, 0), (2, 2, 2)))
        conv_case(r, rng, 3, True, (1, 2, 3, (1, 2, 1), (5, 4, 3), (3, 2, 1), (2, 1, 1), (2, 1, 0)))
        for _ in range(n(150)):
            conv_case(r, rng, 3, False)
        for _ in range(n(150)):
            conv_case(r, rng, 3, True)
        for _ in range(n(40)):
            conv_case(r, rng, 2, False)
        for _ in range(n(40)):
            conv_case(r, rng, 2, True)
        for _ in range(n(20)):
            linear_case(r, rng)
        for _ in range(n(30)):
            layer_norm_case(r, rng)
        mmd_case(r, rng, defaults=True)
        for _ in range(n(30)):
            mmd_case(r, rng)
        for _ in range(n(15)):
            sparsity_case(r, rng, calogan=False)
        for _ in range(n(15)):
            sparsity_case(r, rng, calogan=True)
        stale_case(r, rng)

        print('%d cases; worst relative error (norm of difference / norm of reference):' % r.n)
        for (op, name), e in sorted(r.worst.items()):
            print('  %-18s %-12s %.2e' % (op, name, e))
        for f in r.failures:
            print('FAIL ' + f, file=sys.stderr)
        passed = r.n - len(set(f.split(':')[0] for f in r.failures))
        print('%d passed, %d failed' % (passed, r.n - passed))
        return 1 if r.failures else 0


if __name__ == '__main__':
    sys.exit(main())
