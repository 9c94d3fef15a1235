using Xunit;

namespace LoraRuntime.Tests.Primitives;

// Every primitive rejects bad arguments with an exception that names the argument, before writing anything.
public abstract partial class PrimitiveConformance
{
    private Tensor Filled(params int[] dims) =>
        Upload(Enumerable.Range(1, (int)new Shape(dims).Length).Select(i => i * 0.25f).ToArray(), dims);

    private Tensor Ids(int[] ids) => UploadIds(ids, ids.Length);

    [Fact]
    public void Elementwise_ops_reject_bad_arguments()
    {
        Tensor a = Filled(6), b = Filled(6), output = Filled(6);
        Tensor buffer = Filled(7), head = buffer.View(0, new Shape(6)), shifted = buffer.View(1, new Shape(6));
        Rejects("b", () => Backend.Add(output, a, Filled(5)), output);
        Rejects("a", () => Backend.Add(output, Ids([1, 2, 3, 4, 5, 6]), b), output);
        Rejects("b", () => Backend.Add(output, a, Foreign(6)), output);
        Rejects("output", () => Backend.Add(head, shifted, b), buffer);
        RejectsDisposed("a", () => Backend.Add(output, Disposed(6), b), output);
        Rejects("output", () => Backend.Scale(output, Filled(2, 4), 2f), output);
        Rejects("scale", () => Backend.Scale(output, a, float.NaN), output);
        Rejects("output", () => Backend.Scale(shifted, head, 2f), buffer);
        Rejects("y", () => Backend.Axpy(output, 1f, Filled(7)), output);
        Rejects("alpha", () => Backend.Axpy(output, float.PositiveInfinity, a), output);
        Rejects("x", () => Backend.Axpy(output, 1f, Foreign(6)), output);
        Rejects("input", () => Backend.GeluForward(output, Foreign(6)), output);
        Rejects("output", () => Backend.GeluForward(head, shifted), buffer);
        RejectsDisposed("output", () => Backend.GeluForward(Disposed(6), a));
        Rejects("dOutput", () => Backend.GeluBackward(output, a, Filled(3, 3)), output);
        Rejects("dInput", () => Backend.GeluBackward(output, a, output), output);
        Rejects("dInput", () => Backend.GeluBackward(a, a, b), a);
        Rejects("input", () => Backend.GeluBackward(output, Ids([1, 2, 3, 4, 5, 6]), b), output);
    }

    [Fact]
    public void Softmax_rejects_bad_arguments()
    {
        Tensor input = Filled(2, 3, 4), output = Filled(2, 3, 4), dOutput = Filled(2, 3, 4), dInput = Filled(2, 3, 4);
        Rejects("output", () => Backend.SoftmaxForward(output.Reshape(6, 4), input, causal: false), output);
        Rejects("input", () => Backend.SoftmaxForward(Filled(2, 5, 4), Filled(2, 5, 4), causal: true));
        Rejects("input", () => Backend.SoftmaxForward(Filled(4), Filled(4), causal: true));
        Rejects("input", () => Backend.SoftmaxForward(output, Foreign(2, 3, 4), causal: false), output);
        RejectsDisposed("input", () => Backend.SoftmaxForward(output, Disposed(2, 3, 4), causal: false), output);
        Rejects("dOutput", () => Backend.SoftmaxBackward(dInput, output, Filled(2, 4, 3), causal: false), dInput);
        Rejects("dInput", () => Backend.SoftmaxBackward(Filled(24), output, dOutput, causal: false));
        Rejects("output", () => Backend.SoftmaxBackward(Filled(1, 5, 4), Filled(1, 5, 4), Filled(1, 5, 4), causal: true));
        Rejects("dInput", () => Backend.SoftmaxBackward(dOutput, output, dOutput, causal: false), dOutput);
        Rejects("dInput", () => Backend.SoftmaxBackward(output, output, dOutput, causal: true), output);
    }

