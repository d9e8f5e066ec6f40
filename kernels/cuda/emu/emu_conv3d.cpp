/* The CPU emulator build of kernels/cuda/conv3d.cu (see cuda_emu.h). */
#include "kernels/cuda/conv3d.cu"
