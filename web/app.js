// The demo page: open a model (URL or picked folder), chat with streaming
// output, show the adapter, load progress and tok/s. No framework.
import init, { WebModel } from "./pkg/qwgpu_web.js";

const $ = (id) => document.getElementById(id);
let model = null;
const history = [];

function progress(done, total) {
  $("progress").max = total || 1;
  $("progress").value = done;
  const pct = total ? ((100 * done) / total).toFixed(0) : 0;
  $("load").textContent = `${done} / ${total} bytes (${pct}%)`;
}

function fail(e) {
  console.log(`qwgpu: error: ${e && e.message ? e.message : e}`);
  $("status").textContent = String(e && e.message ? e.message : e);
  $("status").className = "error";
}

async function open(how) {
  $("send").disabled = true;
  $("status").className = "";
  $("status").textContent = "loading…";
  try {
    model = await how();
    $("adapter").textContent = model.adapter();
    console.log(`qwgpu: adapter ${model.adapter()}`);
    $("status").textContent = "ready";
    $("send").disabled = false;
    // `?autosend` sends the prompt at once (the GPU machine's script uses it).
    if (new URLSearchParams(location.search).has("autosend")) send();
  } catch (e) {
    fail(e);
  }
}

async function send() {
  const text = $("prompt").value;
  const chat = $("chat");
  const user = document.createElement("div");
  user.className = "user";
  user.textContent = "> " + text;
  chat.append(user);
  const answer = document.createElement("div");
  answer.className = "answer";
  chat.append(answer);
  $("send").disabled = true;
  $("stop").disabled = false;
  try {
    let prompt = text;
    if (!$("raw").checked) {
      history.push({ role: "user", content: text });
      prompt = model.chat_prompt(JSON.stringify(history));
    }
    const stats = await model.generate(prompt, Number($("max").value), Number($("temp").value),
      20, 0.95, BigInt(Date.now()), (piece) => { answer.textContent += piece; });
    if (!$("raw").checked) history.push({ role: "assistant", content: answer.textContent });
    $("status").textContent =
      `prefill ${stats.prefill_tok_s.toFixed(1)} tok/s (${stats.prompt_tokens} tokens), ` +
      `decode ${stats.decode_tok_s.toFixed(1)} tok/s (${stats.generated} tokens)` +
      (stats.cancelled ? ", stopped" : "");
    answer.dataset.done = "1";
    console.log(`qwgpu: ${$("status").textContent}`);
  } catch (e) {
    fail(e);
  }
  $("send").disabled = false;
  $("stop").disabled = true;
}

await init();
if (!navigator.gpu) fail("this browser has no WebGPU (Chromium: start it with --enable-unsafe-webgpu)");
$("open-url").onclick = () => open(() => WebModel.open_url($("url").value, progress));
$("files").onchange = () => open(() => WebModel.open_files(Array.from($("files").files), progress));
$("send").onclick = send;
$("stop").onclick = () => model && model.cancel();
// `?autoload` opens the URL at once (the browser test uses it).
if (new URLSearchParams(location.search).has("autoload")) $("open-url").click();
