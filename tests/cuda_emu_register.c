/*
 * tests/cuda_emu_register.c — linked into the emulator builds of the device tests: before
 * main() runs, it serves the CPU emulator of kernels/cuda/ (kernels/cuda/emu/) as the CUDA
 * device, so a test written for the GPU (test_backend_ops.c unchanged) checks the CUDA
 * kernels' code on a machine without one.
 */
#include "core/backend.h"
#include "kernels/cuda/cuda.h"

__attribute__((constructor)) static void register_cuda_emu(void) {
    cg_backend_override_cuda(cg_cuda_backend()); /* cg_cuda_backend_emu: cuda.h renames it */
}
