// Stored weights: decoding rows of F16, BF16, Q8_0, Q4_0, NF4, Q4_K and Q6_K into float32 (for the stored-weight
// products, Dequantize and the stored-table embedding), and rounding float32 activations to bfloat16 for the
// 16-bit tensor-core product. One thread a value; each value is the float32 the CPU's decoder computes, bit for bit:
// the K-quants' products are written with __fmul_rn / __fsub_rn so that NVRTC does not contract them into FMAs.
#include "common.cuh"

// The formats, numbered as the runtime's WeightFormat.
#define FORMAT_F16 1
#define FORMAT_BF16 2
#define FORMAT_Q8_0 3
#define FORMAT_Q4_0 4
#define FORMAT_NF4 5
#define FORMAT_Q4_K 6
#define FORMAT_Q6_K 7

typedef unsigned char u8;
typedef unsigned short u16;

// bitsandbytes' NF4 code book, as the CPU's Nf4Blocks.CodeBook.
__constant__ float lora_nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
    -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

__device__ __forceinline__ float lora_half(const u8* p)
{
    u16 h = (u16)(p[0] | p[1] << 8);
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// Q4_K's 6-bit scale (which = 0) or minimum (which = 1) of sub-block j from its 12 packed bytes (get_scale_min_k4).
__device__ __forceinline__ int lora_q4k_scale_min(int j, const u8* q, int which)
{
    if (j < 4) return which == 0 ? q[j] & 63 : q[j + 4] & 63;
    return which == 0 ? (q[j + 4] & 0xF) | (q[j - 4] >> 6 << 4) : (q[j + 4] >> 4) | (q[j] >> 6 << 4);
}

__device__ float lora_decode(const u8* row, int format, int c)
{
    switch (format)
    {
    case FORMAT_F16: return lora_half(row + 2 * (i64)c);
    case FORMAT_BF16: return __int_as_float((int)((u32)(row[2 * (i64)c] | row[2 * (i64)c + 1] << 8) << 16));
    case FORMAT_Q8_0:
    {
        const u8* block = row + (i64)(c >> 5) * 34;
        return __fmul_rn(lora_half(block), (float)(signed char)block[2 + (c & 31)]);
    }
    case FORMAT_Q4_0:
    {
        const u8* block = row + (i64)(c >> 5) * 18;
        int j = c & 31;
        int q = j < 16 ? block[2 + j] & 0xF : block[2 + j - 16] >> 4;
        return __fmul_rn(lora_half(block), (float)(q - 8));
    }
    case FORMAT_NF4:
    {
        const u8* block = row + (i64)(c >> 6) * 36;
        int j = c & 63;
        u8 packed = block[4 + (j >> 1)];
        float absmax = __int_as_float((int)(block[0] | block[1] << 8 | block[2] << 16 | (u32)block[3] << 24));
        return __fmul_rn(lora_nf4_code[(j & 1) ? packed & 0xF : packed >> 4], absmax);
    }
    case FORMAT_Q4_K:
    {
        // Eight sub-blocks of 32: the 64 values of each pair share 32 bytes, low nibbles first. w = d·scale·q − dmin·min.
        const u8* x = row + (i64)(c >> 8) * 144;
        int j = c & 255, pair = j >> 6, within = j & 63, sub = 2 * pair + (within >> 5);
        u8 packed = x[16 + 32 * pair + (within & 31)];
        int q = within < 32 ? packed & 0xF : packed >> 4;
        float d = __fmul_rn(lora_half(x), (float)lora_q4k_scale_min(sub, x + 4, 0));
        float m = __fmul_rn(lora_half(x + 2), (float)lora_q4k_scale_min(sub, x + 4, 1));
        return __fsub_rn(__fmul_rn(d, (float)q), m);
    }
    case FORMAT_Q6_K:
    {
        // Two halves of 128; in each, value l + 32·part takes its low 4 bits from ql and its high 2 from qh.
        const u8* x = row + (i64)(c >> 8) * 210;
        int j = c & 255, n = j >> 7, o = j & 127, part = o >> 5, l = o & 31;
        const u8* ql = x + 64 * n;
        u8 qh = x[128 + 32 * n + l];
        int low = (part & 1) ? ql[l + 32] : ql[l];
        low = part < 2 ? low & 0xF : low >> 4;
        int q = (low | ((qh >> (2 * part)) & 3) << 4) - 32;
        float scale = (float)(signed char)x[192 + 8 * n + (l >> 4) + 2 * part];
        return __fmul_rn(__fmul_rn(lora_half(x + 208), scale), (float)q);
    }
    default: return 0.0f; // unreachable: the launcher passes only the formats above
    }
}

// output[r, c] = row (ids ? ids[r] : first + r) of the stored matrix, decoded: rows × columns values.
extern "C" __global__ void dequantize_rows(float* output, const u8* stored, const int* ids, int first, int rows, int columns,
    i64 rowBytes, int format)
{
    i64 n = (i64)rows * columns;
    LORA_FOR(i, n)
    {
        i64 r = i / columns;
        int c = (int)(i - r * columns);
        i64 source = ids != 0 ? (i64)ids[r] : first + r;
        output[i] = lora_decode(stored + source * rowBytes, format, c);
    }
}

// narrow[r, c] = x[r·ld + c] rounded to bfloat16, to nearest even (a NaN stays a quiet NaN): rows × columns, packed.
extern "C" __global__ void narrow_rows_bf16(u16* narrow, const float* x, int rows, int columns, i64 ld)
{
    i64 n = (i64)rows * columns;
    LORA_FOR(i, n)
    {
        i64 r = i / columns;
        float v = x[r * ld + (i - r * columns)];
        u32 bits = (u32)__float_as_int(v);
        narrow[i] = v != v ? (u16)(bits >> 16 | 0x40) : (u16)((bits + 0x7FFFu + (bits >> 16 & 1u)) >> 16);
    }
}
