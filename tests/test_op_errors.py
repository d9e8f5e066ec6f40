#!/usr/bin/env python3
"""tests/test_op_errors.py — every way `calograd op` can be given bad input.

Each case must exit with code 2 and print exactly one line on stderr, "calograd op: ...",
containing the words that name the problem; it must not crash (no signal, no sanitizer
report: the suite also runs this against the ASan/UBSan build) and must leave no output
behind (the --out folder is not created, and an existing one is left as it was).

Needs only the Python standard library: the .npy files, broken or not, are built by hand.
usage: test_op_errors.py CALOGRAD
"""
import os
import struct
import subprocess
import sys
import tempfile


def npy(shape, descr="'<f4'", fortran='False', version=(1, 0), header=None, data=None, extra=b''):
    """The bytes of a .npy file; every part can be overridden to break it."""
    if header is None:
        dims = '(%s)' % (', '.join(str(d) for d in shape) + (',' if len(shape) == 1 else ''))
        header = "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, dims)
    pre = 10 if version[0] == 1 else 12
    h = header + ' ' * ((64 - (pre + len(header) + 1) % 64) % 64) + '\n'
    size = struct.pack('<H', len(h)) if version[0] == 1 else struct.pack('<I', len(h))
    if data is None:
        n = 1
        for d in shape:
            n *= d
        item = 8 if descr.endswith("f8'") else 4
        data = struct.pack('<%df' % n, *[((i * 7919) % 13) / 13.0 - 0.4 for i in range(n)]) if item == 4 else \
            struct.pack('<%dd' % n, *[((i * 7919) % 13) / 13.0 - 0.4 for i in range(n)])
    return b'\x93NUMPY' + bytes(version) + size + h.encode('latin-1') + data + extra


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = os.path.abspath(sys.argv[1])
    failures, n = [], 0
    with tempfile.TemporaryDirectory(prefix='cg_operr_') as tmp:
        def f(name, content):
            p = os.path.join(tmp, name)
            with open(p, 'wb') as fh:
                fh.write(content)
            return p

        # valid arrays: conv3d k=3 on 6³ gives 4³
        X = f('x.npy', npy((2, 3, 6, 6, 6)))
        W = f('w.npy', npy((4, 3, 3, 3, 3)))
        B = f('b.npy', npy((4,)))
        G = f('g.npy', npy((2, 4, 4, 4, 4)))
        X4 = f('x4.npy', npy((2, 3, 6, 6)))
        W4 = f('w4.npy', npy((4, 3, 3, 3)))
        WT = f('wt.npy', npy((3, 4, 3, 3, 3)))
        L2 = f('l2.npy', npy((5, 7)))
        LW = f('lw.npy', npy((6, 8)))
        R1 = f('r1.npy', npy((5,)))
        T = f('t.npy', npy((2, 3, 6, 5, 6)))
        full = f('x_text.npy', b'this is not a numpy file\n')
        bad = {
            'empty file': f('e0.npy', b''),
            'only the magic': f('e1.npy', b'\x93NUMPY'),
            'header past the end': f('e2.npy', b'\x93NUMPY\x01\x00\xe8\x03' + b' ' * 20),
            'v2 header past the end': f('e3.npy', b'\x93NUMPY\x02\x00\xff\xff\x00\x00{}'),
            'truncated data': f('e4.npy', npy((2, 3, 6, 6, 6))[:-7]),
            'trailing garbage': f('e5.npy', npy((2, 3, 6, 6, 6), extra=b'\0' * 8)),
            'version 4.0': f('e6.npy', npy((2,), version=(4, 0))),
            'int32': f('e7.npy', npy((2, 3), descr="'<i4'")),
            'big-endian': f('e8.npy', npy((2, 3), descr="'>f4'")),
            'float16': f('e9.npy', npy((2, 3), descr="'<f2'", data=b'\0' * 12)),
            'fortran order': f('e10.npy', npy((2, 3), fortran='True')),
            'rank 6': f('e11.npy', npy((1, 1, 1, 1, 1, 2))),
            'malformed dict': f('e12.npy', npy(None, header="{'descr': '<f4', 'fortran_order': False, "
                                                            "'shape': (2, 3 }", data=b'')),
            'missing key': f('e13.npy', npy(None, header="{'descr': '<f4', 'shape': (2,), }", data=b'\0' * 8)),
            'absurd shape': f('e14.npy', npy((10 ** 18, 10 ** 18), data=b'')),
            'huge shape': f('e15.npy', npy((100000, 100000, 100), data=b'\0' * 64)),
            'negative dim': f('e16.npy', npy(None, header="{'descr': '<f4', 'fortran_order': False, "
                                                          "'shape': (-1, 3), }", data=b'')),
            'structured dtype': f('e17.npy', npy(None, header="{'descr': [('a', '<f4')], "
                                                              "'fortran_order': False, 'shape': (2,), }",
                                                 data=b'\0' * 8)),
            'repeated key': f('e18.npy', npy(None, header="{'descr': '<f4', 'descr': '<f4', "
                                                          "'fortran_order': False, 'shape': (2,), }",
                                             data=b'\0' * 8)),
            'version 1.1': f('e19.npy', npy((2,), version=(1, 1))),
        }
        E = f('empty_arr.npy', npy((0, 3, 6, 6, 6)))
        Wc = f('wc.npy', npy((4, 2, 3, 3, 3)))
        Xs = f('xs.npy', npy((1, 3, 2, 2, 2)))
        Bw = f('bw.npy', npy((5,)))
        Gw = f('gw.npy', npy((2, 4, 4, 4, 5)))
        LNW = f('lnw.npy', npy((6, 5)))
        afile = f('a_file', b'x')

        conv = ['conv3d', '--input', X, '--weight', W]
        cases = [
            # (what, argv after 'op', words the message must contain)
            ('no op name', ['--input', X], 'missing the op name'),
            ('unknown op', ['conv4d', '--input', X], "unknown op 'conv4d'"),
            ('missing --input', ['conv3d', '--weight', W], 'missing required option --input'),
            ('missing --out', conv, 'missing required option --out'),
            ('missing --weight', ['conv3d', '--input', X], 'needs --weight'),
            ('missing --target', ['mmd_sorted_kernel', '--input', X], 'needs --target'),
            ('unknown option', conv + ['--foo', '1'], "unknown option '--foo'"),
            ('option without a value', conv + ['--stride'], '--stride needs a value'),
            ('extra positional', conv + ['extra'], "unexpected argument 'extra'"),
            ('missing file', ['conv3d', '--input', os.path.join(tmp, 'nope.npy'), '--weight', W], 'cannot open'),
            ('folder as input', ['conv3d', '--input', tmp, '--weight', W], 'not a regular file'),
            ('text file', ['conv3d', '--input', full, '--weight', W], 'not a .npy file'),
            ('empty array', ['conv3d', '--input', E, '--weight', W], 'is empty'),
            ('channel mismatch', ['conv3d', '--input', X, '--weight', Wc], 'channels'),
            ('kernel larger than the input', ['conv3d', '--input', Xs, '--weight', W], 'larger than'),
            ('conv3d on a 4-D input', ['conv3d', '--input', X4, '--weight', W], '5 axes'),
            ('conv2d on a 5-D input', ['conv2d', '--input', X, '--weight', W4], '4 axes'),
            ('bias of the wrong shape', conv + ['--bias', Bw], 'bias'),
            ('grad-output of the wrong shape', conv + ['--grad-output', Gw], '--grad-output'),
            ('grad-output truncated', conv + ['--grad-output', bad['truncated data']], 'truncated data'),
            ('output padding = stride', ['conv_transpose3d', '--input', X, '--weight', WT, '--stride', '2',
                                         '--output-padding', '2'], 'output_padding'),
            ('output padding, stride 1', ['conv_transpose3d', '--input', X, '--weight', WT,
                                          '--output-padding', '0,1,0'], 'output_padding'),
            ('transpose padding leaves nothing', ['conv_transpose3d', '--input', X, '--weight', WT, '--padding',
                                                  '5'], 'no output'),
            ('transposed weight for conv3d', ['conv3d', '--input', X, '--weight', WT], 'channels'),
            ('stride 0', conv + ['--stride', '0'], '--stride'),
            ('two strides for 3-D', conv + ['--stride', '2,2'], '--stride'),
            ('stride not a number', conv + ['--stride', 'abc'], '--stride'),
            ('negative padding', conv + ['--padding', '-1'], '--padding'),
            ('four paddings', conv + ['--padding', '1,1,1,1'], '--padding'),
            ('--output-padding on conv3d', conv + ['--output-padding', '1'], 'does not apply'),
            ('--kernel on conv3d', conv + ['--kernel', '3'], 'does not apply'),
            ('tensor cores on the cpu', conv + ['--math', 'tf32'], 'needs --device cuda'),
            ('unknown math mode', conv + ['--math', 'fp16'], '--math'),
            ('--target on linear', ['linear', '--input', L2, '--weight', LW, '--target', L2], 'does not apply'),
            ('linear size mismatch', ['linear', '--input', L2, '--weight', LW], 'linear'),
            ('linear 1-D weight', ['linear', '--input', L2, '--weight', R1], 'linear'),
            ('layer_norm without axes', ['layer_norm', '--input', X], '--normalized-axes'),
            ('layer_norm axes 0', ['layer_norm', '--input', X, '--normalized-axes', '0'], '--normalized-axes'),
            ('layer_norm too many axes', ['layer_norm', '--input', X, '--normalized-axes', '6'], 'layer_norm'),
            ('layer_norm gain shape', ['layer_norm', '--input', X, '--weight', LNW], 'gain'),
            ('layer_norm eps 0', ['layer_norm', '--input', X, '--normalized-axes', '2', '--eps', '0'], '--eps'),
            ('mmd shapes differ', ['mmd_sorted_kernel', '--input', X, '--target', T], 'differ'),
            ('mmd kernel 0', ['mmd_sorted_kernel', '--input', X, '--target', X, '--kernel', '0'], '--kernel'),
            ('mmd stride list', ['mmd_sorted_kernel', '--input', X, '--target', X, '--stride', '2,2'], '--stride'),
            ('mmd on 1-D input', ['mmd_sorted_kernel', '--input', R1, '--target', R1], 'mmd_sorted_kernel'),
            ('calogan with --alpha', ['soft_sparsity', '--input', X, '--variant', 'calogan', '--alpha', '2'],
             '--alpha'),
            ('unknown variant', ['soft_sparsity', '--input', X, '--variant', 'paper'], '--variant'),
            ('sparsity alpha 0', ['soft_sparsity', '--input', X, '--alpha', '0'], 'soft_sparsity'),
            ('sparsity eps -1', ['soft_sparsity', '--input', X, '--eps', '-1'], '--eps'),
            ('bad --device', conv + ['--device', 'tpu'], '--device'),
            ('--bench -1', conv + ['--bench', '-1'], '--bench'),
            ('--bench abc', conv + ['--bench', 'abc'], '--bench'),
            ('--out is a file', conv + ['--out', afile], 'not a folder'),
            ('--out under a file', conv + ['--out', os.path.join(afile, 'sub')], 'cannot create'),
        ]
        for what, path in bad.items():
            cases.append(('input: ' + what, ['conv3d', '--input', path, '--weight', W], None))
            cases.append(('weight: ' + what, ['conv3d', '--input', X, '--weight', path], '--weight'))
        words = {'empty file': 'not a .npy', 'only the magic': 'truncated header',
                 'header past the end': 'truncated header', 'v2 header past the end': 'truncated header',
                 'truncated data': 'truncated data', 'trailing garbage': 'trailing data',
                 'version 4.0': 'version 4.0', 'int32': "'<i4'", 'big-endian': 'big-endian',
                 'float16': "'<f2'", 'fortran order': 'Fortran', 'rank 6': 'rank 6', 'malformed dict': 'shape',
                 'missing key': 'lacks', 'absurd shape': 'impossibly large', 'huge shape': 'truncated data',
                 'negative dim': 'shape', 'structured dtype': 'structured', 'repeated key': 'repeated',
                 'version 1.1': 'version 1.1'}
        cases = [(w, a, m if m is not None else words[w[len('input: '):]]) for w, a, m in cases]

        # a CUDA request must fail cleanly where there is no GPU (the usual test machine)
        dev = subprocess.run([exe, 'devices'], capture_output=True, text=True).stdout
        if 'cuda: available' not in dev:
            cases.append(('--device cuda without a GPU', conv + ['--device', 'cuda'], 'cuda'))

        for what, argv, word in cases:
            n += 1
            out = os.path.join(tmp, 'out_%d' % n)
            if '--out' not in argv and what != 'missing --out':
                argv = ['--out', out] + argv
            p = subprocess.run([exe, 'op'] + argv, capture_output=True, text=True, errors='replace')
            lines = p.stderr.strip('\n').split('\n') if p.stderr.strip() else []
            problems = []
            if p.returncode != 2:
                problems.append('exit code %d (want 2)' % p.returncode)
            if len(lines) != 1:
                problems.append('%d lines on stderr (want 1)' % len(lines))
            elif not lines[0].startswith('calograd op: '):
                problems.append('message does not start with "calograd op: "')
            if word and word not in p.stderr:
                problems.append('message lacks %r' % word)
            if 'Sanitizer' in p.stderr or 'runtime error' in p.stderr:
                problems.append('sanitizer report')
            if os.path.exists(out):
                problems.append('left %s behind' % out)
            if problems:
                failures.append('%s: %s\n    stderr: %s\n    argv: %s' % (what, '; '.join(problems),
                                                                         p.stderr.strip()[:600], ' '.join(argv)))
            else:
                print('ok   %-36s %s' % (what, lines[0]))

        # every truncation of a valid file, and random damage to its header: exit 2 with one
        # line (or 0 where the damage left a valid file, e.g. a changed padding space)
        good = npy((2, 3, 4, 4, 4))
        damaged = [('cut at %d' % k, good[:k]) for k in range(0, 130)] + [('cut at %d' % (len(good) - 1),
                                                                          good[:-1])]
        state = 12345
        for i in range(60):
            b = bytearray(good)
            for _ in range(1 + i % 3):
                state = (state * 1103515245 + 12345) % 2 ** 31
                pos = state % 128
                state = (state * 1103515245 + 12345) % 2 ** 31
                b[pos] = state % 256
            damaged.append(('damage #%d' % i, bytes(b)))
        for what, content in damaged:
            n += 1
            path = f('damaged.npy', content)
            out = os.path.join(tmp, 'out_%d' % n)
            p = subprocess.run([exe, 'op', 'conv3d', '--input', path, '--weight', W, '--out', out],
                               capture_output=True, text=True, errors='replace')
            lines = p.stderr.strip().split('\n') if p.stderr.strip() else []
            ok = (p.returncode == 0 and not lines) or (p.returncode == 2 and len(lines) == 1 and
                                                        not os.path.exists(out))
            if 'Sanitizer' in p.stderr or 'runtime error' in p.stderr:
                ok = False
            if not ok:
                failures.append('damaged file, %s: exit %d, stderr %r' % (what, p.returncode, p.stderr[:400]))
        print('ok   %d damaged files' % len(damaged))

        # a failing run leaves an existing results folder exactly as it was
        n += 1
        keep = os.path.join(tmp, 'keep')
        os.mkdir(keep)
        stale = os.path.join(keep, 'output.npy')
        with open(stale, 'wb') as fh:
            fh.write(b'earlier')
        p = subprocess.run([exe, 'op', 'conv3d', '--input', X, '--weight', Wc, '--out', keep], capture_output=True)
        if p.returncode != 2 or os.listdir(keep) != ['output.npy'] or open(stale, 'rb').read() != b'earlier':
            failures.append('existing folder: a failing run changed it (exit %d, holds %s)' %
                            (p.returncode, os.listdir(keep)))
        # and a good run of the same files works (so the cases above failed for their reason)
        n += 1
        p = subprocess.run([exe, 'op'] + conv + ['--bias', B, '--grad-output', G, '--out', keep],
                           capture_output=True, text=True)
        if p.returncode != 0 or sorted(os.listdir(keep)) != ['grad_bias.npy', 'grad_input.npy', 'grad_weight.npy',
                                                              'output.npy']:
            failures.append('good run: exit %d, %s, folder holds %s' % (p.returncode, p.stderr.strip(),
                                                                      os.listdir(keep)))
        n += 1
        p = subprocess.run([exe, 'op', '--help'], capture_output=True, text=True)
        if p.returncode != 0 or 'conv_transpose3d' not in p.stdout or '--output-padding' not in p.stdout:
            failures.append('--help: exit %d or it does not list the ops' % p.returncode)

    for fl in failures:
        print('FAIL ' + fl, file=sys.stderr)
    print('%d passed, %d failed' % (n - len(failures), len(failures)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
