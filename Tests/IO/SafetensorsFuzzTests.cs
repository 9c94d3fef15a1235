using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using LoraRuntime.Cpu;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>
/// Thousands of random and mutated files: reading each either succeeds or throws InvalidDataException, never
/// anything else; never hangs; and never allocates more than a small multiple of the file's size.
/// </summary>
public sealed partial class SafetensorsFuzzTests : IDisposable
{
    private const int FileCount = 3000;
    private const int Seed = 6_2024;
    private static readonly TimeSpan PerFileLimit = TimeSpan.FromSeconds(5); // generous: CI machines are shared

    private readonly SafetensorsFiles _files = new();
    private readonly CpuBackend _backend = new();

    public void Dispose()
    {
        _backend.Dispose();
        _files.Dispose();
    }

    [Fact]
    public void Random_and_mutated_files_fail_only_with_InvalidDataException_quickly_and_within_memory()
    {
        var seeds = SeedFiles();
        var random = new Random(Seed);
        var inputs = new byte[FileCount][];
        for (int i = 0; i < FileCount; i++) inputs[i] = Mutate(random, seeds[random.Next(seeds.Count)]);

        int current = -1;
        int accepted = 0;
        Exception? failure = null;
        var worker = new Thread(() =>
        {
            try
            {
                // Two passes: the first meets each code path (and its one-time static state, such as the resource
                // strings of exception messages) and checks outcomes and time; the second also checks allocation.
                for (int pass = 0; pass < 2; pass++)
                {
                    accepted = 0;
                    for (int i = 0; i < FileCount; i++)
                    {
                        Volatile.Write(ref current, pass * FileCount + i);
                        if (ReadEverything(inputs[i], i, checkAllocation: pass == 1)) accepted++;
                    }
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        worker.Start();

        // The guard: a file that takes longer than PerFileLimit is a hang, reported with its index.
        int watched = -2;
        var sinceChange = Stopwatch.StartNew();
        while (!worker.Join(50))
        {
            int now = Volatile.Read(ref current);
            if (now != watched)
            {
                watched = now;
                sinceChange.Restart();
            }
            else if (sinceChange.Elapsed > PerFileLimit)
            {
                Assert.Fail($"file {now % FileCount} (seed {Seed}) took more than {PerFileLimit.TotalSeconds} s: a hang");
            }
        }
        if (failure is not null) throw new Xunit.Sdk.XunitException($"file {current % FileCount} (seed {Seed}): {failure}");
        // Both outcomes must have been exercised for the run to mean anything.
        Assert.InRange(accepted, FileCount / 20, FileCount - FileCount / 20);
    }

    /// <summary>Opens the file and reads everything it holds; true when it was valid. Checks time, and allocation when asked.</summary>
    private bool ReadEverything(byte[] file, int index, bool checkAllocation)
    {
        string path = _files.Write(file, "fuzz.safetensors");
        var clock = Stopwatch.StartNew();
        long before = GC.GetAllocatedBytesForCurrentThread();
        InvalidDataException? rejected = null;
        try
        {
            using var reader = SafetensorsReader.Open(path);
            foreach (var (key, value) in reader.Metadata) _ = key.Length + value.Length;
            foreach (var entry in reader.Entries)
            {
                if (entry.DType.IsFloat())
                {
                    var values = new float[entry.ElementCount];
                    reader.ReadFloat32(entry.Name, values);
                    reader.TryGetFloat32Span(entry.Name, out _);
                }
                else if (entry.DType.IsInteger())
                {
                    reader.ReadInt32(entry.Name, new int[entry.ElementCount]);
                }
                if ((entry.DType.IsFloat() || entry.DType.IsInteger()) && entry.TryGetTensorShape(out _))
                    reader.Load(entry.Name, _backend).Dispose();
            }
        }
        catch (InvalidDataException e)
        {
            rejected = e;
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before; // before any assertion, which allocates itself
        long budget = 4L * file.Length + 64 * 1024;
        Assert.True(!checkAllocation || allocated <= budget, $"file {index} ({file.Length} bytes) allocated {allocated} bytes, above {budget}");
        Assert.True(clock.Elapsed < PerFileLimit, $"file {index} took {clock.Elapsed.TotalMilliseconds} ms");
        if (rejected is null) return true;
        Assert.StartsWith(path + ": ", rejected.Message);
        Assert.DoesNotContain('\n', rejected.Message);
        return false;
    }

    /// <summary>Valid files of every kind the reader handles, from the writer and by hand.</summary>
    private List<byte[]> SeedFiles()
    {
        var seeds = new List<byte[]>();
        var random = new Random(Seed);
        foreach (var dtype in new[] { SafetensorsDType.F32, SafetensorsDType.F16, SafetensorsDType.BF16 })
        {
            var writer = new SafetensorsWriter(dtype);
            writer.Add("embed.weight", RandomFloats(random, 48), 12, 4);
            writer.Add("h.0.attn.bias", RandomFloats(random, 5), 5);
            writer.Add("scalar", RandomFloats(random, 1));
            writer.Add("empty", Array.Empty<float>(), 0, 3);
            writer.Add("lora_A", RandomFloats(random, 24), 2, 3, 2, 2);
            writer.AddMetadata("format", "pt");
            writer.AddMetadata("alpha", "16");
            string path = _files.PathOf($"seed-{dtype}.safetensors");
            writer.Save(path);
            seeds.Add(File.ReadAllBytes(path));
        }
        seeds.Add(SafetensorsFiles.Layout(
            """{"ids":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},"mask":{"dtype":"I32","shape":[2,2],"data_offsets":[24,40]},"b":{"dtype":"U8","shape":[3],"data_offsets":[40,43]},"f":{"dtype":"F32","shape":[1,1,1,1,1],"data_offsets":[43,47]},"q":{"dtype":"F4","shape":[4],"data_offsets":[47,49]}}""",
            [.. SafetensorsFiles.Bytes(5L, -6L, 1L << 20), .. SafetensorsFiles.Bytes(1, 2, 3, 4), 7, 8, 9, .. SafetensorsFiles.Bytes(2.5f), 0x12, 0x34]));
        seeds.Add(SafetensorsFiles.Layout("""{"__metadata__":{"k":"v"}}""", []));

        // A long header (so that allocation per header byte is measured beyond the fixed allowance) and a large tensor.
        var many = new SafetensorsWriter();
        for (int i = 0; i < 300; i++) many.Add($"layers.{i}.w", RandomFloats(random, 16), 4, 4);
        for (int i = 0; i < 50; i++) many.AddMetadata($"key{i}", $"value {i}");
        many.Save(_files.PathOf("seed-many.safetensors"));
        seeds.Add(File.ReadAllBytes(_files.PathOf("seed-many.safetensors")));
        var large = new SafetensorsWriter(SafetensorsDType.BF16);
        large.Add("embed", RandomFloats(random, 128 * 1024), 256, 512);
        large.Save(_files.PathOf("seed-large.safetensors"));
        seeds.Add(File.ReadAllBytes(_files.PathOf("seed-large.safetensors")));
        return seeds;
    }

    private static float[] RandomFloats(Random random, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 4 - 2);
        return values;
    }

    private static readonly string[] HostileNumbers =
        ["0", "1", "-1", "3", "1.5", "1e3", "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616", "99999999999999999999999", "-9223372036854775808"];

    private static readonly string[] HostileTokens =
        ["\"F32\"", "\"BF16\"", "\"I64\"", "\"U8\"", "\"F4\"", "\"F33\"", "null", "[]", "{}", "\"shape\"", "\"data_offsets\"", "\"__metadata__\"", "[0,0]", "1"];

    /// <summary>One file: random bytes, or a seed truncated, bit-flipped, given a lying length, or with its header edited.</summary>
    private static byte[] Mutate(Random random, byte[] seed)
    {
        byte[] file = (byte[])seed.Clone();
        int mutations = random.Next(10) == 0 ? 2 : 1;
        for (int m = 0; m < mutations; m++) file = MutateOnce(random, file);
        return file;
    }

    private static byte[] MutateOnce(Random random, byte[] file)
    {
        long headerLength = file.Length >= 8 ? Math.Clamp(SafetensorsFiles.HeaderLength(file), 0, file.Length) : 0;
        long dataStart = 8 + headerLength;
        switch (random.Next(9))
        {
            case 0: // random bytes, sometimes behind a plausible length
            {
                var bytes = new byte[random.Next(0, 300)];
                random.NextBytes(bytes);
                if (bytes.Length >= 8 && random.Next(2) == 0)
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)random.Next(0, bytes.Length - 7));
                return bytes;
            }
            case 1: // truncation at an interesting boundary: in the length, around the header's end, around each tensor
            {
                var cuts = new List<long> { 0, 1, 7, 8, 9, dataStart - 1, dataStart, dataStart + 1, file.Length - 1 };
                if (dataStart <= file.Length && TryHeader(file, out string header))
                    foreach (Match offsets in OffsetPattern().Matches(header))
                        foreach (int group in new[] { 1, 2 })
                            foreach (int delta in new[] { -1, 0, 1 })
                                cuts.Add(dataStart + long.Parse(offsets.Groups[group].Value) + delta);
                long cut = Math.Clamp(cuts[random.Next(cuts.Count)], 0, file.Length);
                return file[..(int)cut];
            }
            case 2: // bit flips in the header
            case 3: // bit flips in the data (or anywhere, when there is no data)
            {
                long from = random.Next(2) == 0 || dataStart >= file.Length ? 0 : dataStart;
                long to = random.Next(2) == 0 ? Math.Min(dataStart, file.Length) : file.Length;
                if (to <= from) return file;
                for (int flips = random.Next(1, 5); flips > 0; flips--)
                    file[random.NextInt64(from, to)] ^= (byte)(1 << random.Next(8));
                return file;
            }
            case 4: // a lying header length
            {
                if (file.Length < 8) return file;
                ulong[] lies = [0, 1, 2, (ulong)headerLength - 1, (ulong)headerLength + 1, (ulong)file.Length - 8, (ulong)file.Length - 7,
                    100UL << 20, (100UL << 20) + 1, ulong.MaxValue, (ulong)random.NextInt64(), (ulong)random.Next(0, file.Length)];
                BinaryPrimitives.WriteUInt64LittleEndian(file, lies[random.Next(lies.Length)]);
                return file;
            }
            case 5: // a number in the header (a dimension or an offset) replaced by a hostile one
                return EditHeader(random, file, header =>
                {
                    var numbers = NumberPattern().Matches(header);
                    if (numbers.Count == 0) return header;
                    var target = numbers[random.Next(numbers.Count)];
                    return header[..target.Index] + HostileNumbers[random.Next(HostileNumbers.Length)] + header[(target.Index + target.Length)..];
                });
            case 6: // a token of the header replaced (dtypes, keys, structure)
                return EditHeader(random, file, header =>
                {
                    var tokens = TokenPattern().Matches(header);
                    if (tokens.Count == 0) return header;
                    var target = tokens[random.Next(tokens.Count)];
                    return header[..target.Index] + HostileTokens[random.Next(HostileTokens.Length)] + header[(target.Index + target.Length)..];
                });
            case 7: // the data region grown or shrunk
            {
                int delta = random.Next(-8, 9);
                var resized = new byte[Math.Max(0, file.Length + delta)];
                Array.Copy(file, resized, Math.Min(file.Length, resized.Length));
                return resized;
            }
            default: // one offset nudged (a size mismatch) or pushed far past the end, or a whole range moved (a hole or an overlap)
                return EditHeader(random, file, header =>
                {
                    var offsets = OffsetPattern().Matches(header);
                    if (offsets.Count == 0) return header;
                    var target = offsets[random.Next(offsets.Count)];
                    long begin = long.Parse(target.Groups[1].Value), end = long.Parse(target.Groups[2].Value);
                    switch (random.Next(3))
                    {
                        case 0: end += random.Next(-8, 9); break;
                        case 1: end += random.Next(1, 1 << 20) * (random.Next(2) == 0 ? 1L : 1L << 40); break;
                        default:
                            long shift = random.Next(2) == 0 ? random.Next(-8, 9) : (end - begin) * (random.Next(2) == 0 ? 1 : -1);
                            (begin, end) = (begin + shift, end + shift);
                            break;
                    }
                    return header[..target.Index] + $"\"data_offsets\":[{begin},{end}]" + header[(target.Index + target.Length)..];
                });
        }
    }

    /// <summary>Edits the header text; the length prefix is updated to match, or (a quarter of the time) left stale.</summary>
    private static byte[] EditHeader(Random random, byte[] file, Func<string, string> edit)
    {
        if (!TryHeader(file, out string header)) return file;
        byte[] edited = Encoding.UTF8.GetBytes(edit(header));
        long headerLength = SafetensorsFiles.HeaderLength(file);
        ulong declared = random.Next(4) == 0 ? (ulong)headerLength : (ulong)edited.Length;
        return SafetensorsFiles.Layout(declared, edited, file.AsSpan((int)(8 + headerLength)));
    }

    private static bool TryHeader(byte[] file, out string header)
    {
        header = "";
        if (file.Length < 8) return false;
        long n = SafetensorsFiles.HeaderLength(file);
        if (n < 0 || n > file.Length - 8) return false;
        header = Encoding.UTF8.GetString(file, 8, (int)n);
        return true;
    }

    [GeneratedRegex(@"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")]
    private static partial Regex NumberPattern();

    [GeneratedRegex(@"""data_offsets"":\[(\d+),(\d+)\]")]
    private static partial Regex OffsetPattern();

    [GeneratedRegex(@"""[^""]*""|\[[^\[\]]*\]|\{\}|null")]
    private static partial Regex TokenPattern();
}
