#!/usr/bin/env bash
# tests/test_install.sh BUILD_DIR — `meson install` into a staging folder, then build the
# README's loss example against the installed headers, shared library and pkg-config file
# alone, run it, and check it gets a gradient.
set -eu
B="$1"
T=$(mktemp -d /tmp/cg_install.XXXXXX)
trap 'rm -rf "$T"' EXIT
meson install -C "$B" --destdir "$T/root" --no-rebuild --quiet >/dev/null
pc=$(dirname "$(find "$T/root" -name calograd.pc | head -1)")
[ -n "$pc" ] || { echo "FAIL no calograd.pc installed"; exit 1; }
export PKG_CONFIG_SYSROOT_DIR="$T/root" PKG_CONFIG_PATH="$pc"
lib=$(pkg-config --variable=libdir calograd)
cat >"$T/example.c" <<'C'
#include <calograd.h>
#include <stdio.h>
cg_tensor *my_loss(cg_tensor *gen, cg_tensor *real) {
    unsigned cells = CG_AXIS(1) | CG_AXIS(2) | CG_AXIS(3) | CG_AXIS(4);
    cg_tensor *eg = cg_sum(gen, cells, false), *er = cg_sum(real, cells, false);
    cg_tensor *esum = cg_mean_all(cg_square(cg_div(cg_sub(eg, er), er)));
    cg_tensor *sort_mse = cg_mse_loss(cg_sort(cg_flatten(gen, 1), 1, true), cg_sort(cg_flatten(real, 1), 1, true));
    return cg_add(esum, sort_mse);
}
int main(void) {
    cg_rng r = cg_rng_make(1);
    cg_tensor *g = cg_tensor_rand(CG_CPU, CG_SHAPE(4, 1, 3, 3, 3), &r, 0, 1);
    cg_tensor *x = cg_tensor_rand(CG_CPU, CG_SHAPE(4, 1, 3, 3, 3), &r, 0, 1);
    cg_set_requires_grad(g, true);
    if (cg_backward(my_loss(g, x)) != CG_OK || !g->grad) { printf("no gradient: %s\n", cg_last_error()); return 1; }
    cg_tape_reset();
    cg_tensor_free(g);
    cg_tensor_free(x);
    printf("ok\n");
    return 0;
}
C
# shellcheck disable=SC2046
cc -std=c11 $(pkg-config --cflags calograd) "$T/example.c" -o "$T/example" $(pkg-config --libs calograd) \
  -Wl,-rpath,"$lib"
"$T/example" | grep -q '^ok$' || { echo "FAIL the installed example did not run"; exit 1; }
echo "ok   installed headers, library and pkg-config build and run the README example"
