/*
 * models/checkpoint.h — crash-safe checkpoints of named tensors.
 *
 * A checkpoint holds a model kind ("vae"), a metadata text of key = value lines (the
 * resolved configuration, the step and epoch, the RNG position...) and named float32
 * tensors with their shapes: model parameters, buffers, optimizer state. Byte layout
 * (little-endian):
 *
 *   magic      8 bytes  "CGCKPT\r\n"
 *   version    u32      1
 *   kind       u16 length + bytes
 *   meta       u32 length + bytes (UTF-8 text, "key = value" lines)
 *   header_crc u32      CRC32 of everything above after the magic
 *   count      u32      number of tensors
 *   tensor ×count:
 *     name     u16 length + bytes
 *     ndim     u8       0..5
 *     dtype    u8       0 = float32
 *     shape    i64 × ndim
 *     data     numel × 4 bytes
 *     crc      u32      CRC32 of name length .. data of this tensor
 *   end        4 bytes  "CGND"
 *
 * Saving writes PATH.tmp.<pid>, flushes and fsyncs it, then renames it over PATH: a crash
 * leaves either the previous checkpoint or the new one, never half of one. Loading reads
 * and checks everything (magic, version, every length against the file size, every CRC)
 * before returning; restoring checks names and shapes against the model and names what
 * does not match. All failures return NULL or a status with a message naming the file.
 */
#ifndef CG_MODELS_CHECKPOINT_H
#define CG_MODELS_CHECKPOINT_H

#include "models/module.h"

typedef struct cg_checkpoint cg_checkpoint;

cg_status cg_checkpoint_save(const char *path, const char *kind, const char *meta, const cg_named_list *tensors);

cg_checkpoint *cg_checkpoint_load(const char *path);
const char *cg_checkpoint_kind(const cg_checkpoint *c);
const char *cg_checkpoint_meta(const cg_checkpoint *c);
/* The value of "key = value" in the metadata (trimmed; valid until the checkpoint is
 * freed), or NULL. */
const char *cg_checkpoint_get(const cg_checkpoint *c, const char *key);
int cg_checkpoint_count(const cg_checkpoint *c);
const char *cg_checkpoint_name(const cg_checkpoint *c, int i);
/* Copy the checkpoint's tensors into `into` (names and shapes must match; tensors may live
 * on any device). With strict, a checkpoint tensor that `into` lacks is an error too. */
cg_status cg_checkpoint_restore(const cg_checkpoint *c, const cg_named_list *into, bool strict);
void cg_checkpoint_free(cg_checkpoint *c);

/* CRC32 (zlib's polynomial) of a buffer, continuing from `crc` (start with 0). */
uint32_t cg_crc32(uint32_t crc, const void *data, size_t n);

#endif
