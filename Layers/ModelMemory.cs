namespace LoraRuntime.Layers;

/// <summary>
/// The one check of a model's size against the machine, made before anything is allocated: a shape from a flag or a
/// config.json that would need more memory than the machine has (a typo of a few zeros, a hostile file) is refused
/// with the sizes that make it, instead of growing until the process is killed.
/// </summary>
internal static class ModelMemory
{
    /// <summary>
    /// The same for a decoder's reservations (<c>lora serve</c>'s --slots, --max-step-tokens, --max-rank; an engine's
    /// options): the KV cache of every slot and a step's scratch, refused with the options that make it too large.
    /// </summary>
    public static void CheckDecoder(Backend backend, GptConfig config, int slots, int maxStepTokens, int maxRank, int maxSequence)
    {
        double kv = (double)slots * config.Layers * maxSequence * 2 * config.KvHeads * config.HeadDim;
        double c = config.Channels, rows = maxStepTokens;
        double step = rows * (12 * c + 3 * config.Hidden + config.Vocabulary) + rows * maxRank * 8 + rows * config.Heads * maxSequence;
        double needed = 4 * (kv + step);
        long available = Available(backend);
        if (needed > available)
            throw new InsufficientMemoryException(
                $"serving {slots} sequences of up to {maxSequence} tokens, {maxStepTokens} tokens a step and adapters up to rank {maxRank} on a model of " +
                $"L = {config.Layers}, C = {config.Channels}, V = {config.Vocabulary} reserves about {needed / (1L << 30):N1} GiB (KV cache {4 * kv / (1L << 30):N1} GiB); " +
                $"this machine has {available / (double)(1L << 30):N1} GiB: lower the slots, the step's tokens or the rank");
    }

    /// <summary>Throws an <see cref="InsufficientMemoryException"/> naming the shape when it cannot fit.</summary>
    public static void Check(Backend backend, GptConfig config, int maxBatch, bool training, bool trainParameters,
        Func<string, int, WeightFormat>? storage = null)
    {
        // A stored base (its token embedding as the sample) takes at most 2 bytes a weight and no packed copy.
        bool stored = storage is not null && storage("wte.weight", config.Channels) != WeightFormat.F32;
        double needed = config.EstimateBytes(maxBatch, training, trainParameters, stored);
        long available = Available(backend);
        if (needed > available)
            throw new InsufficientMemoryException(
                $"a model of L = {config.Layers} layers, C = {config.Channels}, V = {config.Vocabulary}, T = {config.BlockSize}, {config.ParameterCount():N0} weights" +
                $"{(training ? ", for training" : "")} with a batch of {maxBatch} needs about {needed / (1L << 30):N1} GiB; this machine has {available / (double)(1L << 30):N1} GiB");
    }

    /// <summary>
    /// Host memory the runtime may use (a container's limit where there is one); a device's own memory is the device's
    /// to refuse (the host still holds the file's staging and the tokenizer).
    /// </summary>
    private static long Available(Backend backend) => backend.IsHostMemory ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : long.MaxValue;
}
