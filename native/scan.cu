// Validation scans: the first position of a non-finite float or of an id outside [min, max]. *first must start at
// ~0 (all ones); atomicMin leaves the smallest offending index there.
#include "common.cuh"

extern "C" __global__ void find_nonfinite(u64* first, const float* x, i64 n)
{
    LORA_FOR(i, n)
        if (!lora_isfinite(x[i])) atomicMin(first, (u64)i);
}

extern "C" __global__ void find_id_outside(u64* first, const int* ids, int min, int max, i64 n)
{
    LORA_FOR(i, n)
    {
        int id = ids[i];
        if (id < min || id > max) atomicMin(first, (u64)i);
    }
}
