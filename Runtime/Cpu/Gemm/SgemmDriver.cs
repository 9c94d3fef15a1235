namespace LoraRuntime.Cpu.Gemm;

/// <summary>Runs validated float32 GEMM problems on the CPU (interim reference loop; replaced by the packed driver).</summary>
internal sealed unsafe class SgemmDriver : IDisposable
{
    private readonly CpuWorkerPool _workers;

    public SgemmDriver(CpuWorkerPool workers) => _workers = workers;

    public string KernelName => "reference";

    public void Run(ReadOnlySpan<GemmProblem> problems, int batchCount, long strideA, long strideB, long strideC)
    {
        foreach (ref readonly var p in problems)
            for (int b = 0; b < batchCount; b++)
            {
                float* a = (float*)p.A.Pointer + p.OffsetA + b * strideA;
                float* bb = (float*)p.B.Pointer + p.OffsetB + b * strideB;
                float* c = (float*)p.C.Pointer + p.OffsetC + b * strideC;
                for (int i = 0; i < p.M; i++)
                    for (int j = 0; j < p.N; j++)
                    {
                        float s = 0;
                        for (int k = 0; k < p.K; k++)
                        {
                            float av = p.TransA == Transpose.No ? a[(long)i * p.Lda + k] : a[(long)k * p.Lda + i];
                            float bv = p.TransB == Transpose.No ? bb[(long)k * p.Ldb + j] : bb[(long)j * p.Ldb + k];
                            s += av * bv;
                        }
                        ref float cij = ref c[(long)i * p.Ldc + j];
                        cij = p.Beta == 0 ? p.Alpha * s : p.Alpha * s + p.Beta * cij;
                    }
            }
    }

    public void Dispose() { }
}
