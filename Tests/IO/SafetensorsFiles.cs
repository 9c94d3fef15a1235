using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace LoraRuntime.Tests.IO;

/// <summary>Builds safetensors files byte by byte, as the format describes them, and keeps them in a temporary folder.</summary>
public sealed class SafetensorsFiles : IDisposable
{
    public string Folder { get; } = Directory.CreateTempSubdirectory("lora-io-").FullName;

    public void Dispose() => Directory.Delete(Folder, recursive: true);

    /// <summary>Writes <paramref name="bytes"/> to a file of the folder; returns its path.</summary>
    public string Write(byte[] bytes, string name = "t.safetensors")
    {
        string path = Path.Combine(Folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>A path in the folder.</summary>
    public string PathOf(string name) => Path.Combine(Folder, name);

    /// <summary>8-byte little-endian header length, the header's UTF-8 bytes as given (no padding), then the data.</summary>
    public static byte[] Layout(string header, ReadOnlySpan<byte> data) => Layout(Encoding.UTF8.GetBytes(header), data);

    /// <summary>The same from raw header bytes.</summary>
    public static byte[] Layout(ReadOnlySpan<byte> header, ReadOnlySpan<byte> data) =>
        Layout((ulong)header.Length, header, data);

    /// <summary>The same with a declared header length that may lie.</summary>
    public static byte[] Layout(ulong declaredLength, ReadOnlySpan<byte> header, ReadOnlySpan<byte> data)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength);
        header.CopyTo(bytes.AsSpan(8));
        data.CopyTo(bytes.AsSpan(8 + header.Length));
        return bytes;
    }

    public static byte[] Bytes<T>(params T[] values) where T : unmanaged => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    /// <summary>The header length a file declares.</summary>
    public static long HeaderLength(byte[] file) => (long)BinaryPrimitives.ReadUInt64LittleEndian(file);

    /// <summary>The header text of a file.</summary>
    public static string HeaderText(byte[] file) => Encoding.UTF8.GetString(file, 8, (int)HeaderLength(file));
}
