"""tests/op_reference.py — an independent NumPy reference for the ops of `calograd op`.

Written from the ops' definitions (PyTorch's conv3d / conv_transpose3d / linear / layer_norm
semantics, the BIB-AE code's sorted-kernel MMD as quoted in shared/reference/models.md §1.7,
soft sparsity from arXiv 1711.08813 eq. 5 and the CaloGAN code), not from calograd's C code:
convolutions are sums over kernel taps of strided slices (einsum), the gradients are derived
by hand, and `python3 tests/op_reference.py` checks every gradient here against central
finite differences, so that the reference does not have to be trusted blindly.

Conventions: everything is computed in float64. A gradient function returns the gradients
of sum(output * g) with respect to each array input, in the order of the inputs.
Shapes: volumes NCDHW; conv weights (Co, Ci, kD, kH, kW), conv_transpose weights
(Ci, Co, kD, kH, kW) as in PyTorch. 2-D forms add a depth axis of size 1.
Limits: no groups, no dilation (calograd has neither). Gradients through a sort assume no
ties among the sorted values (random test inputs have none).
"""
import numpy as np


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def _tap(offset, stride, count):
    """The slice of a padded axis that kernel tap `offset` reads for `count` outputs."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _taps(k):
    return [(a, b, c) for a in range(k[0]) for b in range(k[1]) for c in range(k[2])]


def _slices(t, stride, count):
    return (slice(None), slice(None)) + tuple(_tap(t[i], stride[i], count[i]) for i in range(3))


# ---------------------------------------------------------------------------------- conv3d

def conv3d_out_size(size, k, stride, pad):
    return [(size[i] + 2 * pad[i] - k[i]) // stride[i] + 1 for i in range(3)]


def conv3d(x, w, b, stride, pad):
    """y[n,o,d,h,w] = b[o] + sum_{c,i,j,l} w[o,c,i,j,l] * xpad[n,c,d*s0+i,h*s1+j,w*s2+l]."""
    x, w, b = _f64(x, w, b)
    k = w.shape[2:]
    out = conv3d_out_size(x.shape[2:], k, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    y = np.zeros((x.shape[0], w.shape[0]) + tuple(out))
    for t in _taps(k):
        y += np.einsum('ncdhw,oc->nodhw', xp[_slices(t, stride, out)], w[:, :, t[0], t[1], t[2]])
    if b is not None:
        y += b[None, :, None, None, None]
    return y


def conv3d_grad(x, w, b, stride, pad, g):
    """(dx, dw, db) of sum(conv3d(x, w, b) * g): each tap's slice gets g·w back (dx) and
    contributes g·slice to that tap's weight (dw); db sums g."""
    x, w, g = _f64(x, w, g)
    k = w.shape[2:]
    out = g.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for t in _taps(k):
        s = _slices(t, stride, out)
        dxp[s] += np.einsum('nodhw,oc->ncdhw', g, w[:, :, t[0], t[1], t[2]])
        dw[:, :, t[0], t[1], t[2]] = np.einsum('nodhw,ncdhw->oc', g, xp[s])
    D, H, W = x.shape[2:]
    dx = dxp[:, :, pad[0]:pad[0] + D, pad[1]:pad[1] + H, pad[2]:pad[2] + W]
    db = None if b is None else g.sum(axis=(0, 2, 3, 4))
    return dx, dw, db


# ------------------------------------------------------------------------ conv_transpose3d

def conv_transpose3d_out_size(size, k, stride, pad, opad):
    return [(size[i] - 1) * stride[i] - 2 * pad[i] + k[i] + opad[i] for i in range(3)]


def _convt_full(x, k, stride, opad):
    """Size of the uncropped output: every input element scatters a whole kernel."""
    return [(x[i] - 1) * stride[i] + k[i] + opad[i] for i in range(3)]


def conv_transpose3d(x, w, b, stride, pad, opad):
    """Each input element x[n,c,d,h,w] adds x·w[c,:,i,j,l] at full-output position
    (d*s0+i, h*s1+j, w*s2+l); output padding extends the far end; the result is the
    full output cropped by `pad` on both sides (PyTorch's ConvTranspose3d)."""
    x, w, b = _f64(x, w, b)
    k = w.shape[2:]
    full = _convt_full(x.shape[2:], k, stride, opad)
    out = conv_transpose3d_out_size(x.shape[2:], k, stride, pad, opad)
    yf = np.zeros((x.shape[0], w.shape[1]) + tuple(full))
    for t in _taps(k):
        yf[_slices(t, stride, x.shape[2:])] += np.einsum('ncdhw,co->nodhw', x, w[:, :, t[0], t[1], t[2]])
    y = yf[:, :, pad[0]:pad[0] + out[0], pad[1]:pad[1] + out[1], pad[2]:pad[2] + out[2]]
    if b is not None:
        y = y + b[None, :, None, None, None]
    return y


