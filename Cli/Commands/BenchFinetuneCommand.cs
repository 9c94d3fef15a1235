using System.CommandLine;
using LoraRuntime.Cli.Bench;
using Spectre.Console;

namespace LoraRuntime.Cli.Commands;

/// <summary><c>lora bench finetune</c>: one LoRA fine-tuning step on random-weight models of real shapes.</summary>
internal static class BenchFinetuneCommand
{
    /// <summary>The command.</summary>
    public static Command Create(Terminal terminal)
    {
        var models = new Option<string>("--models")
        {
            Description = $"comma-separated models with random weights: {LatencyModel.Presets}, or LxNHxCxVxT", DefaultValueFactory = _ => "smollm2-135m",
        };
        var batch = new Option<int>("--batch") { Description = "B, sequences per step", DefaultValueFactory = _ => 1 };
        var time = new Option<int>("--time") { Description = "T, tokens per sequence", DefaultValueFactory = _ => 256 };
        var rank = new Option<int>("--rank") { Description = "R of the adapter", DefaultValueFactory = _ => 16 };
        var targets = new Option<string>("--targets") { Description = "the projections adapted (PEFT target_modules)", DefaultValueFactory = _ => "q,k,v,o" };
        var quantize = new Option<string>("--quantize")
        {
            Description = "the frozen base as f32, f16, bf16, q8_0, q4_0 or nf4 (QLoRA; the model's name gets \":FORMAT\")", DefaultValueFactory = _ => "f32",
            HelpName = "FORMAT",
        };
        var common = new BenchOptions();
        var command = new Command("finetune",
            "Time one LoRA fine-tuning step (forward, backward through the frozen base, AdamW on the adapter) on random-weight models")
        {
            models, batch, time, rank, targets, quantize,
        };
        common.AddTo(command);
        command.SetAction(parse => CliAction.Run(terminal, () =>
        {
            int t = BenchData.Positive(parse.GetValue(time), "--time");
            var list = (parse.GetValue(models) ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(m => LatencyModel.Parse(m, t)).ToArray();
            if (list.Length == 0) throw new UsageException("--models: expected at least one model");
            var storage = QuantizeOption.Read(parse.GetValue(quantize), backend: null);
            if (storage.Format is { } format && format != WeightFormat.F32)
                list = list.Select(m => m with { Name = $"{m.Name}:{format.Name()}" }).ToArray();
            var names = (parse.GetValue(targets) ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            return Execute(terminal, list, BenchData.Positive(parse.GetValue(batch), "--batch"), t, BenchData.Positive(parse.GetValue(rank), "--rank"),
                names, common.Read(parse), storage);
        }));
        return command;
    }

    private static int Execute(Terminal terminal, IReadOnlyList<LatencyModel> models, int batch, int time, int rank, IReadOnlyList<string> targets,
        BenchSettings settings, Layers.WeightStorage storage)
    {
        using var backend = BenchOptions.CreateBackend(settings.Device);
        string title = $"LoRA fine-tuning step, B {batch} × T {time}, R {rank} on {string.Join(",", targets)}, on {backend.Name} " +
            $"(kernel {GemmBench.KernelName(backend)}); trans = model, ratio = tokens/s, reserved = bytes held";
        var records = new List<BenchRecord>();
        foreach (var model in models)
        {
            var record = FinetuneBench.Run(backend, model, batch, time, rank, targets, settings.Warmup, settings.Reps, storage);
            records.Add(record);
            terminal.Error.MarkupLine(Markup.Escape(
                $"{model.Name}: {record.MedianMs:0.0} ms a step, {record.Ratio:0.0} tokens/s, {record.Gflops:0.0} GFLOP/s, {record.ReservedBytes / 1048576.0:0} MiB held"));
        }
        return BenchGemmCommand.Report(terminal, title, records, settings);
    }
}
