using System.CommandLine;
using System.Text;
using LoraRuntime.Distributed;
using LoraRuntime.IO;
using LoraRuntime.Layers;
using LoraRuntime.Layers.Training;
using Spectre.Console;

namespace LoraRuntime.Cli.Training;

/// <summary>The optimisation options shared by <c>train</c> and <c>finetune</c>, and their checks.</summary>
internal sealed class TrainingOptions
{
    public Option<int> Batch { get; } = new("--batch") { Description = "sequences per micro-batch (B)", DefaultValueFactory = _ => 12 };
    public Option<int> Iters { get; }
    public Option<double> Lr { get; } = new("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 1e-3 };

    /// <summary>The options, with <paramref name="iterations"/> steps by default (2000 pre-training, fewer to fine-tune).</summary>
    public TrainingOptions(int iterations = 2000) =>
        Iters = new("--iters") { Description = "optimizer steps", DefaultValueFactory = _ => iterations };
    public Option<double> MinLr { get; } = new("--min-lr") { Description = "final learning rate (cosine decay)", DefaultValueFactory = _ => 1e-4 };
    public Option<int> Warmup { get; } = new("--warmup") { Description = "linear warm-up steps", DefaultValueFactory = _ => 100 };
    public Option<float> WeightDecay { get; } = new("--weight-decay") { Description = "AdamW decoupled weight decay (matrices only)", DefaultValueFactory = _ => 0.1f };
    public Option<float> Clip { get; } = new("--clip") { Description = "clip gradients to this global norm (0: off)", DefaultValueFactory = _ => 1f };
    public Option<int> Accumulation { get; } = new("--grad-accum") { Description = "micro-batches per step", DefaultValueFactory = _ => 1 };
    public Option<int> EvalEvery { get; } = new("--eval-every") { Description = "steps between evaluations and checkpoints", DefaultValueFactory = _ => 250 };
    public Option<int> EvalIters { get; } = new("--eval-iters") { Description = "batches per evaluation", DefaultValueFactory = _ => 20 };
    public Option<ulong> Seed { get; } = new("--seed") { Description = "seed of initialisation and batch sampling", DefaultValueFactory = _ => 1337UL };
    public Option<string> OnNonFinite { get; } = new("--on-nonfinite") { Description = "stop or skip when a loss or gradient norm is NaN/Inf", DefaultValueFactory = _ => "stop" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Batch, Iters, Lr, MinLr, Warmup, WeightDecay, Clip, Accumulation, EvalEvery, EvalIters, Seed, OnNonFinite })
            command.Add(option);
    }

    public TrainOptions Read(ParseResult parse)
    {
        string policy = parse.GetValue(OnNonFinite) ?? "stop";
        var options = new TrainOptions
        {
            Batch = parse.GetValue(Batch), Iterations = parse.GetValue(Iters), LearningRate = parse.GetValue(Lr),
            MinLearningRate = parse.GetValue(MinLr), Warmup = parse.GetValue(Warmup), WeightDecay = parse.GetValue(WeightDecay),
            Clip = parse.GetValue(Clip), Accumulation = parse.GetValue(Accumulation), EvalEvery = parse.GetValue(EvalEvery),
            EvalIterations = parse.GetValue(EvalIters), Seed = parse.GetValue(Seed),
            NonFinite = policy switch
            {
                "stop" => NonFinitePolicy.Stop,
                "skip" => NonFinitePolicy.Skip,
                _ => throw new UsageException($"--on-nonfinite: expected stop or skip; got '{policy}'"),
            },
        };
        // Each number named by its option, before the run's own checks (which name the fields, not the flags).
        if (!(options.LearningRate > 0) || !double.IsFinite(options.LearningRate)) throw new UsageException($"--lr: expected a finite value > 0; got {options.LearningRate}");
        if (!(options.MinLearningRate >= 0) || !double.IsFinite(options.MinLearningRate))
            throw new UsageException($"--min-lr: expected a finite value ≥ 0; got {options.MinLearningRate}");
        if (!(options.WeightDecay >= 0) || !float.IsFinite(options.WeightDecay))
            throw new UsageException($"--weight-decay: expected a finite value ≥ 0; got {options.WeightDecay}");
        if (!(options.Clip >= 0) || !float.IsFinite(options.Clip)) throw new UsageException($"--clip: expected a finite value ≥ 0; got {options.Clip}");
        Check(options.Validate, "training options");
        return options;
    }

    /// <summary>Runs a validation and reports its ArgumentException as a usage error naming <paramref name="what"/>.</summary>
    public static void Check(Action validate, string what)
    {
        try
        {
            validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"{what}: {e.Message}");
        }
    }

    /// <summary>The largest corpus read into memory: its text and its token ids take about 6 bytes a byte of file.</summary>
    public const long MaxCorpusBytes = 1L << 30;

    /// <summary>
    /// The text of a corpus file: a regular file (not a device, pipe or folder) of at most <see cref="MaxCorpusBytes"/>,
    /// in UTF-8 (a byte-order mark allowed); bytes that are not UTF-8 are refused with their offset, never replaced.
    /// </summary>
    public static string ReadCorpus(string path, string option)
    {
        if (Directory.Exists(path)) throw new UsageException($"{option}: '{path}' is a folder; expected a text file");
        if (!File.Exists(path)) throw new UsageException($"{option}: no file '{path}'");
        // A device, pipe or socket reports a length of 0 (so does /proc): refused before it is opened, which could block.
        long length = InputFiles.LengthOf(path);
        if (length == 0) throw new UsageException($"{option}: '{path}' is empty, or not a regular file (a device, pipe or socket); expected a text file");
        if (length > MaxCorpusBytes)
            throw new UsageException($"{option}: '{path}' is {length:N0} bytes; at most {MaxCorpusBytes:N0} are read into memory");
        byte[] bytes = File.ReadAllBytes(path);
        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new UsageException($"{option}: '{path}' is not UTF-8: byte 0x{(e.BytesUnknown is [var b, ..] ? b : 0):X2} at offset {e.Index:N0} is not valid " +
                "(convert the file, e.g. iconv -f latin1 -t utf-8)");
        }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        if (text.Length < 1000) throw new UsageException($"{option}: '{path}' holds {text.Length} characters; a corpus needs at least 1000");
        return text;
    }

    /// <summary>The sequences of each batch this rank trains on: all of --batch in one process, its share under mpirun.</summary>
    public static int RowsOfRank(TrainOptions options, Communicator world)
    {
        if (options.Batch < world.Size)
            throw new UsageException($"--batch: {options.Batch} sequences cannot be shared by {world.Size} ranks; each rank needs at least one (give --batch ≥ {world.Size})");
        return BatchShard.Of(options.Batch, world.Rank, world.Size).Rows;
    }

    /// <summary>
    /// The communicator of the gradients: NCCL for a CUDA backend in a job of several ranks (where libnccl loads), the
    /// job's world otherwise; the scope disposes it when it is not the world itself.
    /// </summary>
    public static OwnedCommunicator GradientCommunicator(Communicator world, Backend backend) => new(Communicator.ForBackend(world, backend), world);

    /// <summary>A communicator and whether the scope owns it.</summary>
    public readonly struct OwnedCommunicator(Communicator value, Communicator world) : IDisposable
    {
        public Communicator Value { get; } = value;

        public void Dispose()
        {
            if (!ReferenceEquals(Value, world)) Value.Dispose();
        }
    }

    /// <summary>", data parallel over N ranks (B rows each)" under mpirun; empty in one process.</summary>
    public static string RanksNote(Communicator world) =>
        world.IsDistributed ? $"; data parallel over {world.Size} ranks ({world.Transport}, {Markup.Escape(world.Library)})" : "";

    public static (TokenBatches Train, TokenBatches Validation) Split(int[] tokens, int blockSize)
    {
        try
        {
            return TokenBatches.Split(tokens, blockSize);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--data: {e.Message}");
        }
    }

    public static void Report(Terminal terminal, TrainingSummary s, string outDir, string files = "model.safetensors, config.json, loss.png, checkpoints/")
    {
        terminal.Out.MarkupLine(
            $"{s.Iterations} steps: train loss [bold]{s.TrainLoss:0.0000}[/], validation loss [bold]{s.ValidationLoss:0.0000}[/], " +
            $"{s.MedianMsPerIteration:0.00} ms/step (median), {s.TokensPerSecond:N0} tokens/s" +
            (s.SkippedSteps > 0 ? $", {s.SkippedSteps} steps skipped" : ""));
        terminal.Out.MarkupLine($"wrote [blue]{Markup.Escape(Path.GetFullPath(outDir))}[/] ({Markup.Escape(files)})");
    }
}