def conv_transpose3d_grad(x, w, b, stride, pad, opad, g):
    x, w, g = _f64(x, w, g)
    k = w.shape[2:]
    full = _convt_full(x.shape[2:], k, stride, opad)
    out = g.shape[2:]
    gf = np.zeros((g.shape[0], g.shape[1]) + tuple(full))
    gf[:, :, pad[0]:pad[0] + out[0], pad[1]:pad[1] + out[1], pad[2]:pad[2] + out[2]] = g
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for t in _taps(k):
        gs = gf[_slices(t, stride, x.shape[2:])]
        dx += np.einsum('nodhw,co->ncdhw', gs, w[:, :, t[0], t[1], t[2]])
        dw[:, :, t[0], t[1], t[2]] = np.einsum('ncdhw,nodhw->co', x, gs)
    db = None if b is None else g.sum(axis=(0, 2, 3, 4))
    return dx, dw, db


# ---------------------------------------------------------------------------- 2-D forms

def _d(a):  # (N, C, H, W) -> (N, C, 1, H, W)
    return None if a is None else np.asarray(a)[:, :, None]


def _s(a):
    return None if a is None else a[:, :, 0]


def conv2d(x, w, b, stride, pad):
    return _s(conv3d(_d(x), _d(w), b, (1,) + tuple(stride), (0,) + tuple(pad)))


def conv2d_grad(x, w, b, stride, pad, g):
    dx, dw, db = conv3d_grad(_d(x), _d(w), b, (1,) + tuple(stride), (0,) + tuple(pad), _d(g))
    return _s(dx), _s(dw), db


def conv_transpose2d(x, w, b, stride, pad, opad):
    return _s(conv_transpose3d(_d(x), _d(w), b, (1,) + tuple(stride), (0,) + tuple(pad), (0,) + tuple(opad)))


def conv_transpose2d_grad(x, w, b, stride, pad, opad, g):
    dx, dw, db = conv_transpose3d_grad(_d(x), _d(w), b, (1,) + tuple(stride), (0,) + tuple(pad),
                                       (0,) + tuple(opad), _d(g))
    return _s(dx), _s(dw), db


# -------------------------------------------------------------------------------- linear

def linear(x, w, b):
    x, w, b = _f64(x, w, b)
    y = x @ w.T
    return y if b is None else y + b


def linear_grad(x, w, b, g):
    x, w, g = _f64(x, w, g)
    g2, x2 = g.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1])
    return g @ w, g2.T @ x2, None if b is None else g2.sum(axis=0)


# ---------------------------------------------------------------------------- layer norm

def layer_norm(x, naxes, gamma, beta, eps):
    """Normalise over the last `naxes` axes with the biased variance, then gain and bias
    shaped like those axes (torch.nn.functional.layer_norm)."""
    x, gamma, beta = _f64(x, gamma, beta)
    ax = tuple(range(x.ndim - naxes, x.ndim))
    mu = x.mean(axis=ax, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=ax, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def layer_norm_grad(x, naxes, gamma, beta, eps, g):
    """xhat = (x - mu)·r with r = (var + eps)^-1/2. For gx = g·gamma, differentiating mu and
    var (d var/dx_i = 2(x_i - mu)/n) gives dx = r·(gx - mean(gx) - xhat·mean(gx·xhat))."""
    x, gamma, g = _f64(x, gamma, g)
    ax = tuple(range(x.ndim - naxes, x.ndim))
    lead = tuple(range(x.ndim - naxes))
    mu = x.mean(axis=ax, keepdims=True)
    r = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=ax, keepdims=True) + eps)
    xhat = (x - mu) * r
    gx = g * gamma if gamma is not None else g
    dx = r * (gx - gx.mean(axis=ax, keepdims=True) - xhat * (gx * xhat).mean(axis=ax, keepdims=True))
    dgamma = None if gamma is None else (g * xhat).sum(axis=lead)
    dbeta = None if beta is None else g.sum(axis=lead)
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- sorted-kernel MMD (§1.7)

