/*
 * kernels/cpu/conv3d.c — reference 3-D convolution: forward, backward-data, backward-weight.
 *
 * Reference kernels: direct loops, double accumulators, never optimised. Each output
 * element is computed once and written (=), so the cost is the convolution's own
 * N·Co·Ci·k³·out multiply-adds and nothing more. conv_transpose3d is conv_bwd_data with
 * the roles of input and output swapped (see autograd/conv3d.c).
 *
 * Shapes: x (N, Ci, D, H, W), w (Co, Ci, kD, kH, kW), y (N, Co, oD, oH, oW).
 */
#include "kernels/cpu/ref.h"

void cg_ref_conv_fwd(float *y, const float *x, const float *w, const float *bias, const cg_conv_desc *c) {
    const int64_t iD = c->in[0], iH = c->in[1], iW = c->in[2];
    const int64_t oD = c->out[0], oH = c->out[1], oW = c->out[2];
    const int kD = c->k[0], kH = c->k[1], kW = c->k[2];
    for (int64_t n = 0; n < c->N; n++)
    for (int co = 0; co < c->Co; co++)
    for (int64_t od = 0; od < oD; od++)
    for (int64_t oh = 0; oh < oH; oh++)
    for (int64_t ow = 0; ow < oW; ow++) {
        double acc = bias ? bias[co] : 0.0;
        for (int ci = 0; ci < c->Ci; ci++) {
            const float *xc = x + ((n * c->Ci + ci) * iD) * iH * iW;
            const float *wc = w + ((int64_t)co * c->Ci + ci) * kD * kH * kW;
            for (int kd = 0; kd < kD; kd++) {
                int64_t id = od * c->stride[0] - c->pad[0] + kd;
                if (id < 0 || id >= iD) continue;
                for (int kh = 0; kh < kH; kh++) {
                    int64_t ih = oh * c->stride[1] - c->pad[1] + kh;
                    if (ih < 0 || ih >= iH) continue;
                    for (int kw = 0; kw < kW; kw++) {
                        int64_t iw = ow * c->stride[2] - c->pad[2] + kw;
                        if (iw < 0 || iw >= iW) continue;
                        acc += (double)xc[(id * iH + ih) * iW + iw] * wc[(kd * kH + kh) * kW + kw];
                    }
                }
            }
        }
        y[(((n * c->Co + co) * oD + od) * oH + oh) * oW + ow] = (float)acc;
    }
}

/* The output position that input position i meets through kernel tap k, or -1. */
static int64_t out_pos(int64_t i, int k, int stride, int pad, int64_t out_len) {
    int64_t t = i + pad - k;
    if (t < 0 || t % stride != 0) return -1;
    t /= stride;
    return t < out_len ? t : -1;
}

void cg_ref_conv_bwd_data(float *dx, const float *dy, const float *w, const cg_conv_desc *c) {
    const int64_t iD = c->in[0], iH = c->in[1], iW = c->in[2];
    const int64_t oD = c->out[0], oH = c->out[1], oW = c->out[2];
    const int kD = c->k[0], kH = c->k[1], kW = c->k[2];
    for (int64_t n = 0; n < c->N; n++)
    for (int ci = 0; ci < c->Ci; ci++)
    for (int64_t id = 0; id < iD; id++)
    for (int64_t ih = 0; ih < iH; ih++)
    for (int64_t iw = 0; iw < iW; iw++) {
        double acc = 0.0;
        for (int kd = 0; kd < kD; kd++) {
            int64_t od = out_pos(id, kd, c->stride[0], c->pad[0], oD);
            if (od < 0) continue;
            for (int kh = 0; kh < kH; kh++) {
                int64_t oh = out_pos(ih, kh, c->stride[1], c->pad[1], oH);
                if (oh < 0) continue;
                for (int kw = 0; kw < kW; kw++) {
                    int64_t ow = out_pos(iw, kw, c->stride[2], c->pad[2], oW);
                    if (ow < 0) continue;
                    for (int co = 0; co < c->Co; co++)
                        acc += (double)dy[(((n * c->Co + co) * oD + od) * oH + oh) * oW + ow] *
                               w[((((int64_t)co * c->Ci + ci) * kD + kd) * kH + kh) * kW + kw];
                }
            }
        }
        dx[(((n * c->Ci + ci) * iD + id) * iH + ih) * iW + iw] = (float)acc;
    }
}

void cg_ref_conv_bwd_weight(float *dw, const float *x, const float *dy, const cg_conv_desc *c) {
    const int64_t iD = c->in[0], iH = c->in[1], iW = c->in[2];
    const int64_t oD = c->out[0], oH = c->out[1], oW = c->out[2];
    const int kD = c->k[0], kH = c->k[1], kW = c->k[2];
    for (int co = 0; co < c->Co; co++)
    for (int ci = 0; ci < c->Ci; ci++)
    for (int kd = 0; kd < kD; kd++)
    for (int kh = 0; kh < kH; kh++)
    for (int kw = 0; kw < kW; kw++) {
        double acc = 0.0;
        for (int64_t n = 0; n < c->N; n++)
        for (int64_t od = 0; od < oD; od++) {
            int64_t id = od * c->stride[0] - c->pad[0] + kd;
            if (id < 0 || id >= iD) continue;
            for (int64_t oh = 0; oh < oH; oh++) {
                int64_t ih = oh * c->stride[1] - c->pad[1] + kh;
                if (ih < 0 || ih >= iH) continue;
                for (int64_t ow = 0; ow < oW; ow++) {
                    int64_t iw = ow * c->stride[2] - c->pad[2] + kw;
                    if (iw < 0 || iw >= iW) continue;
                    acc += (double)dy[(((n * c->Co + co) * oD + od) * oH + oh) * oW + ow] *
                           x[(((n * c->Ci + ci) * iD + id) * iH + ih) * iW + iw];
                }
            }
        }
        dw[((((int64_t)co * c->Ci + ci) * kD + kd) * kH + kh) * kW + kw] = (float)acc;
    }
}
