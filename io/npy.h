/*
 * io/npy.h — NumPy .npy files in and out, so that any op can be checked against any other
 * framework (`calograd op`, tests/test_op_cli.py).
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0, dtypes '<f4' and '<f8' (float64 is
 * rounded to float32), C order, rank 0..5 (the ranks calograd tensors have). Everything is
 * checked against the file's size before a byte of data is trusted: a bad magic, a header
 * that runs past the end or does not parse, a Fortran-order array, another dtype ('<i4',
 * '>f4', a structured dtype), a shape that needs more data than the file holds or less
 * (trailing bytes) each give NULL and a message naming the file and the problem.
 *
 * Writing produces version 1.0, '<f4', C order, the header padded to 64 bytes as NumPy
 * does. The file is written under a temporary name in the same folder, synced and renamed,
 * so a crash or a full disk never leaves a partial file under the final name.
 *
 * Limits: little-endian hosts only (every machine calograd targets); no memory mapping,
 * no pickled object arrays, no .npz archives.
 */
#ifndef CG_IO_NPY_H
#define CG_IO_NPY_H

#include <stdint.h>

#include "core/tensor.h"

/* A new owned float32 tensor on `dev` holding the array in `path`; NULL and
 * cg_last_error() ("x.npy: ...") on any problem with the file. */
cg_tensor *cg_npy_load(const char *path, cg_device dev);

/* Write t (any layout, any device) to `path` as '<f4' C order. */
cg_status cg_npy_save(const char *path, const cg_tensor *t);

/* Write a contiguous host array of `shape` (rank 0..5) to `path` as '<f4' C order. */
cg_status cg_npy_write(const char *path, int ndim, const int64_t *shape, const float *data);

#endif