def _f32_spread(E, alpha, a, b):
    """For bounds: E·(1 + alpha·(a² + b² + 2|a·b|)), the size of the float32 rounding error
    of E = exp(-alpha·(a² + b² - 2ab)) in units of float32's epsilon: the literal formula
    computes the exponent from squares that cancel when a ≈ b."""
    return np.abs(E) * (1 + alpha * (a * a + b * b + 2 * np.abs(a * b)))


def _f32_grad_spread(E, alpha, a, b):
    """For bounds: the same for the term 2·alpha·(a - b)·E of the gradient, which autograd
    forms as 2a·alpha·E - 2b·alpha·E (cancelling when a ≈ b) times E's own error."""
    return 2 * alpha * (np.abs(a) + np.abs(b) + np.abs(a - b) * _f32_spread(1.0, alpha, a, b)) * np.abs(E)


def mmd_hit_loss_cast_mean(recon_x, x, alpha, bound=False):
    """The BIB-AE code's per-sample window MMD, literally: outer products and their
    diagonals (models.md §1.7). recon_x, x: (B, k). Returns (B,). With bound=True, the
    sum of the terms' rounding-error sizes instead (see _f32_spread)."""
    B = x.shape[0]
    xb = x.reshape(B, 1, -1)
    yb = recon_x.reshape(B, 1, -1)
    xx = np.matmul(xb.transpose(0, 2, 1), xb)  # (B, k, k): x_i x_j
    yy = np.matmul(yb.transpose(0, 2, 1), yb)
    xy = np.matmul(yb.transpose(0, 2, 1), xb)  # y_i x_j
    rx = np.broadcast_to(np.diagonal(xx, axis1=1, axis2=2)[:, None, :], xx.shape)  # [i, j] = x_j²
    ry = np.broadcast_to(np.diagonal(yy, axis1=1, axis2=2)[:, None, :], yy.shape)
    K = np.exp(-alpha * (rx.transpose(0, 2, 1) + rx - 2 * xx))
    L = np.exp(-alpha * (ry.transpose(0, 2, 1) + ry - 2 * yy))
    P = np.exp(-alpha * (ry.transpose(0, 2, 1) + rx - 2 * xy))
    if bound:
        xi, xj, yi, yj = x[:, :, None], x[:, None, :], recon_x[:, :, None], recon_x[:, None, :]
        K, L, P = _f32_spread(K, alpha, xi, xj), _f32_spread(L, alpha, yi, yj), _f32_spread(P, alpha, yi, xj)
        return K.mean(axis=(1, 2)) + L.mean(axis=(1, 2)) + 2 * P.mean(axis=(1, 2))
    return K.mean(axis=(1, 2)) + L.mean(axis=(1, 2)) - 2 * P.mean(axis=(1, 2))


def _sort_desc(a):
    """Descending sort of each row, with the permutation (stable for equal values)."""
    idx = np.argsort(-a, axis=1, kind='stable')
    return np.take_along_axis(a, idx, axis=1), idx


def _windows(npix, kernel, stride, cutoff):
    return [(j, min(j + kernel, npix)) for j in range(0, min(cutoff, npix), stride)]


def mmd_sorted_kernel(recon, real, kernel, stride, cutoff, alpha, bound=False):
    """mmd_hit_sortKernel on the descending-sorted hits of each shower: windows of `kernel`
    ranks every `stride` ranks below `cutoff`, averaged over windows and batch. Shape ().
    bound=True: the size of its float32 rounding error in units of epsilon (_f32_spread)."""
    recon, real = _f64(recon, real)
    B = recon.shape[0]
    ys, _ = _sort_desc(recon.reshape(B, -1))
    xs, _ = _sort_desc(real.reshape(B, -1))
    win = _windows(ys.shape[1], kernel, stride, cutoff)
    out = np.zeros(B)
    for j, e in win:
        out += mmd_hit_loss_cast_mean(ys[:, j:e], xs[:, j:e], alpha, bound)
    return np.array(out.mean() / len(win))


