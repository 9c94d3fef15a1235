namespace LoraRuntime.Layers;

/// <summary>
/// The one check of a model's size against the machine, made before anything is allocated: a shape from a flag or a
/// config.json that would need more memory than the machine has (a typo of a few zeros, a hostile file) is refused
/// with the sizes that make it, instead of growing until the process is killed.
/// </summary>
internal static class ModelMemory
{
    /// <summary>Throws an <see cref="InsufficientMemoryException"/> naming the shape when it cannot fit.</summary>
    public static void Check(Backend backend, GptConfig config, int maxBatch, bool training, bool trainParameters)
    {
        double needed = config.EstimateBytes(maxBatch, training, trainParameters);
        // Host memory: what the runtime may use (a container's limit where there is one). A device's own memory is
        // the device's to refuse; the host still holds the file's staging and the tokenizer.
        long available = backend.IsHostMemory ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : long.MaxValue;
        if (needed > available)
            throw new InsufficientMemoryException(
                $"a model of L = {config.Layers} layers, C = {config.Channels}, V = {config.Vocabulary}, T = {config.BlockSize}, {config.ParameterCount():N0} weights" +
                $"{(training ? ", for training" : "")} with a batch of {maxBatch} needs about {needed / (1L << 30):N1} GiB; this machine has {available / (double)(1L << 30):N1} GiB");
    }
}
