using System.Buffers;
using LoraRuntime.IO;
using Xunit;

namespace LoraRuntime.Tests.IO;

/// <summary>A write that fails midway leaves the old file exactly as it was and no temporary file behind.</summary>
public sealed class AtomicWriteTests : IDisposable
{
    private readonly SafetensorsFiles _files = new();

    public void Dispose() => _files.Dispose();

    [Fact]
    public void A_tensor_source_that_throws_midway_leaves_the_old_file_intact()
    {
        string path = _files.PathOf("model.safetensors");
        var good = new SafetensorsWriter();
        good.Add("w", new float[] { 1, 2, 3 }, 3);
        good.Save(path);
        byte[] before = File.ReadAllBytes(path);

        // "a" is written first (names sort), then "b" fails: the header and a's data are already in the temporary file.
        var failing = new SafetensorsWriter();
        failing.Add("a", new float[4096], 4096);
        failing.Add("b", new FailingValues(8).Values, 8);
        var e = Assert.Throws<IOException>(() => failing.Save(path));
        Assert.Equal("the source failed", e.Message);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_files.Folder));
        using var reader = SafetensorsReader.Open(path);
        Assert.Equal(["w"], reader.Entries.Select(x => x.Name));
    }

    [Fact]
    public void A_failed_first_write_leaves_no_file_at_all()
    {
        string path = _files.PathOf("new.safetensors");
        var failing = new SafetensorsWriter();
        failing.Add("b", new FailingValues(2).Values, 2);
        Assert.Throws<IOException>(() => failing.Save(path));
        Assert.Empty(Directory.GetFiles(_files.Folder));
    }

    [Fact]
    public void AtomicFile_replaces_a_file_whole_and_creates_missing_folders()
    {
        string path = Path.Combine(_files.Folder, "a", "b", "out.bin");
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));

        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write([9, 9, 9, 9, 9]);
            stream.Flush();
            throw new InvalidOperationException("midway");
        }));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(Path.GetDirectoryName(path)!));

        AtomicFile.Write(path, stream => stream.Write([4, 5]));
        Assert.Equal([4, 5], File.ReadAllBytes(path));
    }

    /// <summary>Values whose length is known but whose contents fail to read, like a device copy that errors.</summary>
    private sealed class FailingValues(int length) : MemoryManager<float>
    {
        public Memory<float> Values => CreateMemory(length);

        public override Span<float> GetSpan() => throw new IOException("the source failed");

        public override MemoryHandle Pin(int elementIndex = 0) => throw new IOException("the source failed");

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
