using System.IO.Compression;
using System.Reflection;
using LoraRuntime.Layers.Text;

namespace LoraRuntime.Tests.Support;

/// <summary>
/// A real byte-level BPE vocabulary from a tiktoken file as Microsoft.ML.Tokenizers.Data.* ship it (a deflated
/// resource, one base64 token a line), with the merges that rebuild it: each token of two or more bytes is the merge of
/// the two parts that byte-level BPE, restricted to the ranks below its own, leaves of it.
/// </summary>
internal static class TiktokenRanks
{
    /// <summary>The tokens (byte-level strings) by rank, and the merges in rank order.</summary>
    public static (Dictionary<string, int> Vocabulary, List<(string Left, string Right)> Merges) Load(string assemblyName, string resource)
    {
        var assembly = Assembly.Load(assemblyName);
        using var stream = assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"no {resource} in {assembly.FullName}: {string.Join(", ", assembly.GetManifestResourceNames())}");
        using var text = new StreamReader(new DeflateStream(stream, CompressionMode.Decompress));
        var byRank = new List<(string Token, int Rank)>();
        // The file opens with a "Capacity: N" line; a line without a rank has the next one.
        for (string? line; (line = text.ReadLine()) is not null;)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            int rank = space < 0 ? byRank.Count : int.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            byRank.Add((ByteLevel.Encode(Convert.FromBase64String(space < 0 ? line : line[..space])), rank));
        }
        byRank.Sort((a, b) => a.Rank.CompareTo(b.Rank));
        var rankOf = byRank.ToDictionary(p => p.Token, p => p.Rank, StringComparer.Ordinal);
        var merges = new List<(string, string)>();
        foreach (var (token, rank) in byRank)
        {
            if (token.Length < 2) continue;
            var parts = token.Select(c => c.ToString()).ToList();
            while (true)
            {
                int best = -1, bestRank = rank;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (rankOf.TryGetValue(parts[i] + parts[i + 1], out int r) && r < bestRank) (best, bestRank) = (i, r);
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count != 2) throw new InvalidDataException($"{resource}: token '{token}' (rank {rank}) is not the merge of two lower-ranked tokens");
            merges.Add((parts[0], parts[1]));
        }
        return (rankOf, merges);
    }
}
