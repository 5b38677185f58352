// The WebGPU timing page: reports the adapter Chromium gives WebGPU, then
// opens each model served under /models/NAME/ and times prefill and decode
// with the same engine calls as the demo page (`WebModel.generate`), posting
// every figure to the local server (benches/webgpu/serve.py) as JSON.
//
// Query: ?probe (adapter only) | ?models=tiny,0.8B&prompts=128,512&decode=64
import init, { WebModel } from "./pkg/qwgpu_web.js";

const q = new URLSearchParams(location.search);
const list = (k, d) => (q.get(k) || d).split(",").filter((s) => s !== "");

async function post(kind, value) {
  await fetch(`/result?kind=${kind}`, { method: "POST", body: JSON.stringify(value) });
}

function message(e) {
  return e && e.message ? e.message : String(e);
}

// What the browser says about its WebGPU adapter, before the engine asks.
async function adapterInfo() {
  if (!navigator.gpu) return { error: "navigator.gpu is missing (WebGPU off)" };
  const a = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!a) return { error: "requestAdapter() returned null" };
  const i = a.info || {};
  const limits = {};
  for (const k of ["maxBufferSize", "maxStorageBufferBindingSize", "maxStorageBuffersPerShaderStage",
    "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup"]) limits[k] = a.limits[k];
  return {
    vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description,
    fallback: a.isFallbackAdapter === true || i.isFallbackAdapter === true,
    features: Array.from(a.features).sort(), limits,
  };
}

// A prompt of exactly `n` tokens when the tokenizer allows (words added by
// bisection over the count; the last token count is reported as measured).
function promptOf(m, n) {
  const words = [];
  for (let i = 0; words.length < 4 * n + 8; i++) words.push(`w${(i * 7919) % 1000} the cat, 3.${i}`);
  const text = (k) => words.slice(0, k).join(" ");
  let lo = 1, hi = words.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (m.encode(text(mid)).length <= n) lo = mid; else hi = mid - 1;
  }
  return text(lo);
}

async function bench(name) {
  const t0 = performance.now();
  let bytes = 0;
  const m = await WebModel.open_url(`/models/${name}/`, (done) => { bytes = done; });
  const load_s = (performance.now() - t0) / 1000;
  await post("loaded", { model: name, load_s, bytes, engine_adapter: m.adapter() });
  const decode = Number(q.get("decode") || 64);
  const noop = () => {};
  // Untimed: compiles every pipeline prefill and decode use.
  await m.generate(promptOf(m, 16), 4, 0, 1, 1, 1n, noop);
  for (const n of list("prompts", "128,512")) {
    const prompt = promptOf(m, Number(n));
    const reps = Number(q.get("reps") || 2);
    for (let r = 0; r < reps; r++) {
      const s = await m.generate(prompt, decode, 0, 1, 1, 1n, noop);
      await post("timing", {
        model: name, rep: r, prompt_tokens: s.prompt_tokens, generated: s.generated,
        prefill_tok_s: s.prefill_tok_s, decode_tok_s: s.decode_tok_s,
      });
    }
  }
  m.free();
}

try {
  await post("adapter", await adapterInfo());
  if (!q.has("probe")) {
    await init();
    for (const name of list("models", "tiny")) {
      try {
        await bench(name);
      } catch (e) {
        await post("error", { model: name, error: message(e) });
      }
    }
  }
} catch (e) {
  await post("error", { error: message(e) });
}
await post("done", {});
