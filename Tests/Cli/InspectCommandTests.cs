using System.Text.Json;
using LoraRuntime.Cli;
using LoraRuntime.IO;
using LoraRuntime.Tests.IO;
using Xunit;

namespace LoraRuntime.Tests.Cli;

/// <summary><c>lora inspect FILE</c>: tables or JSON for a good file; one line of error and exit code 2 for a bad one.</summary>
public sealed class InspectCommandTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();
    private readonly StringWriter _out = new(), _error = new();

    public void Dispose() => _files.Dispose();

    private int Run(params string[] args) => LoraApp.Run(args, Terminal.ForWriters(_out, _error));

    private string Adapter()
    {
        var writer = new SafetensorsWriter(SafetensorsDType.BF16);
        writer.Add("base.q_proj.lora_A.weight", new float[8 * 64], 8, 64);
        writer.Add("base.q_proj.lora_B.weight", new float[64 * 8], 64, 8);
        writer.Add("scale", new float[] { 2 });
        writer.AddMetadata("format", "pt");
        writer.AddMetadata("r", "8");
        string path = _files.PathOf("adapter_model.safetensors");
        writer.Save(path);
        return path;
    }

    [Fact]
    public void Inspect_shows_each_tensor_the_metadata_and_the_total_parameters()
    {
        Assert.Equal(ExitCodes.Success, Run("inspect", Adapter()));
        string output = _out.ToString();
        Assert.Contains("base.q_proj.lora_A.weight", output);
        Assert.Contains("BF16", output);
        Assert.Contains("[8, 64]", output);
        Assert.Contains("[64, 8]", output);
        Assert.Contains("1,024", output); // bytes of each 512-element BF16 matrix
        Assert.Contains("total parameters: 1,025", output);
        Assert.Contains("format", output);
        Assert.Contains("pt", output);
        Assert.Empty(_error.ToString());
    }

    [Fact]
    public void Inspect_json_prints_a_machine_readable_report()
    {
        string path = Adapter();
        Assert.Equal(ExitCodes.Success, Run("inspect", path, "--json"));
        using var json = JsonDocument.Parse(_out.ToString());
        var root = json.RootElement;
        Assert.Equal(path, root.GetProperty("file").GetString());
        Assert.Equal(3, root.GetProperty("tensor_count").GetInt32());
        Assert.Equal(1025, root.GetProperty("total_parameters").GetInt64());
        Assert.Equal("8", root.GetProperty("metadata").GetProperty("r").GetString());
        var first = root.GetProperty("tensors")[0];
        Assert.Equal("base.q_proj.lora_A.weight", first.GetProperty("name").GetString());
        Assert.Equal("BF16", first.GetProperty("dtype").GetString());
        Assert.Equal([8L, 64], first.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
        Assert.Equal(1024, first.GetProperty("bytes").GetInt64());
        Assert.Equal([0L, 1024], first.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()));
    }

    [Fact]
    public void A_bad_file_is_one_line_of_error_and_exit_code_2()
    {
        byte[] file = File.ReadAllBytes(Adapter());
        string path = _files.Write(file[..^1], "truncated.safetensors");
        Assert.Equal(ExitCodes.Usage, Run("inspect", path));
        string error = _error.ToString();
        Assert.StartsWith($"error: {path}: ", error);
        Assert.Contains("'scale'", error);
        Assert.Contains("run past the end", error);
        Assert.Equal(1, error.Count(c => c == '\n'));
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void A_missing_file_or_a_folder_is_exit_code_2()
    {
        Assert.Equal(ExitCodes.Usage, Run("inspect", _files.PathOf("absent.safetensors")));
        Assert.Contains("does not exist", _error.ToString());
        Assert.Equal(ExitCodes.Usage, Run("inspect", _files.Folder));
        Assert.Contains("is a folder", _error.ToString());
        Assert.Equal(ExitCodes.Usage, Run("inspect"));
    }
}
