using LoraRuntime.Hosting;
using Microsoft.Extensions.AI;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the runtime in a service container (ASP.NET Core's, or any Microsoft.Extensions.DependencyInjection one).</summary>
public static class LoraRuntimeServiceCollectionExtensions
{
    /// <summary>
    /// Registers a <see cref="LoraEngine"/> over the model directory <paramref name="modelDirectory"/> (loaded when first
    /// asked for, disposed with the container) with <paramref name="options"/>, the adapters of
    /// <paramref name="adapters"/> (name → PEFT directory) loaded into it, and an <see cref="IChatClient"/> over it
    /// (<see cref="LoraChatClient"/>, whose <see cref="ChatOptions.ModelId"/> picks the adapter; <paramref name="baseName"/>
    /// picks the base model).
    /// </summary>
    public static IServiceCollection AddLoraRuntime(this IServiceCollection services, string modelDirectory, EngineOptions? options = null,
        IReadOnlyDictionary<string, string>? adapters = null, string baseName = LoraChatClient.DefaultBaseName)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        ArgumentException.ThrowIfNullOrWhiteSpace(baseName);
        services.AddSingleton(_ =>
        {
            var engine = LoraEngine.Load(modelDirectory, options);
            try
            {
                foreach (var (name, directory) in adapters ?? new Dictionary<string, string>()) engine.LoadAdapter(name, directory);
            }
            catch
            {
                engine.Dispose();
                throw;
            }
            return engine;
        });
        services.AddSingleton<IChatClient>(provider => new LoraChatClient(provider.GetRequiredService<LoraEngine>(), baseName));
        return services;
    }
}
