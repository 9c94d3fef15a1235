using System.Buffers.Binary;
using LoraRuntime.Quantization;

namespace LoraRuntime.Layers;

/// <summary>
/// A model's (or an adapter's) parameters, llm.c style: layers declare their parameters by name, then
/// <see cref="Reserve"/> carves the values out of one <see cref="Reservation"/> and, when training them, the
/// gradients out of a second one with the same layout. Zeroing every gradient is one Fill, and an optimizer steps
/// <see cref="Values"/> against <see cref="Gradients"/> in one call. A set reserved without gradients is frozen:
/// its layers compute input gradients only and never write their parameters.
/// </summary>
internal sealed class ParameterSet : IDisposable
{
    private readonly List<Tensor> _scratch = [];
    private readonly Dictionary<string, QuantizedMatrix> _stored = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool[]> _rowsFromFloats = new(StringComparer.Ordinal); // stored rows encoded from float values
    private readonly Reservation _values;
    private readonly List<Parameter> _parameters = [];
    private readonly Dictionary<string, Parameter> _byName = new(StringComparer.Ordinal);
    private Reservation? _gradients;

    /// <summary>An empty set on <paramref name="backend"/>.</summary>
    public ParameterSet(Backend backend, string name = "parameters")
    {
        _values = new Reservation(backend, name);
    }

    /// <summary>The backend holding the parameters.</summary>
    public Backend Backend => _values.Backend;

    /// <summary>The set's name, used in messages.</summary>
    public string Name => _values.Name;

    /// <summary>
    /// Linear layers (by module path, "blocks.0.mlp.fc") to declare as two rank-K factors U·V instead of a dense
    /// weight, with their K: how a compressed model is built. Set at construction, before any layer is declared.
    /// </summary>
    public IReadOnlyDictionary<string, int> FactoredRanks { get; init; } = new Dictionary<string, int>();

    /// <summary>
    /// The format each frozen weight keeps (by parameter name, "blocks.0.mlp.fc.weight", and its columns), asked by the
    /// layers that can hold a stored weight (projections, the token embedding, an untied head) as they declare it;
    /// null keeps every weight float32. Set at construction, before any layer is declared.
    /// </summary>
    public Func<string, int, WeightFormat>? Storage { get; init; }

    /// <summary>The weights kept in a stored format, by parameter name: frozen, outside the float32 values' block.</summary>
    public IReadOnlyDictionary<string, QuantizedMatrix> Stored => _stored;

    /// <summary>Bytes of the stored weights.</summary>
    public long StoredBytes => _stored.Values.Sum(m => m.Bytes);

    /// <summary>The format <see cref="Storage"/> gives the weight <paramref name="name"/> of <paramref name="columns"/> (F32 without one).</summary>
    public WeightFormat FormatOf(string name, int columns) => Storage?.Invoke(name, columns) ?? WeightFormat.F32;

    /// <summary>The shape of a declared parameter or stored weight.</summary>
    public Shape ShapeOf(string name) => _stored.TryGetValue(name, out var stored) ? new Shape(stored.Rows, stored.Columns) : this[name].Shape;

    /// <summary>Every declared weight, float32 parameters first, then the stored ones: (name, shape).</summary>
    public IEnumerable<(string Name, Shape Shape)> Weights =>
        _parameters.Select(p => (p.Name, p.Shape)).Concat(_stored.Select(s => (s.Key, new Shape(s.Value.Rows, s.Value.Columns))));

    /// <summary>Declares a weight kept in <paramref name="format"/>: its storage is taken now; it is frozen.</summary>
    public QuantizedMatrix AddStored(string name, WeightFormat format, int rows, int columns)
    {
        if (_byName.ContainsKey(name) || _stored.ContainsKey(name))
            throw new ArgumentException($"name: {Name} already declares '{name}'", nameof(name));
        var matrix = Backend.CreateQuantized(format, rows, columns);
        _stored.Add(name, matrix);
        return matrix;
    }

