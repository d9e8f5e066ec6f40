"""tests/cvox.py — an independent reader of .cvox files written from io/FORMAT.md alone
(numpy + zlib), used by the Python cross-checks and handy for analysis:

    from cvox import read_cvox
    f = read_cvox("photons.cvox")   # dict: showers (N, ncells) float32, cond (N, C), names, ...
"""
import struct
import zlib

import numpy as np


def _str(b):
    return b.split(b"\0", 1)[0].decode()


def read_cvox(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89CVOX\r\n\x1a", "magic"
    major, minor, hlen = struct.unpack_from("<HHI", data, 8)
    assert major == 1
    assert zlib.crc32(data[: 16 + hlen]) == struct.unpack_from("<I", data, 16 + hlen)[0], "header crc"
    p = 16
    flags, epc = struct.unpack_from("<II", data, p); p += 8
    particle = _str(data[p:p + 24]); p += 24
    source = _str(data[p:p + 128]); p += 128
    (ncond,) = struct.unpack_from("<I", data, p); p += 4
    names, units = [], []
    for _ in range(ncond):
        names.append(_str(data[p:p + 24])); units.append(_str(data[p + 24:p + 48])); p += 48
    geom = _str(data[p:p + 32]); p += 32
    unit = _str(data[p:p + 8]); p += 8
    to_mev, mip = struct.unpack_from("<ff", data, p); p += 8
    (nl,) = struct.unpack_from("<I", data, p); p += 4
    layers = []
    for _ in range(nl):
        rows, cols, binning = struct.unpack_from("<III", data, p); p += 12
        cw, ch, z, d = struct.unpack_from("<ffff", data, p); p += 16
        edges = None
        if binning == 1:
            edges = np.frombuffer(data, "<f4", cols + 1, p); p += 4 * (cols + 1)
        layers.append(dict(rows=rows, cols=cols, binning=binning, cell_w=cw, cell_h=ch, z_mm=z, depth_mm=d,
                           r_edges=edges))
    assert p == 16 + hlen
    ncells = sum(L["rows"] * L["cols"] for L in layers)
    # trailer -> index
    ioff, nev, tcrc = struct.unpack_from("<QQI", data, len(data) - 24)
    assert data[-4:] == b"CVND" and zlib.crc32(data[-24:-8]) == tcrc, "trailer"
    idx = data[ioff:len(data) - 24]
    assert idx[:4] == b"CVIX" and zlib.crc32(idx[:-4]) == struct.unpack_from("<I", idx, len(idx) - 4)[0]
    nch, nev2 = struct.unpack_from("<QQ", idx, 8)
    assert nev2 == nev
    showers = np.zeros((nev, ncells), np.float32)
    cond = np.zeros((nev, ncond), np.float32)
    for c in range(nch):
        off, first, n, length = struct.unpack_from("<QQII", idx, 24 + 24 * c)
        h = data[off:off + 32]
        assert h[:4] == b"CVCH" and zlib.crc32(h[:28]) == struct.unpack_from("<I", h, 28)[0]
        n2, first2, raw_len, comp_len, pcrc = struct.unpack_from("<IQIII", h, 4)
        assert (n2, first2, 32 + comp_len) == (n, first, length)
        comp = data[off + 32:off + 32 + comp_len]
        assert zlib.crc32(comp) == pcrc
        raw = zlib.decompress(comp)
        assert len(raw) == raw_len
        q = 0
        cond[first:first + n] = np.frombuffer(raw, "<f4", n * ncond, q).reshape(n, ncond); q += 4 * n * ncond
        nhits = np.frombuffer(raw, "<u4", n, q); q += 4 * n
        nbytes = np.frombuffer(raw, "<u4", n, q); q += 4 * n
        deltas = raw[q:q + int(nbytes.sum())]; q += int(nbytes.sum())
        H = int(nhits.sum())
        planes = np.frombuffer(raw, np.uint8, 4 * H, q).reshape(4, H); q += 4 * H
        assert q == raw_len
        values = (planes[0].astype(np.uint32) | planes[1].astype(np.uint32) << 8 |
                  planes[2].astype(np.uint32) << 16 | planes[3].astype(np.uint32) << 24).view(np.float32)
        dp = 0
        hp = 0
        for k in range(n):
            i = -1
            end = dp + int(nbytes[k])
            for j in range(int(nhits[k])):
                v, shift = 0, 0
                while True:
                    b = deltas[dp]; dp += 1
                    v |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                i += v + 1
                showers[first + k, i] = values[hp + j]
            assert dp == end
            hp += int(nhits[k])
    return dict(showers=showers, cond=cond, names=names, units=units, particle=particle, source=source,
                geometry=geom, energy_unit=unit, to_mev=to_mev, mip_mev=mip, layers=layers)
