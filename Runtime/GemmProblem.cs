namespace LoraRuntime;

/// <summary>Whether a GEMM operand is used as stored or transposed.</summary>
public enum Transpose
{
    /// <summary>op(X) = X.</summary>
    No,
    /// <summary>op(X) = Xᵀ.</summary>
    Yes,
}

/// <summary>
/// One GEMM, C = α·op(A)·op(B) + β·C, over row-major storage: op(A) is M×K, op(B) is K×N, C is M×N.
/// A is stored as M rows of <see cref="Lda"/> elements (K rows when transposed), starting at element
/// <see cref="OffsetA"/> of <see cref="A"/>; likewise B and C. When β = 0, C is not read (NaN in C is overwritten).
/// </summary>
public struct GemmProblem
{
    /// <summary>op(A).</summary>
    public Transpose TransA;
    /// <summary>op(B).</summary>
    public Transpose TransB;
    /// <summary>Rows of op(A) and C.</summary>
    public int M;
    /// <summary>Columns of op(B) and C.</summary>
    public int N;
    /// <summary>Columns of op(A), rows of op(B).</summary>
    public int K;
    /// <summary>Scale of the product.</summary>
    public float Alpha;
    /// <summary>Scale of the existing C.</summary>
    public float Beta;
    /// <summary>The tensor holding A.</summary>
    public Tensor A;
    /// <summary>First element of A in <see cref="A"/>.</summary>
    public long OffsetA;
    /// <summary>Row stride of A as stored.</summary>
    public int Lda;
    /// <summary>The tensor holding B.</summary>
    public Tensor B;
    /// <summary>First element of B in <see cref="B"/>.</summary>
    public long OffsetB;
    /// <summary>Row stride of B as stored.</summary>
    public int Ldb;
    /// <summary>The tensor holding C.</summary>
    public Tensor C;
    /// <summary>First element of C in <see cref="C"/>.</summary>
    public long OffsetC;
    /// <summary>Row stride of C.</summary>
    public int Ldc;

    /// <summary>A problem over whole tensors with tight leading dimensions.</summary>
    public GemmProblem(Tensor c, Tensor a, Tensor b, int m, int n, int k,
        Transpose transA = Transpose.No, Transpose transB = Transpose.No, float alpha = 1f, float beta = 0f)
    {
        TransA = transA; TransB = transB; M = m; N = n; K = k; Alpha = alpha; Beta = beta;
        A = a; Lda = Math.Max(1, transA == Transpose.No ? k : m);
        B = b; Ldb = Math.Max(1, transB == Transpose.No ? n : k);
        C = c; Ldc = Math.Max(1, n);
        OffsetA = OffsetB = OffsetC = 0;
    }

    /// <summary>Stored rows and columns of A (before op).</summary>
    internal readonly (int Rows, int Cols) StoredA => TransA == Transpose.No ? (M, K) : (K, M);

    /// <summary>Stored rows and columns of B (before op).</summary>
    internal readonly (int Rows, int Cols) StoredB => TransB == Transpose.No ? (K, N) : (N, K);
}
