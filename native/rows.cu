// Row and column broadcasts and reductions over N rows of `cols` columns: bias addition and DoRA's scalings,
// column sums (bias gradient, per-column dot products) and row norms.
#include "common.cuh"

#define ROWS_ADD_PER_COLUMN 0
#define ROWS_MULTIPLY_PER_COLUMN 1
#define ROWS_MULTIPLY_PER_ROW 2

// output[n, j] = input[n, j] + v[j], input[n, j]·v[j] or input[n, j]·v[n]; output may be input itself.
extern "C" __global__ void row_broadcast(float* output, const float* input, const float* vector, i64 rows, int cols, int kind)
{
    i64 n = rows * cols;
    LORA_FOR(i, n)
    {
        float x = input[i];
        output[i] = kind == ROWS_ADD_PER_COLUMN ? x + vector[i % cols]
            : kind == ROWS_MULTIPLY_PER_COLUMN ? x * vector[i % cols]
            : x * vector[i / cols];
    }
}

// output[j] += Σ_n a[n, j] (b null) or Σ_n a[n, j]·b[n, j]; one thread per column, rows in order.
extern "C" __global__ void column_sum(float* output, const float* a, const float* b, i64 rows, int cols)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    float sum = output[j];
    if (b == 0)
        for (i64 n = 0; n < rows; n++) sum += a[n * cols + j];
    else
        for (i64 n = 0; n < rows; n++) sum = fmaf(a[n * cols + j], b[n * cols + j], sum);
    output[j] = sum;
}

// output[n] = ‖input[n, :]‖₂, one block per row.
extern "C" __global__ void row_norms(float* output, const float* input, int cols)
{
    i64 at = (i64)blockIdx.x * cols;
    double squares = 0.0;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) squares += (double)input[at + j] * input[at + j];
    squares = lora_block_sum(squares);
    if (threadIdx.x == 0) output[blockIdx.x] = (float)sqrt(squares);
}
