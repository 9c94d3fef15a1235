using BenchmarkDotNet.Running;

namespace LoraRuntime.Benchmarks;

/// <summary>Runs the suites: <c>dotnet run -c Release --project Benchmarks -- --filter '*Gemm*'</c>.</summary>
public static class Program
{
    /// <summary>Hands the arguments to BenchmarkDotNet's switcher (filters, jobs, exporters).</summary>
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
