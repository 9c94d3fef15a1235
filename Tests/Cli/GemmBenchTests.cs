using System.Text.Json;
using LoraRuntime.Cli.Bench;
using LoraRuntime.Cpu;
using Xunit;

namespace LoraRuntime.Tests.Cli;

public sealed class GemmBenchTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("lora-bench-").FullName;
    private readonly CpuBackend _backend = new();

    public void Dispose()
    {
        _backend.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    [Theory]
    [InlineData("NN")]
    [InlineData("NT")]
    [InlineData("TN")]
    [InlineData("TT")]
    public void A_tiny_gemm_is_timed_and_checked_for_every_transposition(string trans)
    {
        var record = GemmBench.Run(_backend, new GemmShape(7, 5, 9), GemmTrans.Parse(trans, "--trans"), warmup: 1, reps: 5);

        Assert.Equal("sgemm", record.Op);
        Assert.Equal("cpu", record.Device);
        Assert.Equal([7, 5, 9], record.Shape);
        Assert.Equal(trans, record.Trans);
        Assert.Equal(5, record.Reps);
        Assert.True(record.MedianMs > 0);
        Assert.True(record.Gflops > 0);
        Assert.InRange(record.RelErr, 0, 1e-5);
        Assert.Equal(0, _backend.Pool.Stats.BytesInUse); // A, B and C went back to the pool
    }

    [Fact]
    public void The_sampled_check_sees_a_wrong_corner()
    {
        var shape = new GemmShape(4, 3, 2);
        float[] a = [1, 2, 3, 4, 5, 6, 7, 8]; // 4×2
        float[] b = [1, 0, 2, 0, 1, 3];       // 2×3
        var c = new float[12];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                c[i * 3 + j] = a[i * 2] * b[j] + a[i * 2 + 1] * b[3 + j];
        var nn = new GemmTrans(Transpose.No, Transpose.No);
        Assert.Equal(0, GemmBench.SampledRelativeError(a, b, c, shape, nn, new Random(1)));

        c[11] += 1; // the last corner, always checked
        Assert.True(GemmBench.SampledRelativeError(a, b, c, shape, nn, new Random(1)) > 0.01);
    }

    [Fact]
    public void The_json_file_has_the_agreed_fields_and_is_written_atomically()
    {
        string path = Path.Combine(_folder, "out", "gemm.json");
        var records = new[]
        {
            GemmBench.Run(_backend, new GemmShape(8, 4, 16), new GemmTrans(Transpose.No, Transpose.Yes), warmup: 0, reps: 5),
            GemmBench.Run(_backend, new GemmShape(1, 16, 8), new GemmTrans(Transpose.No, Transpose.No), warmup: 1, reps: 6),
        };
        File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.GetDirectoryName(path)!).FullName, "gemm.json"), "old");

        BenchReport.WriteJson(path, records);

        using var json = JsonDocument.Parse(File.ReadAllBytes(path));
        Assert.Equal(JsonValueKind.Array, json.RootElement.ValueKind);
        Assert.Equal(2, json.RootElement.GetArrayLength());
        var first = json.RootElement[0];
        Assert.Equal(["op", "device", "shape", "trans", "median_ms", "gflops", "reps", "rel_err"],
            first.EnumerateObject().Select(p => p.Name));
        Assert.Equal("sgemm", first.GetProperty("op").GetString());
        Assert.Equal("cpu", first.GetProperty("device").GetString());
        Assert.Equal([8, 4, 16], first.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal("NT", first.GetProperty("trans").GetString());
        Assert.True(first.GetProperty("median_ms").GetDouble() > 0);
        Assert.True(first.GetProperty("gflops").GetDouble() > 0);
        Assert.Equal(5, first.GetProperty("reps").GetInt32());
        Assert.InRange(first.GetProperty("rel_err").GetDouble(), 0, 1e-5);
        Assert.Equal(6, json.RootElement[1].GetProperty("reps").GetInt32());

        Assert.Equal(records, BenchReport.ReadJson(path), new RecordComparer());
        Assert.Equal(["gemm.json"], Directory.GetFiles(Path.GetDirectoryName(path)!).Select(Path.GetFileName)); // no temp file left
    }

    private sealed class RecordComparer : IEqualityComparer<BenchRecord>
    {
        public bool Equals(BenchRecord? x, BenchRecord? y) =>
            x is not null && y is not null && x with { Shape = [] } == y with { Shape = [] } && x.Shape.SequenceEqual(y.Shape);

        public int GetHashCode(BenchRecord obj) => obj.Op.GetHashCode(StringComparison.Ordinal);
    }
}