def mmd_sorted_kernel_grad(recon, real, kernel, stride, cutoff, alpha, g, bound=False):
    """Per window, with u = generated and v = real values at the window's ranks and
    E(a, b) = exp(-alpha (a - b)²), dE/da = -2 alpha (a - b) E:
      d/du_i [mean E(u,u) - 2 mean E(u,v)] = (2/k²) Σ_j [-2a(u_i-u_j)E(u_i,u_j) + 2a(u_i-v_j)E(u_i,v_j)]
    and symmetrically for v. Window gradients add up per rank and go back to the cells
    through the sorting permutation. bound=True: per cell, the size of the float32 rounding
    error in units of epsilon (_f32_grad_spread)."""
    recon, real, g = _f64(recon, real, g)
    B = recon.shape[0]
    ys, iy = _sort_desc(recon.reshape(B, -1))
    xs, ix = _sort_desc(real.reshape(B, -1))
    win = _windows(ys.shape[1], kernel, stride, cutoff)
    scale = float(g) / (B * len(win))
    dys, dxs = np.zeros_like(ys), np.zeros_like(xs)
    for j, e in win:
        u, v = ys[:, j:e], xs[:, j:e]
        k2 = float((e - j) ** 2)
        duu = u[:, :, None] - u[:, None, :]
        dvv = v[:, :, None] - v[:, None, :]
        duv = u[:, :, None] - v[:, None, :]  # [i, j] = u_i - v_j
        Euu, Evv, Euv = np.exp(-alpha * duu ** 2), np.exp(-alpha * dvv ** 2), np.exp(-alpha * duv ** 2)
        if bound:
            ui, uj, vi, vj = u[:, :, None], u[:, None, :], v[:, :, None], v[:, None, :]
            Guv = _f32_grad_spread(Euv, alpha, ui, vj)
            du = (2 * _f32_grad_spread(Euu, alpha, ui, uj).sum(axis=2) + 2 * Guv.sum(axis=2)) / k2
            dv = (2 * _f32_grad_spread(Evv, alpha, vi, vj).sum(axis=2) + 2 * Guv.sum(axis=1)) / k2
        else:
            du = (2 * (-2 * alpha * duu * Euu).sum(axis=2) - 2 * (-2 * alpha * duv * Euv).sum(axis=2)) / k2
            dv = (2 * (-2 * alpha * dvv * Evv).sum(axis=2) - 2 * (2 * alpha * duv * Euv).sum(axis=1)) / k2
        dys[:, j:e] += du * (abs(scale) if bound else scale)
        dxs[:, j:e] += dv * (abs(scale) if bound else scale)
    drecon, dreal = np.zeros_like(ys), np.zeros_like(xs)
    np.put_along_axis(drecon, iy, dys, axis=1)
    np.put_along_axis(dreal, ix, dxs, axis=1)
    return drecon.reshape(recon.shape), dreal.reshape(real.shape)


# ------------------------------------------------------------------------- soft sparsity

def _per_sample_mean(v):
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim > 1 else v


def _cells(x):
    return int(np.prod(x.shape[1:])) if x.ndim > 1 else 1


def soft_sparsity(x, a, b, eps):
    """Eq. 5: mean over a sample's cells of t/(t+1), t = |x|^a + |x|^-b, |x| floored at eps."""
    x, = _f64(x)
    ax = np.maximum(np.abs(x), eps)
    t = ax ** a + ax ** -b
    return _per_sample_mean(t / (t + 1))


def soft_sparsity_grad(x, a, b, eps, g):
    x, g = _f64(x, g)
    ax = np.maximum(np.abs(x), eps)
    t = ax ** a + ax ** -b
    dt = a * ax ** (a - 1) - b * ax ** (-b - 1)
    d = dt / (t + 1) ** 2 * np.sign(x) * (np.abs(x) >= eps)
    gs = g.reshape((-1,) + (1,) * (x.ndim - 1))
    return (d * gs / _cells(x),)


def soft_sparsity_calogan(x):
    """The CaloGAN code: mean over cells of softsign(|x|^5 + |x|^(1/5))^(1/5); 0 at 0."""
    x, = _f64(x)
    t = np.abs(x) ** 5 + np.abs(x) ** 0.2
    return _per_sample_mean((t / (1 + t)) ** 0.2)


def soft_sparsity_calogan_grad(x, g):
    """d/d|x| = 0.2 s^-0.8 · (1+t)^-2 · (5|x|^4 + 0.2|x|^-0.8), s = t/(1+t); taken as 0 at
    x = 0, where the 1/5 powers have an infinite slope."""
    x, g = _f64(x, g)
    ax = np.abs(x)
    nz = ax > 0
    safe = np.where(nz, ax, 1.0)
    t = safe ** 5 + safe ** 0.2
    s = t / (1 + t)
    d = 0.2 * s ** -0.8 / (1 + t) ** 2 * (5 * safe ** 4 + 0.2 * safe ** -0.8) * np.sign(x) * nz
    gs = g.reshape((-1,) + (1,) * (x.ndim - 1))
    return (d * gs / _cells(x),)


# ------------------------------------------------------------- self-check of the gradients

