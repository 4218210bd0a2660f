/*
 * Native hot paths of rfc6455: masking (RFC 6455 §5.3) and frame header scanning (§5.2).
 *
 * Plain C99, no Python.h: the cffi build script (build_native.py) wraps these in API mode.
 * Every function has a pure-Python twin in rfc6455/_kernels_py.py with the same results; the
 * error codes below must match the ERR_* constants there.
 */
#ifndef RFC6455_NATIVE_H
#define RFC6455_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define RFC6455_ERR_NONE 0
#define RFC6455_ERR_RESERVED_OPCODE 1
#define RFC6455_ERR_RSV_BITS 2
#define RFC6455_ERR_CONTROL_TOO_LONG 3
#define RFC6455_ERR_CONTROL_FRAGMENTED 4
#define RFC6455_ERR_LENGTH_MSB 5
#define RFC6455_ERR_NON_MINIMAL_LENGTH 6
#define RFC6455_ERR_UNMASKED 7
#define RFC6455_ERR_MASKED 8
#define RFC6455_ERR_TOO_BIG 9

/* XOR buf[0:len] in place with the 4-byte key, starting at key byte (offset & 3). */
void rfc6455_mask_inplace(uint8_t *buf, size_t len, const uint8_t *key, size_t offset);

/* dst[i] = src[i] ^ key[(offset + i) & 3] for i < len. dst and src may be equal, but must
 * not otherwise overlap. */
void rfc6455_mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,
                       size_t offset);

/*
 * A whole masked frame (a client's): its header (first byte, then the mask bit and the
 * length in 7, 16 or 64 bits, minimally), key, then payload[0:len] XOR the key. out must
 * have room for len + 6 (len < 126), len + 8 (len < 65536) or len + 14 bytes.
 */
void rfc6455_encode_masked(uint8_t *out, unsigned first, const uint8_t *payload, size_t len,
                           const uint8_t *key);

/*
 * Decode the headers of the complete frames in buf[start:end] and unmask their payloads in
 * place. For each frame (at most max_frames) three int64 go to out: first header byte,
 * payload start, payload end (offsets into buf). status receives [consumed, error, needed]:
 * consumed is the offset just past the last complete frame, error is RFC6455_ERR_NONE or
 * why the frame at consumed is invalid, needed is the total size of the incomplete frame at
 * consumed when its header is known, else 0 (stored as the low 64 bits: it can exceed
 * INT64_MAX only when max_payload is near it). A negative max_payload rejects every frame.
 * Requires start <= end and buf valid for end bytes. Returns the number of frames.
 */
size_t rfc6455_scan_frames(uint8_t *buf, size_t start, size_t end, int expect_masked,
                           unsigned allowed_rsv, int64_t max_payload, int64_t *out,
                           size_t max_frames, int64_t *status);

/*
 * rfc6455_scan_frames with its fixed parameters kept in ctl (fewer arguments to convert per
 * call, for a decoder that scans many small chunks): ctl[0] expect_masked, ctl[1]
 * allowed_rsv, ctl[2] max_payload, ctl[3] max_frames; the status goes to ctl[4..6] and
 * the records to ctl + 8 (room for 3 * max_frames int64). Returns the number of frames.
 */
size_t rfc6455_scan_bound(uint8_t *buf, size_t start, size_t end, int64_t *ctl);

/*
 * The usual read in one call: whether buf[0:end] is exactly one whole data frame with
 * nothing before or after it, FIN set, no RSV bit, opcode text (1) or binary (2), masked
 * iff expect_masked, its length minimally encoded in 7 or 16 bits and at most max_payload.
 * If so, unmasks its payload in place and returns (header length << 4) | opcode: the
 * payload is buf[header length:end]. Otherwise returns -1 and leaves buf untouched (the
 * caller decodes it the general way, which also reports any error).
 * Requires buf valid for end bytes.
 */
int64_t rfc6455_take_frame(uint8_t *buf, size_t end, int expect_masked, int64_t max_payload);

/*
 * rfc6455_take_frame for a caller that binds a buffer of cap bytes once (a pinned read
 * buffer): end is checked here, -2 if it is not within 0..cap.
 */
int64_t rfc6455_take_frame_in(uint8_t *buf, size_t cap, int64_t end, int expect_masked,
                              int64_t max_payload);

#endif