    /// <summary>
    /// Writes float32 <paramref name="values"/> (whole rows) into the weight <paramref name="name"/> from row
    /// <paramref name="firstRow"/>: a float32 parameter's rows, or a stored weight's rows encoded in its format.
    /// </summary>
    public void WriteRows(string name, int firstRow, ReadOnlySpan<float> values)
    {
        if (_stored.TryGetValue(name, out var stored))
        {
            Backend.QuantizeRows(stored, firstRow, values);
            if (!_rowsFromFloats.TryGetValue(name, out var encoded)) _rowsFromFloats[name] = encoded = new bool[stored.Rows];
            encoded.AsSpan(firstRow, values.Length / stored.Columns).Fill(true);
            return;
        }
        var p = this[name];
        int width = p.Shape.Rank == 1 ? 1 : p.Shape.Last;
        using var slice = p.Value.View((long)firstRow * width, p.Shape.Rank == 1 ? new Shape(values.Length) : new Shape(values.Length / width, width));
        slice.CopyFrom(values);
    }

    /// <summary>
    /// bitsandbytes' double quantization (<c>bnb_4bit_use_double_quant</c>) of the NF4 weights this set encoded from
    /// float values (not those copied as blocks from a bitsandbytes file, whose absmax are its own already): each
    /// weight's block absmax, or each of its <paramref name="pieces"/> (row ranges quantized apart, as the separate
    /// modules a fused projection was made of), replaced by what <see cref="DynamicBlocks.DoubleQuantize(Span{float})"/>
    /// gives back. A piece is done when all its rows were encoded from floats, once. Load-time work through the
    /// backend's encoded rows, 4 MiB at a time.
    /// </summary>
    public void DoubleQuantizeNf4(IEnumerable<(string Name, int FirstRow, int Rows)> pieces)
    {
        var ranges = pieces.GroupBy(p => p.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Select(p => (p.FirstRow, p.Rows)).ToArray(), StringComparer.Ordinal);
        foreach (var (name, matrix) in _stored)
        {
            if (matrix.Format != WeightFormat.NF4 || !_rowsFromFloats.TryGetValue(name, out var encoded)) continue;
            foreach (var (first, rows) in ranges.TryGetValue(name, out var r) ? r : [(0, matrix.Rows)])
            {
                var piece = encoded.AsSpan(first, rows);
                if (piece.Contains(false)) continue;
                DoubleQuantizeRows(matrix, first, rows);
                piece.Clear();
            }
        }
    }

    private void DoubleQuantizeRows(QuantizedMatrix matrix, int firstRow, int rows)
    {
        int blocksPerRow = matrix.Columns / Nf4Blocks.BlockSize, rowBytes = (int)matrix.RowBytes;
        int chunkRows = (int)Math.Clamp((4L << 20) / rowBytes, 1, rows);
        var absmax = new float[checked(rows * blocksPerRow)];
        var bytes = new byte[checked(chunkRows * rowBytes)];
        for (int pass = 0; pass < 2; pass++)
        {
            if (pass == 1) DynamicBlocks.DoubleQuantize(absmax);
            for (int at = 0; at < rows; at += chunkRows)
            {
                var chunk = bytes.AsSpan(0, Math.Min(chunkRows, rows - at) * rowBytes);
                Backend.ReadEncodedRows(matrix, firstRow + at, chunk);
                for (int b = 0, block = at * blocksPerRow; b < chunk.Length; b += WeightFormats.Nf4BlockBytes, block++)
                {
                    var field = chunk.Slice(b, sizeof(float));
                    if (pass == 0) absmax[block] = BinaryPrimitives.ReadSingleLittleEndian(field);
                    else BinaryPrimitives.WriteSingleLittleEndian(field, absmax[block]);
                }
                if (pass == 1) Backend.WriteEncodedRows(matrix, firstRow + at, chunk);
            }
        }
    }

    /// <summary>The parameters in declaration order.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Elements of all parameters (alignment padding excluded).</summary>
    public long Count { get; private set; }

    /// <summary>True once <see cref="Reserve"/> has run.</summary>
    public bool IsReserved => _values.IsReserved;

    /// <summary>True when the set was reserved with gradients (it is trained); false while unreserved or frozen.</summary>
    public bool HasGradients => _gradients?.IsReserved == true;

    /// <summary>Every value, as one 1-D tensor (padding between parameters is zero).</summary>
    public Tensor Values => _values.Block;

    /// <summary>Every gradient, as one 1-D tensor of the layout of <see cref="Values"/>.</summary>
    public Tensor Gradients => _gradients?.Block ?? throw Frozen();

