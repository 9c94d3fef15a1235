using LoraRuntime.Layers.Adapters;
using LoraRuntime.Layers.Serving;
using Xunit;

namespace LoraRuntime.Tests.Serving;

/// <summary>Loading, unloading, ranks, and the LRU device budget of the adapter bank.</summary>
public sealed class AdapterBankTests : IDisposable
{
    private readonly ServingFixture _f = new();

    public void Dispose() => _f.Dispose();

    private AdapterBank LoadAll(long budget, int maxRank = 8)
    {
        var bank = new AdapterBank(_f.Layout, budget, maxRank);
        foreach (var name in ServingFixture.Adapters.Keys) bank.Load(name, _f.AdapterDirectory(name));
        return bank;
    }

    [Fact]
    public void Loads_adapters_of_different_ranks_and_unloads_them_by_name()
    {
        using var bank = LoadAll(1 << 20);
        Assert.Equal(["all", "mlp", "qv"], bank.Names);
        Assert.True(bank.TryGet("mlp", out var mlp));
        Assert.Equal(3, mlp.MaxRank);
        Assert.True(bank.TryGet("all", out var all));
        Assert.Equal(4 * ServingFixture.Config.Layers, all.ModuleCount);
        Assert.Contains("already loaded", Assert.Throws<ArgumentException>(() => bank.Load("qv", _f.AdapterDirectory("qv"))).Message);
        Assert.True(bank.Unload("qv"));
        Assert.False(bank.Unload("qv"));
        Assert.Contains("no adapter 'qv'", Assert.Throws<ArgumentException>(() => bank.TryAcquire("qv")).Message);
        bank.Load("qv", _f.AdapterDirectory("qv"));
        Assert.Equal(3, bank.Stats.Loaded);
    }

    [Fact]
    public void Refuses_what_it_cannot_serve_and_names_it()
    {
        using var bank = new AdapterBank(_f.Layout, 1 << 20, maxRank: 2);
        Assert.Contains("1 ≤ R ≤ 2", Assert.Throws<ArgumentException>(() => bank.Load("all", _f.AdapterDirectory("all"))).Message);
        Assert.Throws<DirectoryNotFoundException>(() => bank.Load("x", Path.Combine(_f.Root, "missing")));
        Assert.Throws<ArgumentException>(() => bank.Load("bad/name", _f.AdapterDirectory("qv")));
        string dora = Path.Combine(_f.Root, "dora");
        var config = new LoraConfig { TargetModules = ["fc"], Defaults = new LoraOptions { Rank = 2, UseDora = true } };
        using (var model = _f.NewModel())
        using (var lora = new LoraModel(model))
            PeftAdapterFiles.Save(lora.AddAdapter("d", config), config, dora, "tiny");
        Assert.Contains("DoRA", Assert.Throws<InvalidDataException>(() => bank.Load("d", dora)).Message);
        using var tiny = new AdapterBank(_f.Layout, 64, maxRank: 8);
        Assert.Contains("more than the whole budget", Assert.Throws<ArgumentException>(() => tiny.Load("qv", _f.AdapterDirectory("qv"))).Message);
    }

    [Fact]
    public void Evicts_the_least_recently_used_unpinned_adapter_and_re_uploads_it_on_use()
    {
        long bytesQv, bytesAll, bytesMlp;
        using (var probe = LoadAll(1 << 20))
        {
            probe.TryGet("qv", out var a);
            probe.TryGet("all", out var b);
            probe.TryGet("mlp", out var c);
            (bytesQv, bytesAll, bytesMlp) = (a.Bytes, b.Bytes, c.Bytes);
        }
        // Room for "all" and one of the others, not for all three.
        using var bank = LoadAll(bytesAll + Math.Max(bytesQv, bytesMlp));
        var pool = _f.Backend.Pool;
        var qv = bank.TryAcquire("qv")!;
        var all = bank.TryAcquire("all")!;
        bank.Release(qv);
        bank.Release(all);
        long inUse = pool.Stats.BytesInUse;
        var mlp = bank.TryAcquire("mlp")!; // evicts qv, the least recently used
        Assert.False(qv.IsResident);
        Assert.True(all.IsResident && mlp.IsResident);
        Assert.Equal(1, bank.Stats.Evictions);
        Assert.True(pool.Stats.BytesInUse < inUse + bytesMlp, "evicting returns the device copy to the pool");
        // With "mlp" pinned and "all" unpinned, qv's next use evicts "all"; with both pinned there is no room.
        Assert.Same(qv, bank.TryAcquire("qv"));
        Assert.False(all.IsResident);
        Assert.Null(bank.TryAcquire("all"));
        Assert.Equal(4, bank.Stats.Uploads);
        bank.Release(qv);
        Assert.NotNull(bank.TryAcquire("all"));
        Assert.True(bank.Stats.ResidentBytes <= bank.BudgetBytes);
    }

    [Fact]
    public void A_re_uploaded_adapter_gives_the_same_logits()
    {
        using var bank = LoadAll(1 << 20);
        using var decoder = new KvCacheDecoder(_f.Layout, 1, 32, 8);
        var logits = new float[decoder.Vocabulary];
        float[] Run()
        {
            var a = bank.TryAcquire("all")!;
            decoder.Forward([new DecodeRow(0, 0, 4, a)], [1, 2, 3, 4], logits);
            bank.Release(a);
            return (float[])logits.Clone();
        }
        var first = Run();
        bank.Unload("all");
        bank.Load("all", _f.AdapterDirectory("all"));
        Assert.Equal(first, Run());
    }
}
