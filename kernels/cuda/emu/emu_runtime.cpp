/* The CPU emulator build of kernels/cuda/runtime.cu (see cuda_emu.h). */
#include "kernels/cuda/runtime.cu"
