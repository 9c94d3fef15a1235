#!/usr/bin/env bash
# Stages the Release builds that Benchmarks/scripts/gpu_check.sh runs on the GPU machine (which has no .NET):
#   Benchmarks/scripts/gpu_stage.sh        → .device/LoraRuntime.Tests (with the CLI inside), the packed runtime, run.sh
# Like ../shared/gpu/stage.sh, with three differences that make it work here: the xunit v3 test project keeps its app
# host (v3 refuses UseAppHost=false); one linux-x64 build holds both the tests and the CLI (separate builds with every
# platform's Skia natives come to over 1 GB, far above the 64 MiB a device call carries); and it relies on .gitignore's
# /.device/ instead of writing .git/info/exclude (in a git worktree .git is a file).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
out=$root/.device
mkdir -p "$out"
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
version=$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" { v = $2 } END { print v }')
runtime=$out/dotnet-runtime-$version.tar.xz
if [[ ! -f $runtime ]]; then
  rm -f "$out"/dotnet-runtime-*.tar.xz
  echo "packing .NET runtime $version ..." >&2
  tar -cJf "$runtime" -C "$dotnet_root" dotnet host "shared/Microsoft.NETCore.App/$version"
fi
# One build: the test project's output also holds the CLI (lora.dll with its deps and runtimeconfig), and one runtime
# identifier keeps only the linux-x64 native assets (all of them would be 0.5 GB). Symbols and XML docs stay here.
rm -rf "${out:?}/LoraRuntime.Tests" "${out:?}/LoraRuntime.Cli"
dotnet build "$root/Tests/LoraRuntime.Tests.csproj" -c Release -r linux-x64 --self-contained false -o "$out/LoraRuntime.Tests" \
  --nologo -v quiet >&2
find "$out/LoraRuntime.Tests" \( -name '*.pdb' -o -name '*.xml' \) -delete
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# bash .device/run.sh LoraRuntime.Tests [xunit args...] | lora [lora args...]: runs the test project or the CLI on the
# bundled runtime.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -x /tmp/dotnet/dotnet ]]; then
  mkdir -p /tmp/dotnet && tar -xJf "$here"/dotnet-runtime-*.tar.xz -C /tmp/dotnet
fi
export DOTNET_ROOT=/tmp/dotnet DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
name=$1; shift
case $name in
  lora | LoraRuntime.Cli) exec /tmp/dotnet/dotnet "$here/LoraRuntime.Tests/lora.dll" "$@" ;;
  *) exec /tmp/dotnet/dotnet "$here/$name/$name.dll" "$@" ;;
esac
RUN
chmod +x "$out/run.sh"
du -sh "$out" >&2
