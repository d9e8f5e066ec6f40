#!/usr/bin/env python3
"""tests/check_op_torch.py — `calograd op` (and the NumPy reference) against PyTorch, by hand.

Not part of `meson test` (PyTorch is a large optional install): run it where torch is
importable, e.g. in a throwaway venv:
    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy
    /tmp/tv/bin/python tests/check_op_torch.py build/tools/calograd [N]
For N random cases of each of conv3d, conv_transpose3d, conv2d, conv_transpose2d (and a few
large BIB-AE-sized convolutions), N/2 of linear, layer_norm, mmd_sorted_kernel, soft_sparsity, it runs PyTorch
in float64 on the float32 arrays given to calograd, and prints the worst relative error |a - ref| / |ref| of
calograd and of tests/op_reference.py against PyTorch for every output and gradient.
Exits 1 when any exceeds 1e-4.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import op_reference as R  # noqa: E402

TOL = 1e-4


def rel(a, ref):
    n = np.linalg.norm(ref)
    return np.linalg.norm(np.asarray(a, np.float64) - ref) / (n if n > 0 else 1.0)


def t_mmd_sorted(recon, real, kernel, stride, cutoff, alpha):
    """The sorted-kernel MMD of models.md §1.7 in PyTorch (autograd differentiates it)."""
    B = recon.shape[0]
    ys = torch.sort(recon.reshape(B, -1), dim=1, descending=True)[0]
    xs = torch.sort(real.reshape(B, -1), dim=1, descending=True)[0]
    out, n = 0, 0
    for j in range(0, min(cutoff, ys.shape[1]), stride):
        u, v = ys[:, j:j + kernel], xs[:, j:j + kernel]
        e = lambda a, b: torch.exp(-alpha * (a[:, :, None] - b[:, None, :]) ** 2).mean(dim=(1, 2))  # noqa: E731
        out = out + e(v, v) + e(u, u) - 2 * e(u, v)
        n += 1
    return out.mean() / n


def t_sparsity(x, kw):
    B = x.shape[0]
    if kw['variant'] == 'calogan':  # masked so that autograd gives 0, not nan, at x = 0
        ax = x.abs()
        nz = ax > 0
        safe = torch.where(nz, ax, torch.ones_like(ax))
        t = safe ** 5 + safe ** 0.2
        v = (t / (1 + t)) ** 0.2 * nz
    else:
        ax = torch.clamp(x.abs(), min=kw['eps'])
        t = ax ** kw['alpha'] + ax ** -kw['beta']
        v = t / (t + 1)
    return v.reshape(B, -1).mean(dim=1) if x.dim() > 1 else v


def t_forward(op, t, kw):
    fn = {'conv3d': F.conv3d, 'conv2d': F.conv2d, 'conv_transpose3d': F.conv_transpose3d,
          'conv_transpose2d': F.conv_transpose2d}
    if op in fn:
        return fn[op](t['input'], t['weight'], t.get('bias'), **kw)
    if op == 'linear':
        return F.linear(t['input'], t['weight'], t.get('bias'))
    if op == 'layer_norm':
        return F.layer_norm(t['input'], kw['shape'], t.get('weight'), t.get('bias'), kw['eps'])
    if op == 'mmd_sorted_kernel':
        return t_mmd_sorted(t['input'], t['target'], kw['kernel'], kw['stride'], kw['cutoff'], kw['alpha'])
    return t_sparsity(t['input'], kw)


def torch_run(op, arrays, kw, g):
    """PyTorch forward and gradients (float64) of op on arrays {name: np array}."""
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in arrays.items()}
    y = t_forward(op, t, kw)
    names = list(t)
    grads = torch.autograd.grad(y, [t[k] for k in names], torch.tensor(g, dtype=torch.float64))
    return y.detach().numpy(), {'grad_' + k: v.numpy() for k, v in zip(names, grads)}


def ref_run(op, a, kw, g):
    """The same through tests/op_reference.py."""
    x, w, b = a['input'], a.get('weight'), a.get('bias')
    if op in ('conv3d', 'conv2d'):
        s, p = kw['stride'], kw['padding']
        y = (R.conv3d if op == 'conv3d' else R.conv2d)(x, w, b, s, p)
        gr = (R.conv3d_grad if op == 'conv3d' else R.conv2d_grad)(x, w, b, s, p, g)
    elif op in ('conv_transpose3d', 'conv_transpose2d'):
        s, p, o = kw['stride'], kw['padding'], kw['output_padding']
        f3 = op == 'conv_transpose3d'
        y = (R.conv_transpose3d if f3 else R.conv_transpose2d)(x, w, b, s, p, o)
        gr = (R.conv_transpose3d_grad if f3 else R.conv_transpose2d_grad)(x, w, b, s, p, o, g)
    elif op == 'linear':
        y, gr = R.linear(x, w, b), R.linear_grad(x, w, b, g)
    elif op == 'layer_norm':
        k = len(kw['shape'])
        y, gr = R.layer_norm(x, k, w, b, kw['eps']), R.layer_norm_grad(x, k, w, b, kw['eps'], g)
    elif op == 'mmd_sorted_kernel':
        args = (a['input'], a['target'], kw['kernel'], kw['stride'], kw['cutoff'], kw['alpha'])
        y = R.mmd_sorted_kernel(*args)
        dr, dt = R.mmd_sorted_kernel_grad(*args, g)
        return y, {'grad_input': dr, 'grad_target': dt}
    elif kw['variant'] == 'calogan':
        y, gr = R.soft_sparsity_calogan(x), R.soft_sparsity_calogan_grad(x, g)
    else:
        y, gr = R.soft_sparsity(x, kw['alpha'], kw['beta'], kw['eps']), \
            R.soft_sparsity_grad(x, kw['alpha'], kw['beta'], kw['eps'], g)
    names = ['input', 'weight', 'bias']
    return y, {'grad_' + n: v for n, v in zip(names, gr) if v is not None}


def conv_case(rng, op, fixed=None):
    nsp = 3 if op.endswith('3d') else 2
    tr = 'transpose' in op
    if fixed:
        N, Ci, Co, size, k, s, p, o = fixed
    else:
        N, Ci, Co = int(rng.integers(1, 4)), int(rng.integers(1, 10)), int(rng.integers(1, 10))
        k = [int(rng.integers(1, 6)) for _ in range(nsp)]
        s = [int(rng.integers(1, 4)) for _ in range(nsp)]
        p = [int(rng.integers(0, k[i] + 2)) for i in range(nsp)]
        o = [int(rng.integers(0, s[i])) for i in range(nsp)] if tr else [0] * nsp
        size = []
        for i in range(nsp):
            lo = 1
            if tr:
                while (lo - 1) * s[i] - 2 * p[i] + k[i] + o[i] < 1:
                    lo += 1
            else:
                lo = max(1, k[i] - 2 * p[i])
            size.append(int(rng.integers(lo, lo + (8 if nsp == 3 else 14))))
    a = {'input': rng.standard_normal((N, Ci) + tuple(size)).astype(np.float32),
         'weight': (rng.standard_normal(((Ci, Co) if tr else (Co, Ci)) + tuple(k)) /
                    np.sqrt(Ci * np.prod(k))).astype(np.float32)}
    if rng.random() < 0.5:
        a['bias'] = rng.standard_normal(Co).astype(np.float32)
    kw = {'stride': tuple(s), 'padding': tuple(p)}
    if tr:
        kw['output_padding'] = tuple(o)
    opts = ['--stride', ','.join(map(str, s)), '--padding', ','.join(map(str, p))]
    if tr:
        opts += ['--output-padding', ','.join(map(str, o))]
    return a, kw, opts


def main():
    exe = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    seed = int(os.environ.get('CG_TEST_SEED', '0')) or int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    print('seed %d, torch %s' % (seed, torch.__version__))
    worst_cg, worst_ref, bad, count = {}, {}, [], 0
    cases = []
    big = [('conv3d', (8, 1, 8, (30, 30, 30), (4, 4, 4), (2, 2, 2), (2, 2, 2), (0, 0, 0))),
           ('conv3d', (8, 32, 64, (5, 5, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1), (0, 0, 0))),
           ('conv_transpose3d', (8, 8, 8, (10, 10, 10), (3, 3, 3), (3, 3, 3), (1, 1, 1), (2, 2, 2))),
           ('conv_transpose3d', (2, 8, 16, (30, 30, 30), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)))]
    for op, fx in big:
        cases.append((op,) + conv_case(rng, op, fx))
    for op in ['conv3d', 'conv_transpose3d', 'conv2d', 'conv_transpose2d']:
        for _ in range(n):
            cases.append((op,) + conv_case(rng, op))
    for _ in range(n // 2):
        lead = tuple(int(rng.integers(1, 5)) for _ in range(int(rng.integers(1, 4))))
        fi, fo = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        a = {'input': rng.standard_normal(lead + (fi,)).astype(np.float32),
             'weight': rng.standard_normal((fo, fi)).astype(np.float32)}
        if rng.random() < 0.5:
            a['bias'] = rng.standard_normal(fo).astype(np.float32)
        cases.append(('linear', a, {}, []))
    for _ in range(n // 2):
        nd = int(rng.integers(2, 6))
        shape = tuple(int(rng.integers(2, 7)) for _ in range(nd))
        k = int(rng.integers(1, nd + 1))
        if int(np.prod(shape[nd - k:])) < 3:  # 2 elements normalise to ±1: the true input gradient
            continue                           # is O(eps), beyond float32 (PyTorch's too: 5e-4)
        a = {'input': (2 * rng.standard_normal(shape) + 1).astype(np.float32)}
        for nm in ('weight', 'bias'):
            if rng.random() < 0.6:
                a[nm] = rng.standard_normal(shape[nd - k:]).astype(np.float32)
        cases.append(('layer_norm', a, {'shape': shape[nd - k:], 'eps': 1e-5},
                      ['--normalized-axes', str(k), '--eps', '1e-5']))
    for _ in range(n // 2):
        nd = int(rng.integers(2, 5))
        shape = (int(rng.integers(1, 4)),) + tuple(int(rng.integers(2, 9)) for _ in range(nd - 1))
        V = int(np.prod(shape[1:]))
        kw = {'kernel': int(rng.integers(1, V + 3)), 'cutoff': int(rng.integers(1, V + 5))}
        kw['stride'] = int(rng.integers(1, kw['kernel'] + 4))
        scale = float(rng.choice([0.1, 1.0, 10.0]))
        kw['alpha'] = float(rng.uniform(0.2, 5.0)) / scale ** 2
        a = {'input': rng.exponential(scale, shape).astype(np.float32),
             'target': rng.exponential(scale, shape).astype(np.float32)}
        cases.append(('mmd_sorted_kernel', a, kw, ['--kernel', str(kw['kernel']), '--stride', str(kw['stride']),
                                                   '--cutoff', str(kw['cutoff']), '--alpha', repr(kw['alpha'])]))
    a = {'input': rng.exponential(0.1, (2, 1, 12, 12, 12)).astype(np.float32),
         'target': rng.exponential(0.1, (2, 1, 12, 12, 12)).astype(np.float32)}
    cases.append(('mmd_sorted_kernel', a, {'kernel': 100, 'stride': 25, 'cutoff': 2000, 'alpha': 200.0}, []))
    for i in range(n // 2):
        shape = (int(rng.integers(1, 4)),) + tuple(int(rng.integers(1, 6)) for _ in range(int(rng.integers(0, 4))))
        x = rng.uniform(0.05, 3.0, shape) * rng.choice([-1.0, 1.0], shape)
        x[rng.random(shape) < 0.2] = 0.0
        if i % 2:
            cases.append(('soft_sparsity', {'input': x.astype(np.float32)}, {'variant': 'calogan'},
                          ['--variant', 'calogan']))
        else:
            kw = {'variant': 'eq5', 'alpha': float(rng.uniform(0.5, 3)), 'beta': float(rng.uniform(0.5, 3)),
                  'eps': 1e-6}
            cases.append(('soft_sparsity', {'input': x.astype(np.float32)}, kw,
                          ['--alpha', repr(kw['alpha']), '--beta', repr(kw['beta'])]))

    with tempfile.TemporaryDirectory() as tmp:
        for op, a, kw, opts in cases:
            count += 1
            # a random grad-output of the output's shape
            with torch.no_grad():
                y_fwd = _forward(op, a, kw)
            g = rng.standard_normal(y_fwd.shape).astype(np.float32)
            y_t, gt = torch_run(op, a, kw, g)
            y_r, gr = ref_run(op, a, kw, g)
            args = [exe, 'op', op]
            for k, v in a.items():
                path = os.path.join(tmp, '%s.npy' % k)
                np.save(path, v)
                args += ['--' + k, path]
            np.save(os.path.join(tmp, 'g.npy'), g)
            out = os.path.join(tmp, 'out%d' % count)
            args += opts + ['--grad-output', os.path.join(tmp, 'g.npy'), '--out', out]
            pr = subprocess.run(args, capture_output=True, text=True)
            if pr.returncode != 0:
                bad.append('%s: exit %d %s' % (op, pr.returncode, pr.stderr.strip()))
                continue
            for name, ref in [('output', y_t)] + sorted(gt.items()):
                e_cg = rel(np.load(os.path.join(out, name + '.npy')), ref)
                e_ref = rel(y_r if name == 'output' else gr[name], ref)
                worst_cg[(op, name)] = max(worst_cg.get((op, name), 0), e_cg)
                worst_ref[(op, name)] = max(worst_ref.get((op, name), 0), e_ref)
                if e_cg > TOL or e_ref > TOL:
                    bad.append('%s %s: calograd %.2e, reference %.2e (%s)' % (op, name, e_cg, e_ref, ' '.join(args)))
    print('%d cases; worst relative error against PyTorch (float64):' % count)
    print('  %-18s %-12s %10s %10s' % ('op', 'array', 'calograd', 'numpy ref'))
    for key in sorted(worst_cg):
        print('  %-18s %-12s %10.2e %10.2e' % (key + (worst_cg[key], worst_ref[key])))
    for b in bad:
        print('FAIL ' + b)
    return 1 if bad else 0


def _forward(op, a, kw):
    return t_forward(op, {k: torch.tensor(v, dtype=torch.float64) for k, v in a.items()}, kw).numpy()


if __name__ == '__main__':
    sys.exit(main())
