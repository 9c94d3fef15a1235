namespace LoraRuntime.Cuda;

/// <summary>Every kernel the CUDA backend launches; <see cref="CudaKernels.Entry"/> says which file of native/ has it.</summary>
internal enum CudaKernel
{
    Fill, Add, Scale, Axpy, Divide, ScaleMatrix,
    GeluForward, GeluBackward,
    SoftmaxForward, SoftmaxBackward,
    LayerNormForward, LayerNormBackwardInput, LayerNormBackwardParameters,
    CrossEntropyForward, CrossEntropyBackward,
    EmbeddingForward, EmbeddingBackward,
    AdamWStep,
    Dropout,
    RowBroadcast, ColumnSum, RowNorms,
    Heads,
    FindNonFinite, FindIdOutside,
    WidenF64, ColumnSigns, NarrowF32, DiagonalSigns, QrExtractR,
    RmsNormForward, RmsNormBackwardInput, RmsNormBackwardWeight,
    GatedSiluForward, GatedSiluBackward,
    Rotary,
    HeadRmsNormForward, HeadRmsNormBackwardInput, HeadRmsNormBackwardWeight,
    Dequantize, NarrowRowsBf16,
}

/// <summary>The kernel table: file and <c>extern "C"</c> name of each <see cref="CudaKernel"/>.</summary>
internal static class CudaKernels
{
    /// <summary>How many kernels there are.</summary>
    public static readonly int Count = Enum.GetValues<CudaKernel>().Length;

    /// <summary>The file of native/ that defines <paramref name="kernel"/>, and its unmangled name.</summary>
    public static (string File, string Name) Entry(CudaKernel kernel) => kernel switch
    {
        CudaKernel.Fill => ("elementwise.cu", "fill_f32"),
        CudaKernel.Add => ("elementwise.cu", "add_f32"),
        CudaKernel.Scale => ("elementwise.cu", "scale_f32"),
        CudaKernel.Axpy => ("elementwise.cu", "axpy_f32"),
        CudaKernel.Divide => ("elementwise.cu", "divide_f32"),
        CudaKernel.ScaleMatrix => ("elementwise.cu", "scale_matrix_f32"),
        CudaKernel.GeluForward => ("gelu.cu", "gelu_forward"),
        CudaKernel.GeluBackward => ("gelu.cu", "gelu_backward"),
        CudaKernel.SoftmaxForward => ("softmax.cu", "softmax_forward"),
        CudaKernel.SoftmaxBackward => ("softmax.cu", "softmax_backward"),
        CudaKernel.LayerNormForward => ("layernorm.cu", "layernorm_forward"),
        CudaKernel.LayerNormBackwardInput => ("layernorm.cu", "layernorm_backward_input"),
        CudaKernel.LayerNormBackwardParameters => ("layernorm.cu", "layernorm_backward_parameters"),
        CudaKernel.CrossEntropyForward => ("crossentropy.cu", "crossentropy_forward"),
        CudaKernel.CrossEntropyBackward => ("crossentropy.cu", "crossentropy_backward"),
        CudaKernel.EmbeddingForward => ("embedding.cu", "embedding_forward"),
        CudaKernel.EmbeddingBackward => ("embedding.cu", "embedding_backward"),
        CudaKernel.AdamWStep => ("adamw.cu", "adamw_step"),
        CudaKernel.Dropout => ("dropout.cu", "dropout_apply"),
        CudaKernel.RowBroadcast => ("rows.cu", "row_broadcast"),
        CudaKernel.ColumnSum => ("rows.cu", "column_sum"),
        CudaKernel.RowNorms => ("rows.cu", "row_norms"),
        CudaKernel.Heads => ("heads.cu", "heads_permute"),
        CudaKernel.FindNonFinite => ("scan.cu", "find_nonfinite"),
        CudaKernel.FindIdOutside => ("scan.cu", "find_id_outside"),
        CudaKernel.WidenF64 => ("linalg.cu", "widen_f64"),
        CudaKernel.ColumnSigns => ("linalg.cu", "column_signs"),
        CudaKernel.NarrowF32 => ("linalg.cu", "narrow_f32"),
        CudaKernel.DiagonalSigns => ("linalg.cu", "diagonal_signs"),
        CudaKernel.QrExtractR => ("linalg.cu", "qr_extract_r"),
        CudaKernel.RmsNormForward => ("transformer.cu", "rmsnorm_forward"),
        CudaKernel.RmsNormBackwardInput => ("transformer.cu", "rmsnorm_backward_input"),
        CudaKernel.RmsNormBackwardWeight => ("transformer.cu", "rmsnorm_backward_weight"),
        CudaKernel.GatedSiluForward => ("transformer.cu", "gated_silu_forward"),
        CudaKernel.GatedSiluBackward => ("transformer.cu", "gated_silu_backward"),
        CudaKernel.Rotary => ("transformer.cu", "rotary_apply"),
        CudaKernel.HeadRmsNormForward => ("transformer.cu", "head_rmsnorm_forward"),
        CudaKernel.HeadRmsNormBackwardInput => ("transformer.cu", "head_rmsnorm_backward_input"),
        CudaKernel.HeadRmsNormBackwardWeight => ("transformer.cu", "head_rmsnorm_backward_weight"),
        CudaKernel.Dequantize => ("dequantize.cu", "dequantize_rows"),
        CudaKernel.NarrowRowsBf16 => ("dequantize.cu", "narrow_rows_bf16"),
        _ => throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "not a kernel of the table"),
    };
}
