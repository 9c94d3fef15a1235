using System.Security.Cryptography;
using System.Text;
using LoraRuntime.IO;

namespace LoraRuntime.Cuda;

/// <summary>
/// CUBINs on disk, keyed by the SHA-256 of the source, the header and the compile options, the architecture and the
/// NVRTC version, so that a kernel is compiled once per machine. The folder is <c>$LORA_KERNEL_CACHE</c>, else
/// <c>$XDG_CACHE_HOME/lora-runtime/kernels</c>, else <c>~/.cache/lora-runtime/kernels</c>. An unwritable folder only
/// costs a compilation per process; files are written atomically, so a crash never leaves a torn CUBIN.
/// </summary>
public static class KernelCache
{
    /// <summary>The variable that overrides the cache folder.</summary>
    public const string FolderVariable = "LORA_KERNEL_CACHE";

    /// <summary>The cache folder for this environment.</summary>
    public static string Folder
    {
        get
        {
            string? chosen = Environment.GetEnvironmentVariable(FolderVariable);
            if (!string.IsNullOrWhiteSpace(chosen)) return chosen;
            string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            string root = !string.IsNullOrWhiteSpace(xdg) ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "lora-runtime", "kernels");
        }
    }

    /// <summary>"gelu-sm_90-nvrtc12.8-0123456789abcdef.cubin": the file name of a compiled kernel file.</summary>
    public static string FileName(string file, string architecture, string nvrtcVersion)
    {
        string key = string.Join('\n', KernelSources.Get(file), KernelSources.Get(KernelSources.HeaderName),
            string.Join(' ', KernelCompiler.Options(architecture)), nvrtcVersion);
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
        return $"{Path.GetFileNameWithoutExtension(file)}-{architecture}-nvrtc{nvrtcVersion}-{hash}.cubin";
    }

    /// <summary>
    /// The CUBIN of <paramref name="file"/> for <paramref name="architecture"/>: from the cache when there, otherwise
    /// compiled and stored. <paramref name="fromCache"/> says which.
    /// </summary>
    public static byte[] Get(string file, string architecture, out bool fromCache) => Get(file, architecture, Folder, out fromCache);

    /// <summary>As <see cref="Get(string, string, out bool)"/> with the cache in <paramref name="folder"/>.</summary>
    internal static byte[] Get(string file, string architecture, string folder, out bool fromCache)
    {
        string path = Path.Combine(folder, FileName(file, architecture, KernelCompiler.VersionText));
        try
        {
            if (File.Exists(path))
            {
                byte[] cached = File.ReadAllBytes(path);
                if (IsElf(cached))
                {
                    fromCache = true;
                    return cached;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Unreadable: compile instead.
        }
        byte[] cubin = KernelCompiler.CompileCubin(file, architecture, out _);
        try
        {
            Directory.CreateDirectory(folder);
            AtomicFile.WriteAllBytes(path, cubin);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A read-only home: keep the CUBIN in memory only.
        }
        fromCache = false;
        return cubin;
    }

    /// <summary>Removes the cached CUBIN of <paramref name="file"/> (one that the driver refused to load).</summary>
    public static void Evict(string file, string architecture)
    {
        try
        {
            File.Delete(Path.Combine(Folder, FileName(file, architecture, KernelCompiler.VersionText)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Nothing to do: the next load compiles again.
        }
    }

    private static bool IsElf(byte[] bytes) => bytes.Length > 4 && bytes[0] == 0x7f && bytes[1] == (byte)'E' && bytes[2] == (byte)'L' && bytes[3] == (byte)'F';
}
