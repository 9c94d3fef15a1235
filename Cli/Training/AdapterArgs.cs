using System.CommandLine;
using LoraRuntime.Layers.Adapters;

namespace LoraRuntime.Cli.Training;

/// <summary>The LoRA options of <c>finetune</c> and <c>demo</c>.</summary>
internal sealed class AdapterArgs
{
    public Option<int> Rank { get; } = new("--rank") { Description = "LoRA rank R", DefaultValueFactory = _ => 8 };
    public Option<float> Alpha { get; } = new("--alpha") { Description = "LoRA α (scale α/R, or α/√R with --rslora)", DefaultValueFactory = _ => 16f };
    public Option<string> Targets { get; } = new("--targets") { Description = "comma-separated targets: q, k, v, qkv, o, fc, proj, or all-linear", DefaultValueFactory = _ => "q,k,v,o" };
    public Option<string> Init { get; } = new("--init")
    {
        Description = "default (PEFT's Kaiming-uniform A, B = 0), gaussian, pissa (exact SVD), pissa_niter_K (randomized SVD, K power iterations) or olora (QR)",
        DefaultValueFactory = _ => "default",
    };
    public Option<float> Dropout { get; } = new("--lora-dropout") { Description = "dropout on the adapter's input", DefaultValueFactory = _ => 0f };
    public Option<bool> Dora { get; } = new("--dora") { Description = "weight-decomposed LoRA (a magnitude per output row)" };
    public Option<bool> RsLora { get; } = new("--rslora") { Description = "scale α/√R instead of α/R" };

    private static int? PissaIterations(string init) =>
        init.StartsWith("pissa_niter_", StringComparison.Ordinal) && int.TryParse(init["pissa_niter_".Length..], out int k) && k >= 0 ? k : null;

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Rank, Alpha, Targets, Init, Dropout, Dora, RsLora }) command.Add(option);
    }

    public LoraConfig Read(ParseResult parse, ulong seed)
    {
        string init = parse.GetValue(Init) ?? "default";
        var targets = (parse.GetValue(Targets) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return new LoraConfig
        {
            TargetModules = targets,
            Defaults = new LoraOptions
            {
                Rank = parse.GetValue(Rank), Alpha = parse.GetValue(Alpha), Dropout = parse.GetValue(Dropout),
                UseDora = parse.GetValue(Dora), UseRsLora = parse.GetValue(RsLora), Seed = seed,
                Init = init switch
                {
                    "default" => LoraInit.Default,
                    "gaussian" => LoraInit.Gaussian,
                    "pissa" => LoraInit.Pissa,
                    "olora" => LoraInit.Olora,
                    _ when PissaIterations(init) is not null => LoraInit.PissaRandomized,
                    _ => throw new UsageException($"--init: expected default, gaussian, pissa, pissa_niter_K or olora; got '{init}'"),
                },
                PissaIterations = PissaIterations(init) ?? 4,
            },
        };
    }
}
