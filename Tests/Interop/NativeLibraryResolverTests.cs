using LoraRuntime.Interop;
using Xunit;

namespace LoraRuntime.Tests.Interop;

public sealed class NativeLibraryResolverTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("lora-resolver-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Folder(params string[] parts)
    {
        string path = Path.Combine([_root, .. parts]);
        Directory.CreateDirectory(path);
        return path;
    }

    [Fact]
    public void A_library_found_nowhere_records_every_place_tried_and_does_not_throw()
    {
        string empty = Folder("empty");
        var plan = new LibrarySearchPlan([new SearchDirectory(empty, "test")], ["$X: not set"]);

        var result = NativeLibraryResolver.Search("fake", ["liblora-missing.so.13", "liblora-missing.so.12"], plan);

        Assert.False(result.IsLoaded);
        Assert.Null(result.LoadedFrom);
        Assert.Equal("$X: not set", result.Tried[0]);
        Assert.Contains(result.Tried, t => t.StartsWith(empty, StringComparison.Ordinal) && t.Contains("liblora-missing.so.13 or liblora-missing.so.12"));
        Assert.Contains(result.Tried, t => t.StartsWith("liblora-missing.so.13 (system loader): ", StringComparison.Ordinal));
        Assert.Contains(result.Tried, t => t.StartsWith("liblora-missing.so.12 (system loader): ", StringComparison.Ordinal));
        Assert.Contains("liblora-missing.so.13 / liblora-missing.so.12 not found; tried: $X: not set", result.NotFoundMessage(["liblora-missing.so.13", "liblora-missing.so.12"]));
    }

    [Fact]
    public void A_file_that_is_not_a_library_is_recorded_with_the_loader_reason()
    {
        string folder = Folder("bad");
        string fake = Path.Combine(folder, "liblora-fake.so.1");
        File.WriteAllText(fake, "not an ELF file");
        var plan = new LibrarySearchPlan([new SearchDirectory(folder, "test")], []);

        var result = NativeLibraryResolver.Search("fake", ["liblora-fake.so.1"], plan);

        Assert.False(result.IsLoaded);
        string line = Assert.Single(result.Tried, t => t.StartsWith(fake, StringComparison.Ordinal));
        string reason = line[(line.IndexOf("): ", StringComparison.Ordinal) + 3)..];
        Assert.False(string.IsNullOrWhiteSpace(reason));
        Assert.DoesNotContain("Unable to load shared library", reason); // the runtime's generic advice is dropped
    }

    [Fact]
    public void A_library_in_a_searched_folder_loads_from_that_folder()
    {
        // The C library this process already uses is a real shared library at a known path.
        string? libc = OperatingSystem.IsLinux() && File.Exists("/proc/self/maps")
            ? File.ReadLines("/proc/self/maps").Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault())
                .FirstOrDefault(p => p is not null && p.StartsWith('/') && Path.GetFileName(p) == "libc.so.6")
            : null;
        if (libc is null) Assert.Skip("no libc.so.6 mapped (not glibc Linux)");
        string folder = Path.GetDirectoryName(libc)!;
        var plan = new LibrarySearchPlan([new SearchDirectory(Folder("first"), "test"), new SearchDirectory(folder, "system")], []);

        var result = NativeLibraryResolver.Search("c", ["libc.so.999", "libc.so.6"], plan);

        Assert.True(result.IsLoaded);
        Assert.Equal(Path.Combine(folder, "libc.so.6"), result.LoadedFrom);
        Assert.Single(result.Tried); // only the empty first folder
    }

    [Fact]
    public void The_plan_puts_the_override_first_then_CUDA_13_wheels_then_other_wheels_then_the_toolkit()
    {
        string overrideDir = Folder("override");
        string venv = Folder("venv");
        string cublas = Folder("venv", "lib", "python3.12", "site-packages", "nvidia", "cublas", "lib");
        string cu13 = Folder("venv", "lib", "python3.12", "site-packages", "nvidia", "cu13", "lib");
        Folder("venv", "lib", "python3.12", "site-packages", "nvidia", "nolib"); // no lib folder: skipped
        string older = Folder("venv", "lib", "python3.9", "site-packages", "nvidia", "cuda_nvrtc", "lib");
        string toolkit = Folder("toolkit", "lib64");
        var variables = new Dictionary<string, string>
        {
            ["LORA_CUDA_LIB_DIR"] = overrideDir,
            ["VIRTUAL_ENV"] = venv,
            ["CUDA_HOME"] = Path.Combine(_root, "toolkit"),
        };

        var plan = LibrarySearchPlan.FromEnvironment(v => variables.GetValueOrDefault(v), home: null);

        var paths = plan.Directories.Select(d => d.Path).ToList();
        Assert.Equal([overrideDir, cu13, cublas, older], paths.Take(4));
        Assert.True(paths.IndexOf(toolkit) > 3);
        Assert.Equal("LORA_CUDA_LIB_DIR", plan.Directories[0].Source);
        Assert.DoesNotContain(plan.Notes, n => n.Contains("LORA_CUDA_LIB_DIR", StringComparison.Ordinal));
    }

    [Fact]
    public void The_plan_notes_unset_variables_and_a_missing_override_folder()
    {
        var unset = LibrarySearchPlan.FromEnvironment(_ => null, home: null);
        Assert.Contains("$LORA_CUDA_LIB_DIR: not set", unset.Notes);
        Assert.Contains("$CUDA_PATH, $CUDA_HOME: not set", unset.Notes);

        string missing = Path.Combine(_root, "nope");
        var bad = LibrarySearchPlan.FromEnvironment(v => v == "LORA_CUDA_LIB_DIR" ? missing : null, home: null);
        Assert.Contains($"$LORA_CUDA_LIB_DIR={missing}: no such folder", bad.Notes);
    }

    [Fact]
    public void An_unknown_library_name_is_a_result_not_an_exception()
    {
        var result = NativeLibraryResolver.Load("not-a-cuda-library");
        Assert.False(result.IsLoaded);
        Assert.Contains(result.Tried, t => t.Contains("not a library this resolver knows", StringComparison.Ordinal));
    }

    [Fact]
    public void The_loader_reason_keeps_the_loader_lines_only()
    {
        const string message = "Unable to load shared library 'libx.so.1' or one of its dependencies. In order to help diagnose loading problems, consider using a tool like strace.\nlibx.so.1: cannot open shared object file: No such file or directory\n";
        Assert.Equal("cannot open shared object file: No such file or directory", NativeLibraryResolver.LoaderReason(message, "libx.so.1"));
        Assert.Equal("odd", NativeLibraryResolver.LoaderReason(" odd ", "libx.so.1"));
    }

    [Fact]
    public void Every_CUDA_library_has_file_names_newest_first()
    {
        foreach (string library in CudaLibraryNames.All)
            Assert.NotEmpty(CudaLibraryNames.FileNames(library));
        Assert.Equal(["libcuda.so.1"], CudaLibraryNames.FileNames(CudaLibraryNames.Driver));
        Assert.Equal(["libcublas.so.13", "libcublas.so.12"], CudaLibraryNames.FileNames(CudaLibraryNames.Cublas));
        Assert.Equal(["libcusolver.so.12", "libcusolver.so.11"], CudaLibraryNames.FileNames(CudaLibraryNames.Cusolver));
        Assert.Equal(["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"], CudaLibraryNames.FileNames(CudaLibraryNames.Nvrtc));
    }
}
