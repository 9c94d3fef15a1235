// llama.cpp's CPU time for the shapes `lora bench latency` measures, through node-llama-cpp's prebuilt binaries:
// a prefill of PROMPT tokens into an empty sequence, and one decode step (logits of one new token) after CONTEXT
// tokens cached; with --sequences N (> 1), also one decode step of N sequences at once, each with CONTEXT cached (their
// tokens evaluated concurrently, which node-llama-cpp batches into one llama_decode).
// Usage: node compare_llamacpp.mjs MODEL.gguf [--prompt 32] [--context 128] [--reps 30] [--threads 2] [--sequences 1]
// Prints one JSON line: medians in ms, the variant of llama.cpp's CPU backend that loaded, the thread count.
import { readFileSync } from "node:fs";
import { getLlama } from "node-llama-cpp";

const args = process.argv.slice(2);
const modelPath = args[0];
const option = (name, fallback) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : fallback;
};
const prompt = option("--prompt", 32), context = option("--context", 128), reps = option("--reps", 30), threads = option("--threads", 2);
const sequences = option("--sequences", 1);
if (!modelPath) throw new Error("usage: node compare_llamacpp.mjs MODEL.gguf [--prompt N] [--context N] [--reps N] [--threads N]");

const median = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const llama = await getLlama({ gpu: false, build: "never", logLevel: "warn" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
const ctx = await model.createContext({ contextSize: 512, batchSize: 512, threads, sequences: 1 });
const sequence = ctx.getSequence();
const vocabulary = model.tokens.count ?? 49152;
let seed = 11;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % Math.min(vocabulary, 256 + 4096);

async function prefill() {
    await sequence.clearHistory();
    const tokens = Array.from({ length: prompt }, random);
    const start = process.hrtime.bigint();
    const it = sequence.evaluate(tokens, { temperature: 0 });
    await it.next(); // the prompt's logits and the first token drawn
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    await it.return();
    return ms;
}

async function decode() {
    await sequence.clearHistory();
    await sequence.evaluateWithoutGeneratingNewTokens(Array.from({ length: context }, random));
    const times = [];
    for (let i = 0; i < Math.min(reps, 512 - context - 1); i++) {
        const start = process.hrtime.bigint();
        const it = sequence.evaluate([random()], { temperature: 0 });
        await it.next();
        times.push(Number(process.hrtime.bigint() - start) / 1e6);
        await it.return();
        // Keep the cache at CONTEXT + 1 tokens: drop the token just added.
        await sequence.eraseContextTokenRanges([{ start: context, end: sequence.nextTokenIndex }]);
    }
    return times;
}

/** The ggml CPU backend variant loaded (libggml-cpu-VARIANT.so: the kernels llama.cpp chose for this CPU). */
function cpuVariant() {
    try {
        const maps = readFileSync("/proc/self/maps", "utf8");
        const found = maps.match(/libggml-cpu-([a-z0-9_-]+)\.so/);
        return found ? found[1] : "unknown";
    } catch {
        return "unknown";
    }
}

async function batchDecode() {
    if (sequences <= 1) return null;
    const batchCtx = await model.createContext({ contextSize: sequences * (context + 8), batchSize: Math.max(512, sequences), threads, sequences });
    const seqs = Array.from({ length: sequences }, () => batchCtx.getSequence());
    for (const s of seqs) await s.evaluateWithoutGeneratingNewTokens(Array.from({ length: context }, random));
    const step = async (s) => {
        const it = s.evaluate([random()], { temperature: 0 });
        await it.next();
        await it.return();
    };
    const times = [];
    for (let i = 0; i < reps + 3; i++) {
        const start = process.hrtime.bigint();
        await Promise.all(seqs.map(step));
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        if (i >= 3) times.push(ms);
        await Promise.all(seqs.map((s) => s.eraseContextTokenRanges([{ start: context, end: s.nextTokenIndex }])));
    }
    await batchCtx.dispose();
    return median(times);
}

for (let i = 0; i < 3; i++) await prefill();
const prefills = [];
for (let i = 0; i < reps; i++) prefills.push(await prefill());
await decode();
const decodes = await decode();
const batch = await batchDecode();
console.log(JSON.stringify({
    model: modelPath, prompt, context, threads, reps, sequences,
    prefill_ms_p50: median(prefills), decode_ms_p50: median(decodes), batch_decode_ms_p50: batch,
    llama_cpp: llama.llamaCppRelease ?? null, cpu_variant: cpuVariant(),
}));
await ctx.dispose();
await model.dispose();
await llama.dispose();
