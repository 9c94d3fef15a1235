using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using LoraRuntime.Cli.Serve;
using Microsoft.AspNetCore.Builder;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>
/// <c>lora serve</c>'s HTTP API running in process on a free loopback port over a <see cref="ServingHost"/>, and a client
/// for it; disposing stops the server and disposes the host.
/// </summary>
internal sealed class TestServer : IAsyncDisposable
{
    private TestServer(ServingHost host, WebApplication app, TimeSpan timeout)
    {
        Host = host;
        App = app;
        Http = new HttpClient { BaseAddress = new Uri(app.Urls.Single()), Timeout = timeout };
    }

    public ServingHost Host { get; }
    public WebApplication App { get; }
    public HttpClient Http { get; }

    /// <summary>Starts the API over <paramref name="host"/> (which the server then owns).</summary>
    public static async Task<TestServer> StartAsync(ServingHost host, double timeoutSeconds = 30)
    {
        var app = ServeApi.Build(host, "http://127.0.0.1:0");
        try
        {
            await app.StartAsync(TestContext.Current.CancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            host.Dispose();
            throw;
        }
        return new TestServer(host, app, TimeSpan.FromSeconds(timeoutSeconds));
    }

    /// <summary>Sends a request (a JSON body, a bearer key when given); the status, the body parsed (default when empty) and the response.</summary>
    public async Task<(HttpStatusCode Status, JsonElement Body, HttpResponseMessage Response)> Send(HttpMethod method, string path, string? json = null,
        string? key = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        if (key is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var response = await Http.SendAsync(request, TestContext.Current.CancellationToken);
        string text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        return (response.StatusCode, text.Length > 0 ? JsonDocument.Parse(text).RootElement.Clone() : default, response);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync(CancellationToken.None);
        await App.DisposeAsync();
        Host.Dispose();
    }
}
