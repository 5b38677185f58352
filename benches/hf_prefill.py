"""HF transformers prefill speed on a model folder (bf16, on the GPU), random token ids, batch 1.
usage: hf_prefill.py HFDIR LENS   (LENS e.g. 512,4096). Prints one JSON line: the linear-attention kernels in
use (fla's Triton kernels when `fla` is importable, else transformers' torch fallback), load time, and per
length the best of 3 timed forwards after one warm-up (logits of the last token only)."""
import json, sys, time, torch
from transformers import AutoModelForCausalLM

hf, lens = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
try:
    import fla  # noqa: F401
    fla_ok = True
except Exception:
    fla_ok = False
t0 = time.time()
m = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.bfloat16, device_map="cuda").eval()
torch.cuda.synchronize()
load_s = time.time() - t0
# Which linear-attention kernels the modeling code picked: fla's (Triton) or transformers' torch fallback. They
# are module globals of the modeling file or attributes of the layers, depending on the transformers version.
kernels = set()
names = ("chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "causal_conv1d_fn", "is_fast_path_available")
modeling = sys.modules.get(type(m).__module__)
for owner in [modeling] + list(m.modules()):
    for name in names:
        f = getattr(owner, name, None) if owner is not None else None
        if f is not None:
            kernels.add(f"{name}: {getattr(f, '__module__', None) or f}")
vocab = m.config.get_text_config().vocab_size
g = torch.Generator(device="cuda").manual_seed(0)
rows = []
with torch.inference_mode():
    for n in lens:
        ids = torch.randint(0, vocab, (1, n), device="cuda", generator=g)
        best = float("inf")
        for i in range(4):
            torch.cuda.synchronize()
            t = time.perf_counter()
            m(input_ids=ids, use_cache=False, logits_to_keep=1)
            torch.cuda.synchronize()
            if i > 0:
                best = min(best, time.perf_counter() - t)
        rows.append({"tokens": n, "seconds": best, "tok_s": n / best})
print(json.dumps({"fla": fla_ok, "kernels": sorted(kernels), "load_s": load_s, "prefill": rows,
                  "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}))
