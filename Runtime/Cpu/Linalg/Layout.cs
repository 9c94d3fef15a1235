using System.Runtime.CompilerServices;

namespace LoraRuntime.Cpu.Linalg;

/// <summary>
/// Moves between the library's row-major float32 tensors and the column-major float64 working matrices of the
/// linear-algebra code. A row-major m×n matrix is, byte for byte, the column-major n×m matrix of its transpose, so
/// one direction is a plain widening copy and the other a cache-blocked transpose.
/// </summary>
internal static unsafe class Layout
{
    private const int Tile = 32;

    /// <summary>dst (column-major rows×cols, leading dimension ldd) = the row-major rows×cols src, widened.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(float* src, int rows, int cols, double* dst, int ldd)
    {
        for (int i0 = 0; i0 < rows; i0 += Tile)
            for (int j0 = 0; j0 < cols; j0 += Tile)
            {
                int i1 = Math.Min(rows, i0 + Tile), j1 = Math.Min(cols, j0 + Tile);
                for (int j = j0; j < j1; j++)
                {
                    double* d = dst + (nint)j * ldd;
                    for (int i = i0; i < i1; i++) d[i] = src[(nint)i * cols + j];
                }
            }
    }

    /// <summary>dst (row-major rows×cols) = the column-major rows×cols src (leading dimension lds), rounded to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(double* src, int lds, int rows, int cols, float* dst)
    {
        for (int i0 = 0; i0 < rows; i0 += Tile)
            for (int j0 = 0; j0 < cols; j0 += Tile)
            {
                int i1 = Math.Min(rows, i0 + Tile), j1 = Math.Min(cols, j0 + Tile);
                for (int i = i0; i < i1; i++)
                {
                    float* d = dst + (nint)i * cols;
                    for (int j = j0; j < j1; j++) d[j] = (float)src[i + (nint)j * lds];
                }
            }
    }

    /// <summary>dst (column-major rows×cols, leading dimension ldd) = the row-major cols×rows src read as its transpose.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Widen(float* src, int rows, int cols, double* dst, int ldd)
    {
        for (int j = 0; j < cols; j++)
        {
            float* s = src + (nint)j * rows;
            double* d = dst + (nint)j * ldd;
            for (int i = 0; i < rows; i++) d[i] = s[i];
        }
    }

    /// <summary>dst (row-major cols×rows) = the column-major rows×cols src (leading dimension lds) read as its transpose.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Narrow(double* src, int lds, int rows, int cols, float* dst)
    {
        for (int j = 0; j < cols; j++)
        {
            double* s = src + (nint)j * lds;
            float* d = dst + (nint)j * rows;
            for (int i = 0; i < rows; i++) d[i] = (float)s[i];
        }
    }

    /// <summary>
    /// Makes each singular pair's sign deterministic: the largest-magnitude entry of column i of U (the first such
    /// entry on a tie) becomes positive, negating column i of U and of V together so that U·S·Vᵀ is unchanged.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void NormalizeSigns(int k, double* u, int m, int ldu, double* v, int n, int ldv)
    {
        for (int i = 0; i < k; i++)
        {
            double* ui = u + (nint)i * ldu;
            int best = 0;
            for (int r = 1; r < m; r++)
                if (Math.Abs(ui[r]) > Math.Abs(ui[best])) best = r;
            if (m == 0 || ui[best] >= 0) continue;
            for (int r = 0; r < m; r++) ui[r] = -ui[r];
            double* vi = v + (nint)i * ldv;
            for (int r = 0; r < n; r++) vi[r] = -vi[r];
        }
    }

    /// <summary>Sets the rows×cols column-major block to the first columns of the identity.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Identity(double* a, int rows, int cols, int lda)
    {
        for (int j = 0; j < cols; j++)
        {
            var col = new Span<double>(a + (nint)j * lda, rows);
            col.Clear();
            if (j < rows) col[j] = 1;
        }
    }
}
