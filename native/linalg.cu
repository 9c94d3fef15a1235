// Layout and sign helpers around cuSOLVER's float64 column-major factorisations: widen float32 row-major input,
// normalise singular-vector signs, narrow the results back to float32 row-major.
#include "common.cuh"

// out = in widened to float64: transposed (column-major copy of the rows×cols row-major in) or as it lies (which is
// the column-major copy of inᵀ).
extern "C" __global__ void widen_f64(double* out, const float* in, int rows, int cols, int transpose)
{
    i64 n = (i64)rows * cols;
    LORA_FOR(i, n)
    {
        if (transpose)
        {
            i64 r = i % rows, c = i / rows; // out[r + c·rows] = in[r·cols + c]
            out[i] = (double)in[r * cols + c];
        }
        else out[i] = (double)in[i];
    }
}

// signs[j] = the sign of the largest-magnitude entry of column j (the first on a tie; +1 for a zero column) of the
// rows×cols matrix x(i, j) = x[i·rowStride + j·colStride]. One block of 256 threads per column.
extern "C" __global__ void column_signs(double* signs, const double* x, int rows, i64 rowStride, i64 colStride)
{
    __shared__ double bestValue[256];
    __shared__ int bestIndex[256];
    int j = blockIdx.x;
    double value = -1.0;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < rows; i += blockDim.x)
    {
        double a = fabs(x[i * rowStride + j * colStride]);
        if (a > value) { value = a; index = i; } // i grows, so a strict > keeps the first of equal entries
    }
    bestValue[threadIdx.x] = value;
    bestIndex[threadIdx.x] = index;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1)
    {
        if (threadIdx.x < stride)
        {
            double v = bestValue[threadIdx.x + stride];
            int k = bestIndex[threadIdx.x + stride];
            if (v > bestValue[threadIdx.x] || (v == bestValue[threadIdx.x] && k < bestIndex[threadIdx.x]))
            {
                bestValue[threadIdx.x] = v;
                bestIndex[threadIdx.x] = k;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
    {
        int best = bestIndex[0];
        signs[j] = best < rows && x[best * rowStride + j * colStride] < 0 ? -1.0 : 1.0;
    }
}

// out[i·cols + j] = (float)(sign·in[i·rowStride + j·colStride]) with sign = signs[j] (perRow 0), signs[i] (perRow 1),
// or 1 when signs is null: any strided float64 view to a float32 row-major matrix.
extern "C" __global__ void narrow_f32(float* out, const double* in, int rows, int cols, i64 rowStride, i64 colStride,
    const double* signs, int perRow)
{
    i64 n = (i64)rows * cols;
    LORA_FOR(i, n)
    {
        i64 r = i / cols, c = i % cols;
        double sign = signs == 0 ? 1.0 : signs[perRow ? r : c];
        out[i] = (float)(sign * in[r * rowStride + c * colStride]);
    }
}

// signs[i] = −1 where geqrf's R has a negative diagonal entry R(i, i) = w[i + i·ld], else +1.
extern "C" __global__ void diagonal_signs(double* signs, const double* w, int k, i64 ld)
{
    LORA_FOR(i, k) signs[i] = w[i + i * ld] < 0 ? -1.0 : 1.0;
}

// r (k×n row-major) = the upper trapezoid of geqrf's output with row i scaled by signs[i].
extern "C" __global__ void qr_extract_r(float* r, const double* w, const double* signs, int k, int n, i64 ld)
{
    i64 total = (i64)k * n;
    LORA_FOR(i, total)
    {
        i64 row = i / n, col = i % n;
        r[i] = col < row ? 0.0f : (float)(signs[row] * w[row + col * ld]);
    }
}
