using LoraRuntime.Cpu;
using LoraRuntime.Cuda;
using LoraRuntime.Layers;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Cuda;

/// <summary>
/// The layers run unchanged on the CUDA backend: a small GPT's loss and every gradient agree with the CPU reference
/// path, through embedding, layer norm, fused-QKV attention, GELU MLP and cross-entropy, forward and backward.
/// </summary>
public sealed class CudaModelTests
{
    public CudaModelTests() => CudaTestDevice.SkipUnlessUsable();

    [Fact]
    public void A_GPT_forward_and_backward_match_the_CPU()
    {
        var config = new GptConfig(Vocabulary: 11, Layers: 2, Heads: 2, Channels: 16, BlockSize: 8);
        using var cpu = new CpuBackend();
        using var cuda = new CudaBackend();
        var ids = new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5 };
        var targets = new[] { 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, -1 };
        (float Loss, float[] Gradients) Run(Backend backend)
        {
            using var model = new GptModel(backend, config, maxBatch: 2);
            model.Initialize(3);
            using var idTensor = backend.Allocate(DType.I32, new Shape(2, 8));
            using var targetTensor = backend.Allocate(DType.I32, new Shape(2, 8));
            backend.Upload(idTensor, ids);
            backend.Upload(targetTensor, targets);
            model.Parameters.ZeroGradients();
            float loss = model.Forward(idTensor, targetTensor);
            model.Backward();
            return (loss, model.Parameters.Gradients.ToArray());
        }
        var (cpuLoss, cpuGradients) = Run(cpu);
        var (cudaLoss, cudaGradients) = Run(cuda);
        Assert.True(Math.Abs(cpuLoss - cudaLoss) <= 1e-5 * Math.Abs(cpuLoss), $"loss: CPU {cpuLoss:R}, CUDA {cudaLoss:R}");
        double error = Reference.RelativeError(cudaGradients, Reference.ToDouble(cpuGradients));
        Assert.True(error <= 1e-4, $"gradients: ‖CUDA − CPU‖/‖CPU‖ = {error:E2}");
    }
}