    [Fact]
    public void LayerNorm_rejects_bad_arguments()
    {
        Tensor input = Filled(3, 4), output = Filled(3, 4), mean = Filled(3), rstd = Filled(3), weight = Filled(4), bias = Filled(4);
        Tensor[] outputs = [output, mean, rstd];
        Rejects("mean", () => Backend.LayerNormForward(output, Filled(4), rstd, input, weight, bias, 1e-5f), outputs);
        Rejects("rstd", () => Backend.LayerNormForward(output, mean, Filled(2), input, weight, bias, 1e-5f), outputs);
        Rejects("weight", () => Backend.LayerNormForward(output, mean, rstd, input, Filled(3), bias, 1e-5f), outputs);
        Rejects("bias", () => Backend.LayerNormForward(output, mean, rstd, input, weight, Filled(5), 1e-5f), outputs);
        Rejects("output", () => Backend.LayerNormForward(Filled(4, 3), mean, rstd, input, weight, bias, 1e-5f), outputs);
        Rejects("epsilon", () => Backend.LayerNormForward(output, mean, rstd, input, weight, bias, -1e-5f), outputs);
        Rejects("output", () => Backend.LayerNormForward(input, mean, rstd, input, weight, bias, 1e-5f), outputs);
        Rejects("input", () => Backend.LayerNormForward(Filled(3, 0), mean, rstd, Filled(3, 0), Filled(0), Filled(0), 1e-5f), outputs);
        Rejects("bias", () => Backend.LayerNormForward(output, mean, rstd, input, weight, Foreign(4), 1e-5f), outputs);
        RejectsDisposed("weight", () => Backend.LayerNormForward(output, mean, rstd, input, Disposed(4), bias, 1e-5f), outputs);

        Tensor dInput = Filled(3, 4), dWeight = Filled(4), dBias = Filled(4), dOutput = Filled(3, 4);
        Tensor[] gradients = [dInput, dWeight, dBias];
        Rejects("dWeight", () => Backend.LayerNormBackward(dInput, Filled(3), dBias, dOutput, input, weight, mean, rstd), gradients);
        Rejects("dBias", () => Backend.LayerNormBackward(dInput, dWeight, Filled(12), dOutput, input, weight, mean, rstd), gradients);
        Rejects("dOutput", () => Backend.LayerNormBackward(dInput, dWeight, dBias, Filled(4, 3), input, weight, mean, rstd), gradients);
        Rejects("rstd", () => Backend.LayerNormBackward(dInput, dWeight, dBias, dOutput, input, weight, mean, Filled(4)), gradients);
        Rejects("dInput", () => Backend.LayerNormBackward(dOutput, dWeight, dBias, dOutput, input, weight, mean, rstd), gradients);
        Rejects("dWeight", () => Backend.LayerNormBackward(dInput, dWeight, dWeight, dOutput, input, weight, mean, rstd), gradients);
        Rejects("mean", () => Backend.LayerNormBackward(dInput, dWeight, dBias, dOutput, input, weight, Foreign(3), rstd), gradients);
    }

    [Fact]
    public void CrossEntropy_rejects_bad_arguments_and_targets()
    {
        Tensor logits = Filled(3, 5), probs = Filled(3, 5), losses = Filled(3), targets = Ids([0, -1, 4]);
        Tensor[] outputs = [losses, probs];
        var error = Assert.ThrowsAny<ArgumentException>(() => Backend.CrossEntropyForward(losses, probs, logits, Ids([0, 5, 1])));
        Assert.Equal("targets", error.ParamName);
        Assert.Contains("row 1", error.Message);
        Assert.Contains("target 5", error.Message);
        Rejects("targets", () => Backend.CrossEntropyForward(losses, probs, logits, Ids([0, 1, 1000])), outputs);
        Rejects("targets", () => Backend.CrossEntropyForward(losses, probs, logits, Ids([0, 1])), outputs);
        Rejects("targets", () => Backend.CrossEntropyForward(losses, probs, logits, Filled(3)), outputs);
        Rejects("losses", () => Backend.CrossEntropyForward(Filled(5), probs, logits, targets), outputs);
        Rejects("probs", () => Backend.CrossEntropyForward(losses, Filled(5, 3), logits, targets), outputs);
        Rejects("probs", () => Backend.CrossEntropyForward(losses, logits, logits, targets), outputs);
        Rejects("logits", () => Backend.CrossEntropyForward(losses, probs, Foreign(3, 5), targets), outputs);
        Rejects("logits", () => Backend.CrossEntropyForward(Filled(3), Filled(3, 0), Filled(3, 0), targets), outputs);
        RejectsDisposed("logits", () => Backend.CrossEntropyForward(losses, probs, Disposed(3, 5), targets), outputs);

        Tensor dLogits = Filled(3, 5), dLosses = Filled(3);
        Rejects("targets", () => Backend.CrossEntropyBackward(dLogits, dLosses, probs, Ids([5, 0, 0])), dLogits);
        Rejects("dLosses", () => Backend.CrossEntropyBackward(dLogits, Filled(2), probs, targets), dLogits);
        Rejects("dLogits", () => Backend.CrossEntropyBackward(Filled(5, 3), dLosses, probs, targets));
        Rejects("dLogits", () => Backend.CrossEntropyBackward(probs, dLosses, probs, targets), probs);
    }

