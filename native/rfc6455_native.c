/*
 * Native hot paths of rfc6455; see rfc6455_native.h for the contracts.
 *
 * Strategy: masking XORs with the 4-byte key widened to a 64-bit word (and to a vector), so
 * every step covers a multiple of 4 bytes and the key phase never changes inside the bulk
 * loop. The destination is first aligned byte by byte (large inputs only) so that vector
 * stores never split a cache line; loads and stores stay unaligned-safe. SSE2 is baseline on
 * x86-64; AVX2 is used only when the running CPU reports it (asked once, when the module is
 * loaded, so a wheel built here runs on any x86-64). Everything else falls back to a word-at-a-time loop that
 * compilers auto-vectorize at -O3.
 */
#include "rfc6455_native.h"

#include <string.h>

#if defined(__SSE2__) || defined(_M_X64)
#define RFC6455_HAVE_SSE2 1
#include <emmintrin.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(RFC6455_NO_AVX2)
#define RFC6455_HAVE_AVX2 1
#include <immintrin.h>
#endif

/* Below these sizes the alignment head and the switch to AVX2 cost more than they save. */
#define ALIGN_MIN 64
#define AVX2_MIN 256

/* The key rotated to start at byte `phase`, as it lies in memory. */
static inline uint32_t key_word(const uint8_t k[4], size_t phase)
{
    uint8_t bytes[4];
    uint32_t word;
    for (int i = 0; i < 4; i++)
        bytes[i] = k[(phase + i) & 3];
    memcpy(&word, bytes, sizeof word);
    return word;
}

#ifdef RFC6455_HAVE_AVX2
/* Whether the running CPU has AVX2. Set once by a constructor, which runs when the shared
 * object is loaded: before any call, so no lock and no race with the threads that call in
 * without the GIL. __builtin_cpu_init must come first in code that may run before libgcc's
 * own initialisation, as a constructor may. */
static int have_avx2;

__attribute__((constructor)) static void detect_avx2(void)
{
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") != 0;
}

__attribute__((target("avx2"))) static size_t xor_avx2(uint8_t *d, const uint8_t *s, size_t n,
                                                       uint32_t w)
{
    const __m256i k = _mm256_set1_epi32((int)w);
    size_t j = 0;
    for (; j + 128 <= n; j += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + j));
        __m256i b = _mm256_loadu_si256((const __m256i *)(s + j + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(s + j + 64));
        __m256i e = _mm256_loadu_si256((const __m256i *)(s + j + 96));
        _mm256_storeu_si256((__m256i *)(d + j), _mm256_xor_si256(a, k));
        _mm256_storeu_si256((__m256i *)(d + j + 32), _mm256_xor_si256(b, k));
        _mm256_storeu_si256((__m256i *)(d + j + 64), _mm256_xor_si256(c, k));
        _mm256_storeu_si256((__m256i *)(d + j + 96), _mm256_xor_si256(e, k));
    }
    for (; j + 32 <= n; j += 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(s + j));
        _mm256_storeu_si256((__m256i *)(d + j), _mm256_xor_si256(a, k));
    }
    return j;
}
#endif

#ifdef RFC6455_HAVE_SSE2
static size_t xor_sse2(uint8_t *d, const uint8_t *s, size_t n, size_t j, uint32_t w)
{
    const __m128i k = _mm_set1_epi32((int)w);
    for (; j + 64 <= n; j += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + j));
        __m128i b = _mm_loadu_si128((const __m128i *)(s + j + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + j + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(s + j + 48));
        _mm_storeu_si128((__m128i *)(d + j), _mm_xor_si128(a, k));
        _mm_storeu_si128((__m128i *)(d + j + 16), _mm_xor_si128(b, k));
        _mm_storeu_si128((__m128i *)(d + j + 32), _mm_xor_si128(c, k));
        _mm_storeu_si128((__m128i *)(d + j + 48), _mm_xor_si128(e, k));
    }
    for (; j + 16 <= n; j += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + j));
        _mm_storeu_si128((__m128i *)(d + j), _mm_xor_si128(a, k));
    }
    return j;
}
#endif

void rfc6455_mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t *key,
                       size_t offset)
{
    /* A local copy: the key may live in the same buffer as dst. */
    const uint8_t k[4] = {key[0], key[1], key[2], key[3]};
    size_t i = 0, j = 0, n;
    const uint8_t *s;
    uint8_t *d;
    uint32_t w;
    uint64_t w64;

    offset &= 3;
    if (len >= ALIGN_MIN) {
        size_t head = (size_t)(-(uintptr_t)dst) & 31;
        for (; i < head; i++)
            dst[i] = src[i] ^ k[(offset + i) & 3];
    }
    s = src + i;
    d = dst + i;
    n = len - i;
    w = key_word(k, offset + i);
#ifdef RFC6455_HAVE_AVX2
    if (n >= AVX2_MIN && have_avx2)
        j = xor_avx2(d, s, n, w);
#endif
#ifdef RFC6455_HAVE_SSE2
    j = xor_sse2(d, s, n, j, w);
#endif
    w64 = ((uint64_t)w << 32) | w; /* the same 4 bytes twice, whatever the endianness */
    for (; j + 8 <= n; j += 8) {
        uint64_t v;
        memcpy(&v, s + j, sizeof v);
        v ^= w64;
        memcpy(d + j, &v, sizeof v);
    }
    for (; j < n; j++)
        d[j] = s[j] ^ k[(offset + i + j) & 3];
}

void rfc6455_mask_inplace(uint8_t *buf, size_t len, const uint8_t *key, size_t offset)
{
    rfc6455_mask_copy(buf, buf, len, key, offset);
}

