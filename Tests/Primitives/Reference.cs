namespace LoraRuntime.Tests.Primitives;

/// <summary>
/// Straightforward float64 implementations of the primitives, written from the formulas (not from the kernels):
/// GELU through tanh, softmax and log-sum-exp by their definitions, the layer-norm gradient as llm.c derives it.
/// </summary>
internal static class Reference
{
    private static readonly double GeluK = Math.Sqrt(2 / Math.PI);
    private const double GeluC = 0.044715;

    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(GeluK * (x + GeluC * x * x * x)));

    public static double GeluDerivative(double x)
    {
        double t = Math.Tanh(GeluK * (x + GeluC * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GeluK * (1 + 3 * GeluC * x * x);
    }

    /// <summary>Columns row r sees: all, or causally i + 1 + (cols − T) for row i of its T-row matrix.</summary>
    public static int Visible(int row, int queries, int cols, bool causal) => causal ? row % queries + 1 + cols - queries : cols;

    public static double[] Softmax(double[] x, int rows, int cols, int queries, bool causal)
    {
        var p = new double[x.Length];
        for (int r = 0; r < rows; r++)
        {
            int visible = Visible(r, queries, cols, causal);
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < visible; j++) max = Math.Max(max, x[r * cols + j]);
            for (int j = 0; j < visible; j++) sum += Math.Exp(x[r * cols + j] - max);
            for (int j = 0; j < visible; j++) p[r * cols + j] = Math.Exp(x[r * cols + j] - max) / sum;
        }
        return p;
    }

    /// <summary>The gradient of softmax (not accumulated): p ⊙ (dOut − Σ p ⊙ dOut) over the visible columns.</summary>
    public static double[] SoftmaxBackward(double[] p, double[] dOut, int rows, int cols, int queries, bool causal)
    {
        var dIn = new double[p.Length];
        for (int r = 0; r < rows; r++)
        {
            int visible = Visible(r, queries, cols, causal);
            double dot = 0;
            for (int j = 0; j < visible; j++) dot += p[r * cols + j] * dOut[r * cols + j];
            for (int j = 0; j < visible; j++) dIn[r * cols + j] = p[r * cols + j] * (dOut[r * cols + j] - dot);
        }
        return dIn;
    }

    public static (double[] Output, double[] Mean, double[] Rstd) LayerNorm(double[] x, double[] w, double[] b, int rows, int cols, double epsilon)
    {
        var y = new double[x.Length];
        var means = new double[rows];
        var rstds = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0, variance = 0;
            for (int j = 0; j < cols; j++) mean += x[r * cols + j];
            mean /= cols;
            for (int j = 0; j < cols; j++) variance += (x[r * cols + j] - mean) * (x[r * cols + j] - mean);
            double rstd = 1 / Math.Sqrt(variance / cols + epsilon);
            for (int j = 0; j < cols; j++) y[r * cols + j] = (x[r * cols + j] - mean) * rstd * w[j] + b[j];
            means[r] = mean;
            rstds[r] = rstd;
        }
        return (y, means, rstds);
    }

    /// <summary>The layer-norm gradients (not accumulated).</summary>
    public static (double[] DInput, double[] DWeight, double[] DBias) LayerNormBackward(double[] dOut, double[] x, double[] w,
        double[] mean, double[] rstd, int rows, int cols)
    {
        var dx = new double[x.Length];
        var dw = new double[cols];
        var db = new double[cols];
        for (int r = 0; r < rows; r++)
        {
            double meanG = 0, meanGN = 0;
            for (int j = 0; j < cols; j++)
            {
                double norm = (x[r * cols + j] - mean[r]) * rstd[r];
                meanG += w[j] * dOut[r * cols + j];
                meanGN += w[j] * dOut[r * cols + j] * norm;
            }
            meanG /= cols;
            meanGN /= cols;
            for (int j = 0; j < cols; j++)
            {
                double norm = (x[r * cols + j] - mean[r]) * rstd[r];
                dx[r * cols + j] = (w[j] * dOut[r * cols + j] - meanG - norm * meanGN) * rstd[r];
                dw[j] += norm * dOut[r * cols + j];
                db[j] += dOut[r * cols + j];
            }
        }
        return (dx, dw, db);
    }

    /// <summary>Losses −log softmax(x)[target] (0 for a negative target) and the probabilities.</summary>
    public static (double[] Losses, double[] Probs) CrossEntropy(double[] logits, int[] targets, int rows, int classes)
    {
        var probs = Softmax(logits, rows, classes, 1, false);
        var losses = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0) continue;
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < classes; j++) max = Math.Max(max, logits[r * classes + j]);
            for (int j = 0; j < classes; j++) sum += Math.Exp(logits[r * classes + j] - max);
            losses[r] = max + Math.Log(sum) - logits[r * classes + targets[r]];
        }
        return (losses, probs);
    }

    /// <summary>The gradient of Σ dLosses ⊙ losses with respect to the logits (not accumulated).</summary>
    public static double[] CrossEntropyBackward(double[] dLosses, double[] probs, int[] targets, int rows, int classes)
    {
        var d = new double[probs.Length];
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0) continue;
            for (int j = 0; j < classes; j++) d[r * classes + j] = (probs[r * classes + j] - (j == targets[r] ? 1 : 0)) * dLosses[r];
        }
        return d;
    }

    public static double[] Embedding(int[] ids, double[] table, int channels)
    {
        var output = new double[ids.Length * channels];
        for (int n = 0; n < ids.Length; n++)
            Array.Copy(table, ids[n] * channels, output, n * channels, channels);
        return output;
    }

    /// <summary>The gradient of Σ dOut ⊙ Embedding(table) with respect to the table (not accumulated).</summary>
    public static double[] EmbeddingBackward(double[] dOut, int[] ids, int vocabulary, int channels)
    {
        var dTable = new double[vocabulary * channels];
        for (int n = 0; n < ids.Length; n++)
            for (int c = 0; c < channels; c++) dTable[ids[n] * channels + c] += dOut[n * channels + c];
        return dTable;
    }

    /// <summary>One AdamW step in place, as torch.optim.AdamW (foreach=False) computes it.</summary>
    public static void AdamW(double[] p, double[] g, double[] m, double[] v, double lr, double beta1, double beta2, double epsilon,
        double weightDecay, int step)
    {
        double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= 1 - lr * weightDecay;
            m[i] = beta1 * m[i] + (1 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
            double denominator = Math.Sqrt(v[i]) / Math.Sqrt(correction2) + epsilon;
            p[i] -= lr / correction1 * m[i] / denominator;
        }
    }
}
