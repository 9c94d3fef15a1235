using System.Net;
using System.Text;
using LoraRuntime.Cli;
using LoraRuntime.Cli.Serve;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Text;
using LoraRuntime.Tests.Serving;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary>
/// What a careless user and a hostile client tried, class by class: text that is not what it seems (emoji, surrogates,
/// Latin-1, devices), sizes the machine cannot hold, non-finite weights, adapter names and registry bounds, and the
/// top-level handler — each case ends with its exit code, one line naming the argument, and nothing written.
/// </summary>
public sealed class HardeningTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "lora-hardening-" + Guid.NewGuid().ToString("N"));
    private readonly StringWriter _out = new(), _error = new();

    public HardeningTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private int Run(params string[] args)
    {
        _out.GetStringBuilder().Clear();
        _error.GetStringBuilder().Clear();
        return LoraApp.Run(args, Terminal.ForWriters(_out, _error));
    }

    /// <summary>The error: one line starting "error:", the last of the error output (progress may come before it), no stack trace.</summary>
    private string OneLine()
    {
        string all = _error.ToString();
        Assert.DoesNotContain("   at ", all);
        string last = all.TrimEnd('\n', '\r').Split('\n')[^1];
        Assert.StartsWith("error: ", last);
        return last;
    }

    private string Corpus(string name, string text)
    {
        string path = Path.Combine(_root, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static readonly string[] Small = ["--iters", "2", "--layers", "1", "--embd", "16", "--heads", "2", "--block", "16", "--batch", "2", "--eval-every", "2", "--eval-iters", "1"];

    [Fact]
    public void A_corpus_with_emoji_trains_a_model_that_loads_and_generates_them()
    {
        string corpus = Corpus("emoji.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..20_000] + "\n😀 🎭 👑 🌹 👩‍👩‍👧\n");
        string model = Path.Combine(_root, "emoji-model");
        Assert.True(Run(["train", "--data", corpus, "--out", model, .. Small]) == 0, _error.ToString());
        Assert.True(Run("generate", "--base", model, "--prompt", "A👑🌹", "--tokens", "3") == 0, _error.ToString());
        Assert.StartsWith("A👑🌹", _out.ToString());
        var tokenizer = new CharTokenizer(new string("ab😀c"));
        Assert.Equal([0, 2, 1], tokenizer.Encode("a😀b"));
        Assert.Equal("😀", tokenizer.Decode([2]));
        Assert.Contains("unpaired UTF-16 surrogate", Assert.Throws<ArgumentException>(() => tokenizer.Encode("a\ud83d")).Message);
    }

    public static TheoryData<string, string> BadCorpora => new()
    {
        { "latin1", "not UTF-8: byte 0xE9" },
        { "dev-zero", "not a regular file" },
        { "folder", "is a folder" },
        { "empty", "not a regular file" },
        { "short", "at least 1000" },
        { "missing", "no file" },
    };

    [Theory]
    [MemberData(nameof(BadCorpora))]
    public void Corpora_that_are_not_utf8_text_files_are_refused_naming_the_option(string kind, string expected)
    {
        string path = Path.Combine(_root, kind);
        switch (kind)
        {
            case "latin1":
                File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(new string('a', 1200)), (byte)'c', (byte)'a', (byte)'f', 0xE9]);
                break;
            case "dev-zero":
                path = "/dev/zero";
                break;
            case "folder":
                Directory.CreateDirectory(path);
                break;
            case "empty":
                File.WriteAllText(path, "");
                break;
            case "short":
                File.WriteAllText(path, "hello");
                break;
        }
        string output = Path.Combine(_root, "out-" + kind);
        Assert.Equal(2, Run(["train", "--data", path, "--out", output, .. Small]));
        Assert.Contains("--data", OneLine());
        Assert.Contains(expected, _error.ToString());
        Assert.False(Directory.Exists(output));
    }

    public static TheoryData<string[], string> HugeShapes => new()
    {
        { ["--layers", "1000000000"], "not enough memory" },
        { ["--embd", "10000000", "--heads", "1"], "a weight matrix may hold at most" },
        { ["--block", "100000000"], "elements" },
        { ["--layers", "64", "--embd", "8192", "--heads", "64", "--block", "64"], "needs about" },
    };

    [Theory]
    [MemberData(nameof(HugeShapes))]
    public void Shapes_the_machine_cannot_hold_are_refused_before_anything_is_allocated(string[] shape, string expected)
    {
        string output = Path.Combine(_root, "huge");
        long before = GC.GetTotalAllocatedBytes(precise: true);
        int code = Run(["train", "--data", Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]), "--out", output, "--iters", "2", .. shape]);
        Assert.Equal(2, code);
        Assert.Contains(expected, OneLine());
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 256 << 20, "the refusal came after large allocations");
        Assert.False(Directory.Exists(output));
        // The same from a config.json given to generate.
        string model = Path.Combine(_root, "small");
        if (!Directory.Exists(model)) Assert.Equal(0, Run(["train", "--data", Corpus("c2.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]), "--out", model, .. Small]));
        string config = File.ReadAllText(Path.Combine(model, GptFiles.ConfigFile));
        string tampered = Path.Combine(_root, "tampered");
        Directory.CreateDirectory(tampered);
        File.Copy(Path.Combine(model, GptFiles.ModelFile), Path.Combine(tampered, GptFiles.ModelFile), overwrite: true);
        File.WriteAllText(Path.Combine(tampered, GptFiles.ConfigFile), config.Replace("\"n_layer\": 1", "\"n_layer\": 1000000000"));
        Assert.Equal(2, Run("generate", "--base", tampered, "--prompt", "A", "--tokens", "1"));
        Assert.Contains("not enough memory", OneLine());
    }

    [Fact]
    public void Non_finite_weights_are_refused_at_load_everywhere_naming_the_tensor()
    {
        string model = Path.Combine(_root, "model");
        Assert.Equal(0, Run(["train", "--data", Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]), "--out", model, .. Small]));
        string adapter = Path.Combine(_root, "adapter");
        Assert.True(Run(["finetune", "--base", model, "--data", Corpus("d.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]), "--out", adapter,
            "--iters", "2", "--rank", "2", "--batch", "2", "--eval-every", "2", "--eval-iters", "1"]) == 0, _error.ToString());
        // A NaN in an adapter: generate, serve's loading, combine and merge refuse it.
        string broken = Path.Combine(_root, "nan-adapter");
        Directory.CreateDirectory(broken);
        File.Copy(Path.Combine(adapter, "adapter_config.json"), Path.Combine(broken, "adapter_config.json"));
        Poison(Path.Combine(adapter, "adapter_model.safetensors"), Path.Combine(broken, "adapter_model.safetensors"), float.NaN);
        foreach (string[] args in new[]
        {
            new[] { "generate", "--base", model, "--adapter", broken, "--prompt", "A", "--tokens", "1" },
            new[] { "merge", "--base", model, "--adapter", broken, "--out", Path.Combine(_root, "merged") },
            new[] { "combine", "--adapter", broken, "--adapter", adapter, "--out", Path.Combine(_root, "combined") },
        })
        {
            Assert.Equal(2, Run(args));
            Assert.Contains("non-finite", OneLine());
        }
        Assert.False(Directory.Exists(Path.Combine(_root, "merged")));
        Assert.False(Directory.Exists(Path.Combine(_root, "combined")));
        using var backend = new LoraRuntime.Cpu.CpuBackend();
        var e = Assert.ThrowsAny<Exception>(() => ServingHost.Open(backend, model, [("bad", broken)], new ServeOptions(Slots: 1, MaxStepTokens: 8, MaxRank: 4)));
        Assert.Contains("non-finite", e.Message);
        // And an infinity in the model itself.
        string poisoned = Path.Combine(_root, "inf-model");
        Directory.CreateDirectory(poisoned);
        File.Copy(Path.Combine(model, GptFiles.ConfigFile), Path.Combine(poisoned, GptFiles.ConfigFile));
        Poison(Path.Combine(model, GptFiles.ModelFile), Path.Combine(poisoned, GptFiles.ModelFile), float.PositiveInfinity);
        Assert.Equal(2, Run("generate", "--base", poisoned, "--prompt", "A", "--tokens", "1"));
        Assert.Contains("holds a non-finite value", OneLine());
    }

    /// <summary>Copies a safetensors file with its last tensor's last element replaced by <paramref name="value"/>.</summary>
    private static void Poison(string from, string to, float value)
    {
        var writer = new SafetensorsWriter();
        using (var reader = SafetensorsReader.Open(from))
        {
            var entries = reader.Entries.ToList();
            foreach (var entry in entries)
            {
                var values = new float[entry.ElementCount];
                reader.ReadFloat32(entry.Name, values);
                if (entry == entries[^1]) values[^1] = value;
                writer.Add(entry.Name, values, entry.Shape.Select(d => (int)d).ToArray());
            }
        }
        writer.Save(to);
    }

    public static TheoryData<string> BadNames => new() { ".", "..", "a/b", "", " x", "x y", "a\u202eb", "a\u200bb", "é", new string('a', 65), "-x" };

    [Theory]
    [MemberData(nameof(BadNames))]
    public async Task Adapter_names_outside_a_safe_set_and_loads_past_the_registry_bounds_are_refused(string name)
    {
        using var f = new ServingFixture();
        string modelDir = Path.Combine(f.Root, "model");
        GptFiles.Save(f.Served, new CharTokenizer("abcdefghijklm"), modelDir);
        await using var server = await TestServer.StartAsync(ServingHost.Open(f.Backend, modelDir, [], new ServeOptions(Slots: 1, MaxStepTokens: 8, MaxRank: 8,
            AllowAdapterLoading: true, AdapterRoot: f.Root, MaxAdapters: 2)));
        var (host, http) = (server.Host, server.Http);
        async Task<(HttpStatusCode, string)> Load(string n, string path)
        {
            using var content = new StringContent(System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["name"] = n, ["path"] = path }),
                Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/adapters", content, TestContext.Current.CancellationToken);
            return (response.StatusCode, await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
        }
        var (status, body) = await Load(name, "qv");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("name: expected 1 to 64", body);
        Assert.DoesNotContain("\u202e", body);
        Assert.Empty(host.Bank.Names);
        // The registry: two adapters at most; the third is refused until one is unloaded.
        Assert.Equal(HttpStatusCode.Created, (await Load("one", "qv")).Item1);
        Assert.Equal(HttpStatusCode.Created, (await Load("two", "all")).Item1);
        var (full, message) = await Load("three", "mlp");
        Assert.Equal(HttpStatusCode.Conflict, full);
        Assert.Contains("maximum of 2 adapters", message);
    }

    [Fact]
    public async Task Files_that_are_devices_or_too_large_are_refused_before_they_are_read()
    {
        string dir = Path.Combine(_root, "adapter-dev");
        Directory.CreateDirectory(dir);
        File.CreateSymbolicLink(Path.Combine(dir, "adapter_config.json"), "/dev/zero");
        Assert.Contains("not a regular file", Assert.Throws<InvalidDataException>(() => InputFiles.ReadAllBytes(Path.Combine(dir, "adapter_config.json"))).Message);
        string big = Path.Combine(_root, "big.json");
        using (var stream = File.Create(big)) stream.SetLength(InputFiles.ConfigBytes + 1);
        Assert.Contains("at most", Assert.Throws<InvalidDataException>(() => InputFiles.ReadAllBytes(big)).Message);
        string fifo = Path.Combine(_root, "fifo.safetensors");
        if (!OperatingSystem.IsWindows() && System.Diagnostics.Process.Start("mkfifo", fifo) is { } p && p.WaitForExit(5000) && File.Exists(fifo))
        {
            var opened = Task.Run(() => Assert.Throws<InvalidDataException>(() => SafetensorsReader.Open(fifo)), TestContext.Current.CancellationToken);
            await opened.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public void Failures_of_the_run_end_in_one_line_and_exit_1_and_bad_input_in_exit_2()
    {
        string corpus = Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]);
        // Divergence: a learning rate of 10⁶.
        Assert.True(Run(["train", "--data", corpus, "--out", Path.Combine(_root, "diverged"), "--lr", "1e6", "--iters", "40", "--layers", "1", "--embd", "16",
            "--heads", "2", "--block", "16", "--batch", "2", "--eval-every", "100"]) == 1, _out.ToString() + _error);
        Assert.Contains("the loss is NaN", OneLine());
        // A weight decay that is not a number, and serve on a URL that is not one.
        Assert.Equal(2, Run(["train", "--data", corpus, "--out", Path.Combine(_root, "wd"), "--weight-decay", "NaN", .. Small]));
        Assert.Contains("--weight-decay", OneLine());
        string model = Path.Combine(_root, "m");
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, .. Small]));
        Assert.Equal(2, Run("serve", "--base", model, "--urls", "garbage"));
        Assert.Contains("--urls", OneLine());
        // A port in use.
        var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((IPEndPoint)taken.LocalEndpoint).Port;
            Assert.Equal(2, Run("serve", "--base", model, "--urls", $"http://127.0.0.1:{port}"));
            Assert.Contains("address already in use", OneLine());
        }
        finally
        {
            taken.Stop();
        }
        // A step of 10⁸ tokens: refused by the reservation check, not by an exhausted machine.
        Assert.Equal(2, Run("serve", "--base", model, "--max-step-tokens", "100000000", "--urls", "http://127.0.0.1:0"));
        Assert.Contains("lower the slots", OneLine());
        // Resuming a run past its --iters says so instead of reporting steps it did not take.
        string run = Path.Combine(_root, "run");
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", run, .. Small[..^2], "--eval-iters", "1"]));
        Assert.Equal(2, Run(["train", "--data", corpus, "--out", run, "--resume", "--iters", "1", "--layers", "1", "--embd", "16", "--heads", "2", "--block", "16",
            "--batch", "2"]));
        Assert.Contains("already past --iters 1", OneLine());
    }

    [Fact]
    public void Output_locations_are_checked_before_the_work_and_never_overwrite_an_input()
    {
        string corpus = Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]);
        string model = Path.Combine(_root, "m");
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, .. Small]));
        string adapter = Path.Combine(_root, "a");
        Assert.Equal(0, Run(["finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "2", "--rank", "2", "--batch", "2", "--eval-every", "2",
            "--eval-iters", "1"]));
        string file = Path.Combine(_root, "a-file");
        File.WriteAllText(file, "keep me");
        var before = Directory.GetFileSystemEntries(_root, "*", SearchOption.AllDirectories).Select(p => (p, File.Exists(p) ? File.GetLastWriteTimeUtc(p) : default))
            .ToHashSet();
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["train", "--data", corpus, "--out", file, .. Small], "is a file"),
            (["train", "--data", corpus, "--out", Path.Combine(file, "below"), .. Small], "is a file"),
            (["train", "--data", corpus, "--out", "/", .. Small], "root of the file system"),
            (["finetune", "--base", model, "--data", corpus, "--out", model, "--iters", "2"], "the --base directory"),
            (["finetune", "--base", model, "--data", corpus, "--out", Path.Combine(model, "checkpoints"), "--iters", "2"], "inside the --base directory"),
            (["merge", "--base", model, "--adapter", adapter, "--out", model], "the --base directory"),
            (["merge", "--base", model, "--adapter", adapter, "--out", adapter], "the --adapter directory"),
            (["compress", "--model", model, "--rank", "2", "--out", model], "the --model directory"),
            (["extract", "--base", model, "--tuned", model, "--rank", "2", "--out", Path.Combine(model, "x")], "inside the --base directory"),
            (["combine", "--adapter", adapter, "--adapter", adapter, "--out", adapter], "the --adapter directory"),
        })
        {
            Assert.True(Run(args) == 2, $"{string.Join(' ', args)}: {_error}");
            string line = OneLine();
            Assert.Contains("--out", line);
            Assert.Contains(expected, line);
        }
        var after = Directory.GetFileSystemEntries(_root, "*", SearchOption.AllDirectories).Select(p => (p, File.Exists(p) ? File.GetLastWriteTimeUtc(p) : default))
            .ToHashSet();
        Assert.Equal(before, after); // nothing written, nothing touched
        Assert.Equal("keep me", File.ReadAllText(file));
    }

    [Fact]
    public async Task Server_errors_speak_of_the_request_not_of_dotnet_types()
    {
        using var f = new ServingFixture();
        string modelDir = Path.Combine(f.Root, "model");
        GptFiles.Save(f.Served, new CharTokenizer("abcdefghijklm"), modelDir);
        await using var server = await TestServer.StartAsync(ServingHost.Open(f.Backend, modelDir, [], new ServeOptions(Slots: 1, MaxStepTokens: 8, MaxRank: 8)));
        var http = server.Http;
        foreach (var (body, expected) in new[]
        {
            ("""{"model": "base", "prompt": "abc", "max_tokens": "many"}""", "max_tokens: a value of the wrong type"),
            ("""{"model": "base", "prompt": "abc", "seed": -3}""", "seed: a value of the wrong type"),
            ("""{"model": "base", "prompt": "abc", "top_k": -1}""", "\"param\":\"top_k\""),
            ("""{"model": "base", "prompt": "abc", "temperature": -1}""", "\"param\":\"temperature\""),
            ("""{"model": "base", "prompt": """, "not valid JSON"),
        })
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/v1/completions", content, TestContext.Current.CancellationToken);
            string text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains(expected, text);
            Assert.DoesNotContain("System.", text);
            Assert.DoesNotContain("LoraRuntime.", text);
        }
    }

    [Fact]
    public async Task A_merge_killed_at_any_point_leaves_a_whole_model_or_none_and_the_next_run_cleans_up()
    {
        string corpus = Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]);
        string model = Path.Combine(_root, "m"), adapter = Path.Combine(_root, "a");
        // Wide enough that writing it takes a while (≈ 25 MB).
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, "--iters", "1", "--layers", "6", "--embd", "384", "--heads", "6", "--block", "16",
            "--batch", "2", "--eval-every", "1", "--eval-iters", "1"]));
        Assert.Equal(0, Run(["finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "1", "--rank", "2", "--batch", "2", "--eval-every", "1",
            "--eval-iters", "1"]));
        string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        string lora = Path.Combine(AppContext.BaseDirectory, "lora.dll");
        var random = new Random(7);
        int whole = 0, none = 0;
        for (int trial = 0; trial < 8; trial++)
        {
            string output = Path.Combine(_root, "merged-" + trial);
            var start = new System.Diagnostics.ProcessStartInfo(dotnet) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in new[] { lora, "merge", "--base", model, "--adapter", adapter, "--out", output, "--device", "cpu" }) start.ArgumentList.Add(arg);
            using var process = System.Diagnostics.Process.Start(start)!;
            await Task.Delay(random.Next(40, 400), TestContext.Current.CancellationToken); // the whole merge takes about 0.3 s
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(TestContext.Current.CancellationToken);
            if (!Directory.Exists(output))
            {
                none++;
                continue;
            }
            whole++;
            using var backend = new LoraRuntime.Cpu.CpuBackend();
            var (loaded, _, _) = ModelDirectory.Load(backend, output, maxBatch: 1); // a partial model would not load
            loaded.Dispose();
        }
        Assert.True(whole + none == 8 && none > 0, $"{whole} whole, {none} none: no kill landed before the end");
        // What killed runs left (temporary folders and files) goes at the next write to the same places.
        for (int trial = 0; trial < 8; trial++)
        {
            string output = Path.Combine(_root, "merged-" + trial);
            if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
            Assert.Equal(0, Run("merge", "--base", model, "--adapter", adapter, "--out", output));
        }
        Assert.Empty(Directory.GetFileSystemEntries(_root, "*.partial"));
        Assert.Empty(Directory.GetFiles(_root, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void A_full_disk_is_refused_before_the_work_or_fails_it_in_one_line_leaving_no_partial_model()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("needs Linux's tmpfs");
        string corpus = Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]);
        string model = Path.Combine(_root, "m"), adapter = Path.Combine(_root, "a");
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, "--iters", "1", "--layers", "2", "--embd", "64", "--heads", "2", "--block", "16",
            "--batch", "2", "--eval-every", "1", "--eval-iters", "1"]));
        Assert.Equal(0, Run(["finetune", "--base", model, "--data", corpus, "--out", adapter, "--iters", "1", "--rank", "2", "--batch", "2", "--eval-every", "1",
            "--eval-iters", "1"]));
        // A small disk: 32 KiB, less than the model's weights (≈ 400 KiB) and than a loss plot.
        string disk = Path.Combine(_root, "disk");
        Directory.CreateDirectory(disk);
        using (var mount = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("mount", ["-t", "tmpfs", "-o", "size=32k", "tmpfs", disk])
            { RedirectStandardError = true })!)
        {
            mount.WaitForExit();
            if (mount.ExitCode != 0) Assert.Skip($"cannot mount a small tmpfs here ({mount.StandardError.ReadToEnd().Trim()}): needs root with CAP_SYS_ADMIN");
        }
        try
        {
            // What a merge writes is known: refused before the work, naming the space.
            string output = Path.Combine(disk, "merged");
            Assert.Equal(2, Run("merge", "--base", model, "--adapter", adapter, "--out", output));
            Assert.Contains("its file system has", OneLine());
            Assert.Empty(Directory.GetFileSystemEntries(disk));
            // A fine-tuning run's checkpoints and plot are not known in advance: the disk fills during the run, which ends in
            // one line, exit 1, and leaves no weights without their configuration (and no temporary folder).
            string tuned = Path.Combine(disk, "tuned");
            Assert.Equal(1, Run(["finetune", "--base", model, "--data", corpus, "--out", tuned, "--iters", "4", "--rank", "2", "--batch", "2", "--eval-every", "1",
                "--eval-iters", "1"]));
            Assert.Contains("the disk is full", OneLine());
            Assert.False(File.Exists(Path.Combine(tuned, "adapter_model.safetensors")) && !File.Exists(Path.Combine(tuned, "adapter_config.json")));
            Assert.Empty(Directory.GetFileSystemEntries(disk, "*.partial"));
            Assert.Empty(Directory.GetFiles(disk, "*.tmp", SearchOption.AllDirectories));
        }
        finally
        {
            using var umount = System.Diagnostics.Process.Start("umount", [disk]);
            umount.WaitForExit();
        }
    }

    [Fact]
    public void Reservations_and_earlier_runs_are_checked_before_the_work()
    {
        string corpus = Corpus("c.txt", LoraRuntime.Cli.Commands.DemoCommand.ReadCorpus()[..5000]);
        string model = Path.Combine(_root, "m");
        Assert.Equal(0, Run(["train", "--data", corpus, "--out", model, .. Small]));
        // Serving reservations past the machine: refused with the options to lower, before the server starts.
        Assert.Equal(2, Run("serve", "--base", model, "--max-rank", "10000000", "--urls", "http://127.0.0.1:0"));
        Assert.Contains("lower the slots, the step's tokens or the rank", OneLine());
        // Training again into a folder with an earlier run's checkpoints needs --resume; a checkpoint of another shape is refused.
        Assert.Equal(2, Run(["train", "--data", corpus, "--out", model, .. Small]));
        Assert.Contains("pass --resume", OneLine());
        Assert.Equal(2, Run(["train", "--data", corpus, "--out", model, "--resume", "--iters", "2", "--layers", "1", "--embd", "32", "--heads", "2", "--block", "16",
            "--batch", "2"]));
        string line = OneLine();
        Assert.Contains("--resume: the checkpoint", line);
        Assert.DoesNotContain("(Parameter", line);
    }
}
