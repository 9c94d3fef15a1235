using System.CommandLine;
using System.Globalization;

namespace LoraRuntime.Cli.Bench;

/// <summary>What every <c>lora bench</c> command was asked for, validated.</summary>
/// <param name="Device">"cpu", "cuda", "auto", or null for <c>LORA_DEVICE</c> (default auto).</param>
/// <param name="Warmup">Untimed runs per case.</param>
/// <param name="Reps">Timed runs per case; null for automatic.</param>
/// <param name="JsonPath">Where to write the JSON results; null for none.</param>
internal sealed record BenchSettings(string? Device, int Warmup, int? Reps, string? JsonPath);

/// <summary>The options every <c>lora bench</c> command shares: --device, --warmup, --reps, --json.</summary>
internal sealed class BenchOptions
{
    public Option<string?> Device { get; } = new("--device")
    {
        Description = $"cpu, cuda or auto (default: ${Devices.EnvironmentVariable}, else auto)",
    };

    public Option<int> Warmup { get; } = new("--warmup")
    {
        Description = "untimed runs before timing each case",
        DefaultValueFactory = _ => 3,
    };

    public Option<string> Reps { get; } = new("--reps")
    {
        Description = $"timed runs per case: a count, or auto (about {BenchTimer.DefaultTargetSeconds} s per case, at least {BenchTimer.MinAutoReps} runs)",
        DefaultValueFactory = _ => "auto",
        HelpName = "N|auto",
    };

    public Option<string?> Json { get; } = new("--json")
    {
        Description = "also write the results as a JSON array to FILE (atomically)",
        HelpName = "FILE",
    };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        command.Add(Device);
        command.Add(Warmup);
        command.Add(Reps);
        command.Add(Json);
    }

    /// <summary>Reads and validates the options; throws <see cref="UsageException"/> naming the bad one.</summary>
    public BenchSettings Read(ParseResult parse)
    {
        int warmup = parse.GetValue(Warmup);
        if (warmup < 0) throw new UsageException($"--warmup: expected 0 or more; got {warmup}");
        int? reps = ParseReps(parse.GetValue(Reps));
        string? json = parse.GetValue(Json);
        if (json is not null) OutputPath.CheckWritable(json, "--json");
        return new BenchSettings(parse.GetValue(Device), warmup, reps, json);
    }

    /// <summary>"auto" (any case) → null; a positive integer → itself; anything else → <see cref="UsageException"/>.</summary>
    public static int? ParseReps(string? text)
    {
        string t = text?.Trim() ?? "";
        if (t.Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        if (int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1) return n;
        throw new UsageException($"--reps: expected a positive integer or auto; got '{text}'");
    }

    /// <summary>
    /// The backend for <paramref name="device"/>; an unknown name or an unavailable device is a
    /// <see cref="UsageException"/> that says why (the probe's reason for CUDA).
    /// </summary>
    public static Backend CreateBackend(string? device)
    {
        try
        {
            return Devices.Create(device);
        }
        catch (ArgumentException e)
        {
            throw new UsageException(device is null ? e.Message : $"--device: unknown device '{device}'; expected {Devices.AllowedNames}");
        }
        catch (InvalidOperationException e)
        {
            throw new UsageException($"--device {device ?? "(from " + Devices.EnvironmentVariable + ")"}: {e.Message}");
        }
    }
}
