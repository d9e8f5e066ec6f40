/* The CPU emulator build of kernels/cuda/optim.cu (see cuda_emu.h). */
#include "kernels/cuda/optim.cu"