    [Fact]
    public void Embedding_rejects_bad_arguments_and_ids()
    {
        Tensor table = Filled(5, 3), output = Filled(4, 3), ids = Ids([0, 4, 4, 1]);
        var error = Assert.ThrowsAny<ArgumentException>(() => Backend.EmbeddingForward(output, Ids([0, 1, -1, 2]), table));
        Assert.Equal("ids", error.ParamName);
        Assert.Contains("position 2", error.Message);
        Assert.Contains("id -1", error.Message);
        Rejects("ids", () => Backend.EmbeddingForward(output, Ids([0, 1, 2, 5]), table), output);
        Rejects("ids", () => Backend.EmbeddingForward(output, Filled(4), table), output);
        Rejects("table", () => Backend.EmbeddingForward(output, ids, Filled(15)), output);
        Rejects("table", () => Backend.EmbeddingForward(output, ids, Foreign(5, 3)), output);
        Rejects("output", () => Backend.EmbeddingForward(Filled(4, 4), ids, table));
        Rejects("output", () => Backend.EmbeddingForward(Filled(3, 3), ids, table));
        Rejects("output", () => Backend.EmbeddingForward(table.View(0, new Shape(4, 3)), ids, table), table);
        RejectsDisposed("table", () => Backend.EmbeddingForward(output, ids, Disposed(5, 3)), output);

        Tensor dTable = Filled(5, 3), dOutput = Filled(4, 3);
        Rejects("ids", () => Backend.EmbeddingBackward(dTable, dOutput, Ids([0, 1, 7, 2])), dTable);
        Rejects("ids", () => Backend.EmbeddingBackward(dTable, dOutput, Ids([int.MinValue, 1, 1, 2])), dTable);
        Rejects("dOutput", () => Backend.EmbeddingBackward(dTable, Filled(2, 3), ids), dTable);
        Rejects("dTable", () => Backend.EmbeddingBackward(dTable, dTable.View(0, new Shape(4, 3)), ids), dTable);
    }

    [Fact]
    public void AdamW_rejects_bad_hyperparameters_and_tensors()
    {
        Tensor p = Filled(6), g = Filled(6), m = Filled(6), v = Filled(6);
        Tensor[] state = [p, m, v];
        void Step(float lr = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f, float weightDecay = 0.01f, int step = 1) =>
            Backend.AdamWStep(p, g, m, v, lr, beta1, beta2, epsilon, weightDecay, step);
        Rejects("learningRate", () => Step(lr: -1e-3f), state);
        Rejects("learningRate", () => Step(lr: float.NaN), state);
        Rejects("beta1", () => Step(beta1: 1f), state);
        Rejects("beta2", () => Step(beta2: -0.1f), state);
        Rejects("epsilon", () => Step(epsilon: 0f), state);
        Rejects("weightDecay", () => Step(weightDecay: float.PositiveInfinity), state);
        Rejects("step", () => Step(step: 0), state);
        Rejects("m", () => Backend.AdamWStep(p, g, Filled(5), v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1), state);
        Rejects("v", () => Backend.AdamWStep(p, g, m, g, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1), state);
        Rejects("parameters", () => Backend.AdamWStep(Foreign(6), g, m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1), m, v);
        Rejects("v", () => Backend.AdamWStep(p, g, m, Foreign(6), 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1));
        RejectsDisposed("gradients", () => Backend.AdamWStep(p, Disposed(6), m, v, 1e-3f, 0.9f, 0.999f, 1e-8f, 0f, 1), state);
    }
}
