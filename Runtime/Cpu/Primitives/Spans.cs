namespace LoraRuntime.Cpu.Primitives;

/// <summary>Spans over validated tensor memory; ranges come from <see cref="ParallelFor{TOp}"/> or one row, so they fit.</summary>
internal static unsafe class Spans
{
    public static ReadOnlySpan<float> Read(float* data, long start, long end) => new(data + start, checked((int)(end - start)));

    public static Span<float> Write(float* data, long start, long end) => new(data + start, checked((int)(end - start)));
}
