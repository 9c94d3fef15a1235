// Attention's head permutation: heads [B, NH, T, HS] ↔ columns [column, column + NH·HS) of rows [B·T, W].
#include "common.cuh"

extern "C" __global__ void heads_permute(float* heads, float* rows, int time, int headCount, int headSize, int width, int column, int split,
    i64 total)
{
    LORA_FOR(i, total)
    {
        // i indexes heads: ((b·NH + h)·T + t)·HS + d.
        int d = (int)(i % headSize);
        i64 rest = i / headSize;
        int t = (int)(rest % time);
        rest /= time;
        int h = (int)(rest % headCount);
        i64 b = rest / headCount;
        float* strided = rows + (b * time + t) * width + column + (i64)h * headSize + d;
        if (split) heads[i] = *strided;
        else *strided = heads[i];
    }
}
