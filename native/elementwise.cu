// Element-wise float32 operations over n elements (grid-stride). Outputs may alias inputs element for element.
#include "common.cuh"

extern "C" __global__ void fill_f32(float* out, float value, i64 n)
{
    LORA_FOR(i, n) out[i] = value;
}

extern "C" __global__ void add_f32(float* out, const float* a, const float* b, i64 n)
{
    LORA_FOR(i, n) out[i] = a[i] + b[i];
}

extern "C" __global__ void scale_f32(float* out, const float* in, float factor, i64 n)
{
    LORA_FOR(i, n) out[i] = in[i] * factor;
}

extern "C" __global__ void axpy_f32(float* y, float alpha, const float* x, i64 n)
{
    LORA_FOR(i, n) y[i] = fmaf(alpha, x[i], y[i]);
}

extern "C" __global__ void divide_f32(float* out, const float* a, const float* b, i64 n)
{
    LORA_FOR(i, n) out[i] = a[i] / b[i];
}

// C = beta·C over a rows×cols row-major block with row stride ld: the GEMM with K = 0 (or α = 0). beta = 0 writes
// zeros, so NaN in C is overwritten as BLAS requires.
extern "C" __global__ void scale_matrix_f32(float* c, int rows, int cols, i64 ld, float beta)
{
    i64 n = (i64)rows * cols;
    LORA_FOR(i, n)
    {
        float* at = c + (i / cols) * ld + (i % cols);
        *at = beta == 0.0f ? 0.0f : beta * *at;
    }
}
