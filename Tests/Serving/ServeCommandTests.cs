using LoraRuntime.Cli;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary><c>lora serve</c>'s command line: bad options are usage errors that name the option, before anything listens.</summary>
public sealed class ServeCommandTests
{
    private static (int Code, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = LoraApp.Run(args, Terminal.ForWriters(output, error));
        return (code, error.ToString());
    }

    [Theory]
    [InlineData("--adapter", "nodir")]
    [InlineData("--adapter", "=dir")]
    [InlineData("--slots", "0")]
    [InlineData("--max-step-tokens", "4")]
    public void Bad_options_are_usage_errors(string option, string value)
    {
        var (code, error) = Run("serve", "--base", "/nonexistent/model", "--urls", "http://127.0.0.1:1", option, value);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains(option, error);
    }

    [Fact]
    public void A_missing_model_directory_is_a_usage_error_naming_it()
    {
        var (code, error) = Run("serve", "--base", "/nonexistent/model", "--urls", "http://127.0.0.1:1");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("/nonexistent/model", error);
    }
}
