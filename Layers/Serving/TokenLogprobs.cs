namespace LoraRuntime.Layers.Serving;

/// <summary>
/// A generated token as a streamed response sees it: its id, its log-probability and the most likely alternatives at
/// its position (empty unless the request asked for log-probabilities). The memories are views of the request's own
/// buffers, filled before the token is passed and never written again.
/// </summary>
internal readonly record struct GeneratedToken(int Id, float Logprob, ReadOnlyMemory<int> TopIds, ReadOnlyMemory<float> TopLogprobs);

/// <summary>
/// The log-probabilities of a request's generated tokens under the model's distribution (log-softmax of the raw logits:
/// before temperature, top-k and top-p, as vLLM reports them by default), with the <see cref="TopCount"/> most likely
/// tokens at each position, most likely first.
/// </summary>
internal sealed record TokenLogprobs(float[] Chosen, int[] TopIds, float[] TopLogprobs, int TopCount)
{
    /// <summary>Most requests ask for at most this many alternatives (OpenAI's limit).</summary>
    public const int MaxTop = 20;

    /// <summary>
    /// log p(<paramref name="token"/>) from <paramref name="logits"/>, and the <paramref name="topIds"/>.Length most likely
    /// ids with their log-probabilities into <paramref name="topIds"/> and <paramref name="topLogprobs"/>; allocates nothing.
    /// </summary>
    public static float Compute(ReadOnlySpan<float> logits, int token, Span<int> topIds, Span<float> topLogprobs)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) max = Math.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        float logSum = max + (float)Math.Log(sum);
        int k = topIds.Length, filled = 0;
        // Insertion into the K best so far: K is small (≤ 20), V is large.
        for (int i = 0; i < logits.Length && k > 0; i++)
        {
            float l = logits[i];
            if (filled == k && l <= topLogprobs[k - 1]) continue;
            int at = Math.Min(filled, k - 1);
            while (at > 0 && topLogprobs[at - 1] < l)
            {
                topLogprobs[at] = topLogprobs[at - 1];
                topIds[at] = topIds[at - 1];
                at--;
            }
            topLogprobs[at] = l;
            topIds[at] = i;
            if (filled < k) filled++;
        }
        for (int j = 0; j < filled; j++) topLogprobs[j] -= logSum;
        return logits[token] - logSum;
    }
}