/* Bit n set when opcode n is reserved (RFC 6455 §5.2: %x3-7 and %xB-F). */
#define RESERVED_OPCODES 0xF8F8u

size_t rfc6455_scan_frames(uint8_t *buf, size_t start, size_t end, int expect_masked,
                           unsigned allowed_rsv, int64_t max_payload, int64_t *out,
                           size_t max_frames, int64_t *status)
{
    size_t pos = start, frames = 0;
    int err = RFC6455_ERR_NONE;
    uint64_t needed = 0;

    /* The checks run in the same order as the Python twin, so both report the same error
     * for a frame that breaks several rules. */
    while (frames < max_frames) {
        size_t avail = end - pos, header = 2;
        const uint8_t *p = buf + pos;
        unsigned b0, b1, opcode, masked;
        uint64_t length, total;

        if (avail < 2)
            break;
        b0 = p[0];
        b1 = p[1];
        opcode = b0 & 0x0F;
        if ((RESERVED_OPCODES >> opcode) & 1u) {
            err = RFC6455_ERR_RESERVED_OPCODE;
            break;
        }
        if (b0 & 0x70u & ~allowed_rsv) {
            err = RFC6455_ERR_RSV_BITS;
            break;
        }
        masked = b1 & 0x80u;
        if (expect_masked && !masked) {
            err = RFC6455_ERR_UNMASKED;
            break;
        }
        if (masked && !expect_masked) {
            err = RFC6455_ERR_MASKED;
            break;
        }
        length = b1 & 0x7Fu;
        if (opcode & 0x8u) {
            if (length > 125) {
                err = RFC6455_ERR_CONTROL_TOO_LONG;
                break;
            }
            if (!(b0 & 0x80u)) {
                err = RFC6455_ERR_CONTROL_FRAGMENTED;
                break;
            }
        }
        if (length == 126) {
            if (avail < 4)
                break;
            length = ((uint64_t)p[2] << 8) | p[3];
            if (length < 126) {
                err = RFC6455_ERR_NON_MINIMAL_LENGTH;
                break;
            }
            header = 4;
        } else if (length == 127) {
            if (avail < 10)
                break;
            length = 0;
            for (int i = 2; i < 10; i++)
                length = (length << 8) | p[i];
            if (length >> 63) {
                err = RFC6455_ERR_LENGTH_MSB;
                break;
            }
            if (length < 65536) {
                err = RFC6455_ERR_NON_MINIMAL_LENGTH;
                break;
            }
            header = 10;
        }
        if (max_payload < 0 || length > (uint64_t)max_payload) {
            err = RFC6455_ERR_TOO_BIG;
            break;
        }
        if (masked)
            header += 4;
        total = header + length; /* length < 2**63: no overflow */
        if ((uint64_t)avail < total) {
            needed = total;
            break;
        }
        if (masked && length)
            rfc6455_mask_copy(buf + pos + header, buf + pos + header, (size_t)length,
                              buf + pos + header - 4, 0);
        out[0] = (int64_t)b0;
        out[1] = (int64_t)(pos + header);
        out[2] = (int64_t)(pos + total);
        out += 3;
        pos += (size_t)total;
        frames++;
    }
    status[0] = (int64_t)pos;
    status[1] = err;
    status[2] = (int64_t)needed;
    return frames;
}

size_t rfc6455_scan_bound(uint8_t *buf, size_t start, size_t end, int64_t *ctl)
{
    return rfc6455_scan_frames(buf, start, end, (int)ctl[0], (unsigned)ctl[1], ctl[2], ctl + 8,
                               (size_t)ctl[3], ctl + 4);
}

int64_t rfc6455_take_frame(uint8_t *buf, size_t end, int expect_masked, int64_t max_payload)
{
    size_t header = 2;
    uint64_t length;
    unsigned b0, b1;

    if (end < 2)
        return -1;
    b0 = buf[0];
    b1 = buf[1];
    if (b0 != 0x81u && b0 != 0x82u)
        return -1;
    if (!(b1 & 0x80u) != !expect_masked)
        return -1;
    length = b1 & 0x7Fu;
    if (length == 127)
        return -1;
    if (length == 126) {
        if (end < 4)
            return -1;
        length = ((uint64_t)buf[2] << 8) | buf[3];
        if (length < 126)
            return -1;
        header = 4;
    }
    if (expect_masked)
        header += 4;
    if (max_payload < 0 || length > (uint64_t)max_payload || header + length != end)
        return -1;
    if (expect_masked && length)
        rfc6455_mask_copy(buf + header, buf + header, (size_t)length, buf + header - 4, 0);
    return (int64_t)((header << 4) | (b0 & 0x0Fu));
}

int64_t rfc6455_take_frame_in(uint8_t *buf, size_t cap, int64_t end, int expect_masked,
                              int64_t max_payload)
{
    if (end < 0 || (uint64_t)end > cap)
        return -2;
    return rfc6455_take_frame(buf, (size_t)end, expect_masked, max_payload);
}

void rfc6455_encode_masked(uint8_t *out, unsigned first, const uint8_t *payload, size_t len,
                           const uint8_t *key)
{
    size_t header;
    int i;

    out[0] = (uint8_t)first;
    if (len < 126) {
        out[1] = (uint8_t)(0x80u | len);
        header = 2;
    } else if (len < 65536) {
        out[1] = 0xFEu;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        header = 4;
    } else {
        out[1] = 0xFFu;
        for (i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        header = 10;
    }
    memcpy(out + header, key, 4);
    rfc6455_mask_copy(out + header + 4, payload, len, key, 0);
}
