using System.Runtime.InteropServices;
using System.Text;
using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

/// <summary>
/// Compiles a kernel file of native/ with NVRTC to a CUBIN for one real architecture (<c>sm_90</c>), with
/// <c>common.cuh</c> supplied as a header. A compilation error throws <see cref="CudaLibraryException"/> whose message
/// carries NVRTC's log. Needs only NVRTC, no GPU.
/// </summary>
public static unsafe class KernelCompiler
{
    /// <summary>True when an NVRTC library loads; <paramref name="reason"/> says which one, or where it was looked for.</summary>
    public static bool IsAvailable(out string reason)
    {
        var nvrtc = NativeLibraryResolver.Load(CudaLibraryNames.Nvrtc);
        reason = nvrtc.IsLoaded ? $"NVRTC {VersionText} ({nvrtc.LoadedFrom})" : nvrtc.NotFoundMessage(CudaLibraryNames.FileNames(CudaLibraryNames.Nvrtc));
        return nvrtc.IsLoaded;
    }

    /// <summary>NVRTC's version, "12.8".</summary>
    public static string VersionText
    {
        get
        {
            int major, minor;
            Nvrtc.ThrowIfFailed(Nvrtc.nvrtcVersion(&major, &minor));
            return $"{major}.{minor}";
        }
    }

    /// <summary>The options every kernel is compiled with, for <paramref name="architecture"/> ("sm_90").</summary>
    public static string[] Options(string architecture) =>
        [$"--gpu-architecture={architecture}", "-default-device"];

    /// <summary>
    /// The CUBIN of kernel file <paramref name="file"/> (<see cref="KernelSources"/>) for <paramref name="architecture"/>;
    /// <paramref name="log"/> receives NVRTC's log (warnings), empty when it has none.
    /// </summary>
    public static byte[] CompileCubin(string file, string architecture, out string log) =>
        CompileCubin(file, KernelSources.Get(file), architecture, out log);

    /// <summary>The CUBIN of <paramref name="source"/> named <paramref name="name"/>; see <see cref="CompileCubin(string, string, out string)"/>.</summary>
    public static byte[] CompileCubin(string name, string source, string architecture, out string log)
    {
        if (!architecture.StartsWith("sm_", StringComparison.Ordinal))
            throw new ArgumentException($"architecture: expected a real architecture such as sm_90 (a CUBIN needs one); got '{architecture}'", nameof(architecture));
        nint program = 0;
        var pins = new List<GCHandle>();
        try
        {
            byte* Utf8(string text)
            {
                var handle = GCHandle.Alloc(Encoding.UTF8.GetBytes(text + "\0"), GCHandleType.Pinned);
                pins.Add(handle);
                return (byte*)handle.AddrOfPinnedObject();
            }
            byte* header = Utf8(KernelSources.Get(KernelSources.HeaderName));
            byte* includeName = Utf8(KernelSources.HeaderName);
            Nvrtc.ThrowIfFailed(Nvrtc.nvrtcCreateProgram(&program, Utf8(source), Utf8(name), 1, &header, &includeName));
            string[] options = Options(architecture);
            byte** optionPointers = stackalloc byte*[options.Length];
            for (int i = 0; i < options.Length; i++) optionPointers[i] = Utf8(options[i]);
            nvrtcResult compiled = Nvrtc.nvrtcCompileProgram(program, options.Length, optionPointers);
            log = ReadLog(program);
            if (compiled != nvrtcResult.NVRTC_SUCCESS)
                Nvrtc.Throw(compiled, $"nvrtcCompileProgram({name}, {string.Join(' ', options)})", log.Length > 0 ? "\n" + log : null);
            nuint size;
            Nvrtc.ThrowIfFailed(Nvrtc.nvrtcGetCUBINSize(program, &size));
            var cubin = new byte[(int)size];
            fixed (byte* p = cubin) Nvrtc.ThrowIfFailed(Nvrtc.nvrtcGetCUBIN(program, p));
            return cubin;
        }
        finally
        {
            if (program != 0) Nvrtc.nvrtcDestroyProgram(&program);
            foreach (var pin in pins) pin.Free();
        }
    }

    private static string ReadLog(nint program)
    {
        nuint size;
        if (Nvrtc.nvrtcGetProgramLogSize(program, &size) != nvrtcResult.NVRTC_SUCCESS || size <= 1) return "";
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes)
        {
            if (Nvrtc.nvrtcGetProgramLog(program, p) != nvrtcResult.NVRTC_SUCCESS) return "";
        }
        return Encoding.UTF8.GetString(bytes, 0, bytes.Length - 1).Trim();
    }
}
