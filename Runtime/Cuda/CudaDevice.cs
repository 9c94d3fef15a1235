using System.Text;
using LoraRuntime.Interop;

namespace LoraRuntime.Cuda;

/// <summary>
/// One GPU for the whole process: its primary context (retained once and kept, so that every backend on the device
/// shares it and its loaded modules) and its kernels, compiled by NVRTC for the device's architecture at first use.
/// Thread-safe.
/// </summary>
internal sealed unsafe class CudaDevice
{
    private static readonly Dictionary<int, CudaDevice> s_devices = [];
    [ThreadStatic] private static nint t_current;

    private readonly object _lock = new();
    private readonly nint[] _functions = new nint[CudaKernels.Count];
    private readonly Dictionary<string, nint> _modules = new(StringComparer.Ordinal);

    private CudaDevice(CudaDeviceInfo info, int handle, nint context)
    {
        Info = info;
        Handle = handle;
        Context = context;
    }

    /// <summary>What the probe reported for this device.</summary>
    public CudaDeviceInfo Info { get; }

    /// <summary>The CUdevice.</summary>
    public int Handle { get; }

    /// <summary>The retained primary context.</summary>
    public nint Context { get; }

    /// <summary>"sm_90": the architecture kernels are compiled for.</summary>
    public string Architecture => Info.Architecture;

    /// <summary>
    /// The device of <paramref name="ordinal"/>; throws <see cref="InvalidOperationException"/> with the probe's reason when
    /// CUDA is unavailable or there is no such device.
    /// </summary>
    public static CudaDevice Get(int ordinal)
    {
        lock (s_devices)
        {
            if (s_devices.TryGetValue(ordinal, out var known)) return known;
            var probe = Devices.Probe;
            if (!probe.Available) throw new InvalidOperationException($"CUDA is unavailable: {probe.Reason}");
            if (ordinal < 0 || ordinal >= probe.Devices.Count)
                throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal,
                    $"ordinal: expected a device 0..{probe.Devices.Count - 1} ({probe.Reason}); got {ordinal}");
            int handle;
            nint context;
            CudaDriver.ThrowIfFailed(CudaDriver.cuDeviceGet(&handle, ordinal));
            CudaDriver.ThrowIfFailed(CudaDriver.cuDevicePrimaryCtxRetain(&context, handle));
            var device = new CudaDevice(probe.Devices[ordinal], handle, context);
            s_devices[ordinal] = device;
            return device;
        }
    }

    /// <summary>Makes the primary context current on the calling thread (once per thread: a thread-local remembers it).</summary>
    public void MakeCurrent()
    {
        if (t_current == Context) return;
        CudaDriver.ThrowIfFailed(CudaDriver.cuCtxSetCurrent(Context));
        t_current = Context;
    }

    /// <summary>The CUfunction of <paramref name="kernel"/>, compiling and loading its file the first time.</summary>
    public nint Function(CudaKernel kernel)
    {
        nint function = Volatile.Read(ref _functions[(int)kernel]);
        return function != 0 ? function : LoadFunction(kernel);
    }

    private nint LoadFunction(CudaKernel kernel)
    {
        lock (_lock)
        {
            if (_functions[(int)kernel] != 0) return _functions[(int)kernel];
            var (file, name) = CudaKernels.Entry(kernel);
            MakeCurrent();
            if (!_modules.TryGetValue(file, out nint module))
            {
                module = LoadModule(file);
                _modules[file] = module;
            }
            nint function;
            byte[] ascii = Encoding.ASCII.GetBytes(name + "\0");
            fixed (byte* p = ascii) CudaDriver.ThrowIfFailed(CudaDriver.cuModuleGetFunction(&function, module, p));
            Volatile.Write(ref _functions[(int)kernel], function);
            return function;
        }
    }

    /// <summary>Loads the CUBIN of <paramref name="file"/>; a cached image the driver refuses is evicted and compiled again once.</summary>
    private nint LoadModule(string file)
    {
        for (int attempt = 0; ; attempt++)
        {
            byte[] cubin = KernelCache.Get(file, Architecture, out bool fromCache);
            nint module;
            CUresult status;
            fixed (byte* p = cubin) status = CudaDriver.cuModuleLoadData(&module, p);
            if (status == CUresult.CUDA_SUCCESS) return module;
            if (fromCache && attempt == 0)
            {
                KernelCache.Evict(file, Architecture);
                continue;
            }
            throw new CudaException($"cuModuleLoadData({file} for {Architecture}, {cubin.Length} bytes)", status);
        }
    }
}
