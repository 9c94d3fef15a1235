using System.Diagnostics;
using System.Text.Json;
using LoraRuntime.Cli;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.Distributed;

/// <summary>The jobs of this file start processes under mpirun and load both cores: they run one at a time.</summary>
[CollectionDefinition(nameof(MpiCollection), DisableParallelization = true)]
public sealed class MpiCollection;

/// <summary>
/// Data-parallel training end to end, through Open MPI's real <c>mpirun</c> on loopback: two ranks with half of every
/// batch each give the single process's losses and weights (LoRA fine-tuning with dropout and accumulation, and full
/// pre-training of a Llama-style model), a checkpoint of either resumes on the other number of ranks, <c>lora info</c>
/// names the ranks and the library, and a killed rank ends the job within seconds, named. Without mpirun these skip
/// with the reason, except where LORA_REQUIRE_MPI=1 (.ci/run installs Open MPI and sets it): there a missing mpirun fails.
/// </summary>
[Collection(nameof(MpiCollection))]
public sealed class DataParallelTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lora-mpi-" + Guid.NewGuid().ToString("N"));
    private readonly string _corpus;

    public DataParallelTests()
    {
        Directory.CreateDirectory(_root);
        _corpus = Path.Combine(_root, "corpus.txt");
        File.WriteAllText(_corpus, LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..60_000]);
    }

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private static readonly string[] TinyGpt = ["--layers", "2", "--embd", "32", "--heads", "2", "--block", "32"];

    [Fact]
    public void Two_ranks_fine_tune_the_same_adapter_as_one_process()
    {
        string mpirun = RequireMpirun();
        string model = Path.Combine(_root, "base");
        Assert.Equal(0, InProcess(["train", "--data", _corpus, "--out", model, "--iters", "20", .. TinyGpt, "--batch", "4", "--eval-every", "20", "--eval-iters", "1"]));
        // Dropout and accumulation on: the ranks must draw the global batch's masks and sum the right shares.
        string[] finetune = ["finetune", "--base", model, "--data", _corpus, "--iters", "12", "--batch", "6", "--grad-accum", "2", "--rank", "4",
            "--targets", "qkv,fc", "--lora-dropout", "0.1", "--lr", "3e-3", "--warmup", "2", "--eval-every", "6", "--eval-iters", "2", "--seed", "5"];
        string one = Path.Combine(_root, "one"), two = Path.Combine(_root, "two");
        Assert.Equal(0, InProcess([.. finetune, "--out", one, "--json", one + ".json"]));
        var (code, output) = Mpi(mpirun, 2, [.. finetune, "--out", two, "--json", two + ".json"]);
        Assert.True(code == 0, output);

        var single = Summary(one + ".json");
        var parallel = Summary(two + ".json");
        Assert.Equal(1, single.Ranks);
        Assert.Equal(2, parallel.Ranks);
        Assert.True(parallel.AllReduceMs > 0, "the two-rank run timed no allreduce");
        AssertClose(single.Losses, parallel.Losses, 1e-6, "losses");
        AssertSameTensors(Path.Combine(one, "adapter_model.safetensors"), Path.Combine(two, "adapter_model.safetensors"), 1e-6);
        // Rank 0 alone wrote: one adapter, one plot, one set of checkpoints.
        Assert.True(File.Exists(Path.Combine(two, "loss.png")));
        Assert.Equal(["step-0000006", "step-0000012"], Directory.GetDirectories(Path.Combine(two, "checkpoints")).Select(d => Path.GetFileName(d)!).Order().ToArray());
    }

    [Fact]
    public void Two_ranks_pre_train_the_same_model_and_checkpoints_resume_on_the_other_number_of_ranks()
    {
        string mpirun = RequireMpirun();
        string[] train = ["train", "--data", _corpus, .. TinyGpt, "--arch", "llama", "--iters", "12", "--lr", "3e-3", "--warmup", "2",
            "--eval-every", "4", "--eval-iters", "2", "--seed", "9"];
        string one = Path.Combine(_root, "one"), halves = Path.Combine(_root, "halves"), two = Path.Combine(_root, "two");
        Assert.Equal(0, InProcess([.. train, "--batch", "4", "--out", one, "--json", one + ".json"]));
        // The same global batches in one process as two micro-batches of two sequences: the very halves the ranks take.
        Assert.Equal(0, InProcess([.. train, "--batch", "2", "--grad-accum", "2", "--out", halves]));
        var (code, output) = Mpi(mpirun, 2, [.. train, "--batch", "4", "--out", two, "--json", two + ".json"]);
        Assert.True(code == 0, output);
        AssertClose(Summary(one + ".json").Losses, Summary(two + ".json").Losses, 1e-6, "losses");
        AssertSameTensors(Path.Combine(halves, "model.safetensors"), Path.Combine(two, "model.safetensors"), 1e-6);
        // Against the whole batch in one product, the gradients differ by the order of float sums (≈ 1e-7), and Adam,
        // which divides each gradient by its own running size, lifts that to ≈ 2e-6 for weights whose gradients nearly
        // cancel; the one-process run with accumulation is exactly as far from it (measured: 2.35e-6 both, not growing).
        AssertSameTensors(Path.Combine(one, "model.safetensors"), Path.Combine(two, "model.safetensors"), SumOrderBound);

        // The two-rank run's checkpoint at step 4, continued by one process, ends where both runs ended.
        string twoThenOne = RewoundCopy(two, "twoThenOne", 4);
        Assert.Equal(0, InProcess([.. train, "--batch", "4", "--out", twoThenOne, "--resume"]));
        AssertSameTensors(Path.Combine(one, "model.safetensors"), Path.Combine(twoThenOne, "model.safetensors"), SumOrderBound);

        // And the reverse: the single process's checkpoint at step 8, continued by two ranks.
        string oneThenTwo = RewoundCopy(one, "oneThenTwo", 8);
        (code, output) = Mpi(mpirun, 2, [.. train, "--batch", "4", "--out", oneThenTwo, "--resume"]);
        Assert.True(code == 0, output);
        Assert.Contains("resumed at step 8 of 12", output);
        AssertSameTensors(Path.Combine(one, "model.safetensors"), Path.Combine(oneThenTwo, "model.safetensors"), SumOrderBound);
    }

    /// <summary>Pre-training's weights, whole batch against halves summed: float order through Adam (see the test).</summary>
    private const double SumOrderBound = 1e-5;

    [Fact]
    public void A_fine_tuning_checkpoint_of_one_process_resumes_on_two_ranks()
    {
        string mpirun = RequireMpirun();
        string model = Path.Combine(_root, "base");
        Assert.Equal(0, InProcess(["train", "--data", _corpus, "--out", model, "--iters", "10", .. TinyGpt, "--batch", "4", "--eval-every", "10", "--eval-iters", "1"]));
        string[] finetune = ["finetune", "--base", model, "--data", _corpus, "--iters", "9", "--batch", "4", "--rank", "2", "--lr", "3e-3", "--warmup", "1",
            "--eval-every", "3", "--eval-iters", "1", "--seed", "3", "--lora-dropout", "0.1", "--grad-accum", "2"];
        string one = Path.Combine(_root, "one");
        Assert.Equal(0, InProcess([.. finetune, "--out", one]));
        string resumed = RewoundCopy(one, "resumed", 3);
        var (code, output) = Mpi(mpirun, 2, [.. finetune, "--out", resumed, "--resume"]);
        Assert.True(code == 0, output);
        AssertSameTensors(Path.Combine(one, "adapter_model.safetensors"), Path.Combine(resumed, "adapter_model.safetensors"), 1e-6);
    }

    [Fact]
    public void Info_under_mpirun_names_the_ranks_the_transport_and_the_library()
    {
        string mpirun = RequireMpirun();
        string json = Path.Combine(_root, "info.json");
        var (code, output) = Mpi(mpirun, 2, ["info", "--json", json]);
        Assert.True(code == 0, output);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(json));
        var distributed = doc.RootElement.GetProperty("distributed");
        Assert.Equal(2, distributed.GetProperty("ranks").GetInt32());
        Assert.Equal(0, distributed.GetProperty("rank").GetInt32());
        Assert.Equal("MPI", distributed.GetProperty("transport").GetString());
        Assert.StartsWith("Open MPI v", distributed.GetProperty("library").GetString());
        Assert.Contains("OMPI_COMM_WORLD_SIZE=2", distributed.GetProperty("launch").GetString());
    }

    [Fact]
    public void A_batch_too_small_for_the_ranks_ends_the_job_with_a_rank_s_error()
    {
        string mpirun = RequireMpirun();
        var (code, output) = Mpi(mpirun, 2, ["train", "--data", _corpus, "--out", Path.Combine(_root, "m"), .. TinyGpt, "--batch", "1", "--iters", "2"]);
        Assert.Equal(ExitCodes.Usage, code);
        // Both ranks find the error; the first to abort ends the other, which may not have printed its own yet.
        Assert.Matches("error: rank [01] of 2 on ", output);
        Assert.Contains("--batch: 1 sequences cannot be shared by 2 ranks", output);
        Assert.False(Directory.Exists(Path.Combine(_root, "m", "checkpoints")));
    }

    [Fact]
    public async Task A_killed_rank_ends_the_job_within_seconds_and_is_named()
    {
        string mpirun = RequireMpirun();
        if (!OperatingSystem.IsLinux()) Assert.Skip("finds the rank's process through /proc");
        string model = Path.Combine(_root, "base");
        Assert.Equal(0, InProcess(["train", "--data", _corpus, "--out", model, "--iters", "2", .. TinyGpt, "--batch", "2", "--eval-every", "2", "--eval-iters", "1"]));
        string job = Guid.NewGuid().ToString("N"), output = Path.Combine(_root, "a");
        using var process = StartMpi(mpirun, 2, ["finetune", "--base", model, "--data", _corpus, "--out", output, "--iters", "1000000", "--batch", "2",
            "--rank", "2", "--eval-every", "5", "--eval-iters", "1"], ("LORA_TEST_JOB", job));
        var collected = Collect(process);
        var token = TestContext.Current.CancellationToken;
        // Both ranks are in the training loop once rank 0 has written a checkpoint (every step needs both).
        var started = Stopwatch.StartNew();
        while (!Directory.Exists(Path.Combine(output, "checkpoints")) && started.Elapsed < TimeSpan.FromSeconds(60) && !process.HasExited)
            await Task.Delay(100, token);
        Assert.False(process.HasExited, "the job ended before the kill: " + collected());
        int rank1 = FindRank(job, 1) ?? throw new InvalidOperationException("rank 1's process was not found");
        Process.GetProcessById(rank1).Kill();
        var killed = Stopwatch.StartNew();
        using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(token))
        {
            timeout.CancelAfter(TimeSpan.FromSeconds(20));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("the job still ran 20 s after rank 1 was killed: " + collected());
            }
        }
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(10), $"the job took {killed.Elapsed.TotalSeconds:0.0} s to end");
        Assert.NotEqual(0, process.ExitCode);
        string text = collected();
        Assert.Contains("rank 1", text);
        Assert.Null(FindRank(job, 0)); // no rank is left behind
    }

    // ---- helpers ----

    private static string RequireMpirun()
    {
        string? found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(folder => Path.Combine(folder, "mpirun")).FirstOrDefault(File.Exists);
        if (found is not null) return found;
        const string why = "mpirun is not installed (Debian: openmpi-bin; .ci/run installs it)";
        if (Environment.GetEnvironmentVariable("LORA_REQUIRE_MPI") == "1") Assert.Fail(why + ", and LORA_REQUIRE_MPI=1 (set by .ci/run) requires these tests");
        Assert.Skip(why);
        return "";
    }

    private static int InProcess(string[] args)
    {
        var output = new StringWriter();
        int code = LoraApp.Run(args, Terminal.ForWriters(output, output));
        if (code != 0) throw new InvalidOperationException($"lora {string.Join(' ', args)} exited {code}: {output}");
        return code;
    }

    private static Process StartMpi(string mpirun, int ranks, string[] args, params (string Name, string Value)[] environment)
    {
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        var start = new ProcessStartInfo(mpirun) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe", dotnet,
                     Path.Combine(AppContext.BaseDirectory, "lora.dll") }.Concat(args))
            start.ArgumentList.Add(arg);
        if (Environment.UserName == "root" || Environment.GetEnvironmentVariable("USER") == "root")
        {
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        }
        // Containers often forbid the cross-process memory reads of shared memory's single-copy path.
        start.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
        start.Environment["LORA_DEVICE"] = "cpu";
        foreach (var (name, value) in environment) start.Environment[name] = value;
        return Process.Start(start)!;
    }

    private static Func<string> Collect(Process process)
    {
        var text = new System.Text.StringBuilder();
        void Add(object? sender, DataReceivedEventArgs e)
        {
            if (e.Data is null) return;
            lock (text) text.AppendLine(e.Data);
        }
        process.OutputDataReceived += Add;
        process.ErrorDataReceived += Add;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return () =>
        {
            lock (text) return text.ToString();
        };
    }

    private static (int Code, string Output) Mpi(string mpirun, int ranks, string[] args)
    {
        using var process = StartMpi(mpirun, ranks, args);
        var collected = Collect(process);
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun -np {ranks} lora {string.Join(' ', args)} still ran after 3 minutes: {collected()}");
        }
        process.WaitForExit(); // drains the output
        return (process.ExitCode, collected());
    }

    /// <summary>The process of rank <paramref name="rank"/> of the job marked <paramref name="job"/>, from /proc.</summary>
    private static int? FindRank(string job, int rank)
    {
        foreach (string folder in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(folder), out int pid)) continue;
            string environ;
            try
            {
                environ = File.ReadAllText(Path.Combine(folder, "environ"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            var variables = environ.Split('\0');
            if (variables.Contains("LORA_TEST_JOB=" + job) && variables.Contains($"OMPI_COMM_WORLD_RANK={rank}")) return pid;
        }
        return null;
    }

    /// <summary>A copy of run <paramref name="from"/> whose latest checkpoint is the one of step <paramref name="step"/>, its outputs removed.</summary>
    private string RewoundCopy(string from, string name, int step)
    {
        string to = Path.Combine(_root, name);
        string checkpoints = Path.Combine(to, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        string folder = $"step-{step:D7}";
        Directory.CreateDirectory(Path.Combine(checkpoints, folder));
        foreach (string file in Directory.GetFiles(Path.Combine(from, "checkpoints", folder)))
            File.Copy(file, Path.Combine(checkpoints, folder, Path.GetFileName(file)));
        File.WriteAllText(Path.Combine(checkpoints, "latest"), folder);
        return to;
    }

    private sealed record RunSummary(int Ranks, double AllReduceMs, double[] Losses);

    private static RunSummary Summary(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var losses = new List<double> { root.GetProperty("train_loss").GetDouble(), root.GetProperty("val_loss").GetDouble() };
        foreach (var evaluation in root.GetProperty("evaluations").EnumerateArray())
        {
            losses.Add(evaluation.GetProperty("train_loss").GetDouble());
            losses.Add(evaluation.GetProperty("val_loss").GetDouble());
        }
        return new RunSummary(root.GetProperty("ranks").GetInt32(), root.GetProperty("allreduce_ms_median").GetDouble(), [.. losses]);
    }

    private static void AssertClose(double[] expected, double[] actual, double relative, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= relative * Math.Abs(expected[i]),
                $"{what}[{i}]: {actual[i]:R} against {expected[i]:R} (relative {Math.Abs(expected[i] - actual[i]) / Math.Abs(expected[i]):E2})");
    }

    /// <summary>Every tensor of two safetensors files, the same names and shapes, ‖a − b‖ ≤ relative · ‖a‖.</summary>
    private static void AssertSameTensors(string expectedPath, string actualPath, double relative)
    {
        using var expected = SafetensorsReader.Open(expectedPath);
        using var actual = SafetensorsReader.Open(actualPath);
        Assert.Equal(expected.Entries.Select(e => e.Name).Order(), actual.Entries.Select(e => e.Name).Order());
        foreach (var entry in expected.Entries)
        {
            var a = new float[entry.ElementCount];
            var b = new float[entry.ElementCount];
            expected.ReadFloat32(entry.Name, a);
            actual.ReadFloat32(entry.Name, b);
            double difference = 0, norm = 0;
            for (int i = 0; i < a.Length; i++)
            {
                difference += (a[i] - (double)b[i]) * (a[i] - (double)b[i]);
                norm += a[i] * (double)a[i];
            }
            Assert.True(Math.Sqrt(difference) <= relative * Math.Sqrt(norm),
                $"{entry.Name}: ‖a − b‖ / ‖a‖ = {Math.Sqrt(difference) / Math.Sqrt(norm):E2}, above {relative:E0}");
        }
    }
}
