#include <stdio.h>
#include "calograd.h"
int main(void) { printf("calograd\n"); return 0; }