def _fd_check(f, grad, arrays, rng, h=1e-6, tol=1e-6, samples=12):
    """Central differences of L = sum(f(arrays) * g) for random g, on a sample of each
    array's elements, against grad(arrays, g). Returns the worst relative error."""
    y = f(*arrays)
    g = rng.standard_normal(np.shape(y))
    an = grad(*arrays, g)
    worst = 0.0
    for ai, a in enumerate(arrays):
        if a is None or an[ai] is None:
            continue
        for _ in range(samples):
            i = tuple(rng.integers(0, n) for n in a.shape)
            keep = a[i]
            a[i] = keep + h
            lp = float((f(*arrays) * g).sum())
            a[i] = keep - h
            lm = float((f(*arrays) * g).sum())
            a[i] = keep
            num = (lp - lm) / (2 * h)
            err = abs(num - an[ai][i]) / max(1.0, abs(num))
            worst = max(worst, err)
    if worst > tol:
        raise AssertionError('%s: finite differences disagree (worst relative error %.3g)' % (f.__name__, worst))
    return worst


def selfcheck(rng):
    """Check every reference gradient against finite differences on small random cases."""
    r = rng.standard_normal
    s, p = (2, 1, 3), (1, 0, 2)
    _fd_check(lambda x, w, b: conv3d(x, w, b, s, p),
              lambda x, w, b, g: conv3d_grad(x, w, b, s, p, g),
              [r((2, 3, 5, 4, 6)), r((2, 3, 3, 2, 3)), r(2)], rng)
    op = (1, 0, 2)
    _fd_check(lambda x, w, b: conv_transpose3d(x, w, b, s, (1, 0, 1), op),
              lambda x, w, b, g: conv_transpose3d_grad(x, w, b, s, (1, 0, 1), op, g),
              [r((2, 3, 3, 2, 3)), r((3, 2, 3, 2, 4)), r(2)], rng)
    _fd_check(lambda x, w, b: conv_transpose2d(x, w, b, (2, 3), (1, 1), (1, 2)),
              lambda x, w, b, g: conv_transpose2d_grad(x, w, b, (2, 3), (1, 1), (1, 2), g),
              [r((1, 2, 3, 4)), r((2, 3, 3, 4)), r(3)], rng)
    _fd_check(lambda x, w, b: linear(x, w, b), lambda x, w, b, g: linear_grad(x, w, b, g),
              [r((2, 3, 4)), r((5, 4)), r(5)], rng)
    _fd_check(lambda x, ga, be: layer_norm(x, 2, ga, be, 1e-5),
              lambda x, ga, be, g: layer_norm_grad(x, 2, ga, be, 1e-5, g),
              [r((2, 3, 4, 5)), r((4, 5)), r((4, 5))], rng)
    _fd_check(lambda u, v: mmd_sorted_kernel(u, v, 4, 3, 10, 0.7),
              lambda u, v, g: mmd_sorted_kernel_grad(u, v, 4, 3, 10, 0.7, g),
              [r((3, 2, 7)), r((3, 2, 7))], rng)
    _fd_check(lambda x: soft_sparsity(x, 1.5, 2.0, 1e-6), lambda x, g: soft_sparsity_grad(x, 1.5, 2.0, 1e-6, g),
              [r((3, 4, 5)) + 0.1], rng, tol=1e-5)
    # |x|^(1/5) bends without bound near 0, so central differences with h = 1e-6 need |x| >> h:
    # cells at least 0.05 from zero (a cell at 1e-5 gave a 4e-5 difference from truncation alone)
    xs = r((3, 4, 5))
    _fd_check(soft_sparsity_calogan, soft_sparsity_calogan_grad, [np.sign(xs) * (np.abs(xs) + 0.05)], rng, tol=1e-5)
    # the conv gradient must not depend on how it was derived: <conv(x), g> = <x, dx> (linearity)
    x, w, g = r((2, 3, 6, 5, 4)), r((4, 3, 2, 3, 2)), None
    y = conv3d(x, w, None, (2, 2, 1), (1, 0, 1))
    g = r(y.shape)
    dx, dw, _ = conv3d_grad(x, w, None, (2, 2, 1), (1, 0, 1), g)
    assert abs((y * g).sum() - (x * dx).sum()) < 1e-9 * max(1, abs((y * g).sum()))
    assert abs((y * g).sum() - (w * dw).sum()) < 1e-9 * max(1, abs((y * g).sum()))


if __name__ == '__main__':
    seed = np.random.SeedSequence().entropy % 2**32
    selfcheck(np.random.default_rng(seed))
    print('op_reference: every gradient agrees with finite differences (seed %d)' % seed)