    /// <summary>Bytes of the values' block.</summary>
    public long ValueBytes => _values.Bytes;

    /// <summary>The parameter called <paramref name="name"/>.</summary>
    public Parameter this[string name] => _byName.TryGetValue(name, out var p)
        ? p
        : throw new KeyNotFoundException($"{Name} has no parameter '{name}'");

    /// <summary>Looks a parameter up by name.</summary>
    public bool TryGet(string name, out Parameter parameter) => _byName.TryGetValue(name, out parameter!);

    /// <summary>Declares a parameter of the given shape; its memory exists after <see cref="Reserve"/>.</summary>
    public Parameter Add(string name, params ReadOnlySpan<int> dims)
    {
        var shape = new Shape(dims);
        var parameter = new Parameter(this, _values.Declare(name, shape.Length), shape);
        _parameters.Add(parameter);
        _byName.Add(name, parameter);
        Count += shape.Length;
        return parameter;
    }

    /// <summary>
    /// Takes the values' block (zero-filled) and, when <paramref name="withGradients"/>, a gradient block of the same
    /// layout (zero-filled). Runs once, after every parameter is declared.
    /// </summary>
    public void Reserve(bool withGradients)
    {
        _values.Reserve();
        if (withGradients)
        {
            _gradients = new Reservation(_values.Backend, Name + ".gradients");
            foreach (var region in _values.Regions) _gradients.Declare(region.Name, region.Length);
            _gradients.Reserve();
        }
        foreach (var p in _parameters) p.Bind(_values, _gradients);
    }

    /// <summary>Sets every gradient to zero (one Fill).</summary>
    public void ZeroGradients() => Backend.Fill(Gradients, 0f);

    /// <summary>
    /// A tensor of this set's backend that lives as long as the set (a layer's scratch derived from its parameters,
    /// such as a folded weight), allocated at the first request; returned to the pool with the set.
    /// </summary>
    public Tensor Scratch(ref Tensor? slot, Shape shape)
    {
        if (slot is not null) return slot;
        slot = Backend.Allocate(DType.F32, shape);
        _scratch.Add(slot);
        return slot;
    }

    /// <summary>Returns both blocks (and any scratch) to the pool.</summary>
    public void Dispose()
    {
        _values.Dispose();
        _gradients?.Dispose();
        foreach (var t in _scratch) t.Dispose();
        _scratch.Clear();
        foreach (var m in _stored.Values) m.Dispose();
        _stored.Clear();
    }

    private InvalidOperationException Frozen() => new(IsReserved
        ? $"{Name} was reserved without gradients (frozen)"
        : $"{Name} is not reserved yet; declare every parameter, then call Reserve()");
}

/// <summary>One named parameter: a view of its set's values and, when trained, of its gradients.</summary>
internal sealed class Parameter
{
    private readonly Region _region;
    private Tensor? _value, _gradient;

    internal Parameter(ParameterSet owner, Region region, Shape shape)
    {
        Owner = owner;
        _region = region;
        Shape = shape;
    }

    /// <summary>The set the parameter belongs to.</summary>
    public ParameterSet Owner { get; }

    /// <summary>The parameter's name ("blocks.0.attn.qkv.weight").</summary>
    public string Name => _region.Name;

    /// <summary>The parameter's shape.</summary>
    public Shape Shape { get; }

    /// <summary>The first element in the set's value (and gradient) block.</summary>
    public long Offset => _region.Offset;

    /// <summary>True when the set is trained and this parameter has a gradient.</summary>
    public bool HasGradient => _gradient is not null;

    /// <summary>The values.</summary>
    public Tensor Value => _value ?? throw new InvalidOperationException($"{Name}: {Owner.Name} is not reserved yet");

    /// <summary>The gradient (the set must be reserved with gradients).</summary>
    public Tensor Gradient => _gradient ?? throw new InvalidOperationException(
        Owner.IsReserved ? $"{Name}: {Owner.Name} was reserved without gradients (frozen)" : $"{Name}: {Owner.Name} is not reserved yet");

    internal void Bind(Reservation values, Reservation? gradients)
    {
        _value = values.View(_region, Shape);
        _gradient = gradients?.View(_region, Shape);
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Shape}";
}
