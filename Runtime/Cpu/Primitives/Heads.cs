namespace LoraRuntime.Cpu.Primitives;

/// <summary>
/// Moves attention heads between rows [B·T, W] (columns Column + h·HS + d) and heads [B, NH, T, HS], one (b, t) row
/// per item: a split gathers, a merge scatters. Every item touches its own elements, so tasks never collide.
/// </summary>
internal unsafe struct HeadsOp : IRangeOp
{
    public float* Heads, Rows;
    public int Time, HeadCount, HeadSize, Width, Column;
    public bool Split;

    public readonly void Run(long start, long end)
    {
        for (long n = start; n < end; n++)
        {
            long b = n / Time, t = n % Time;
            float* row = Rows + n * Width + Column;
            for (int h = 0; h < HeadCount; h++)
            {
                float* packed = Heads + ((b * HeadCount + h) * Time + t) * HeadSize, strided = row + h * HeadSize;
                if (Split) ShortCopy.Floats(strided, packed, HeadSize);
                else ShortCopy.Floats(packed, strided, HeadSize);
            }
        }
    }
}
