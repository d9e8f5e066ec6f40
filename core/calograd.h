/*
 * calograd.h — everything a program needs: #include <calograd.h>, link with -lcalograd
 * (pkg-config --cflags --libs calograd).
 *
 * Where things are:
 *   core/      tensors, storage, devices, errors, random numbers, threads
 *   autograd/  the tape and every differentiable op
 *   models/    modules (Linear, Conv3d, ...), optimizers, checkpoints, model families
 *   io/        the .cvox voxel format, HDF5 interop, the data loader, the shower simulator
 */
#ifndef CALOGRAD_H
#define CALOGRAD_H

#ifdef __cplusplus /* usable from C++ too */
extern "C" {
#endif

#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/backend.h"
#include "core/tensor.h"
#include "autograd/tape.h"
#include "autograd/ops.h"
#include "models/module.h"
#include "models/optim.h"
#include "models/checkpoint.h"

#ifdef __cplusplus
}
#endif

#endif
