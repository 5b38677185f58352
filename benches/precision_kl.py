#!/usr/bin/env python3
"""HF transformers' own BF16-vs-F32 divergence on a bench checkpoint.

The precision policy (issue 17, `qwgpu_model::DEFAULT_PRECISION`) admits the
fast GEMM path only where its divergence from the exact path is no larger than
HF's BF16 inference's divergence from HF's F32 inference on the same tokens.
The committed fixtures carry that figure (`tests/fixtures/*/hf_bf16.json`);
this script measures it on a real-geometry folder made by `make_models.py`.

Random token ids (seeded) go through the model once in float32 and once in
bfloat16 (one forward each, no cache). Per position, in float64: KL(P_f32 ||
P_bf16) and whether the argmaxes agree. Prints one JSON line:

    {"model": .., "tokens": N, "kl_mean": .., "kl_max": .., "top1_agreement": ..}

and writes the ids (comma-separated) to `--ids-out`, for

    qwgpu score --model DIR --reference DIR --precision fast \
        --reference-precision exact --ids "$(cat IDS)" --json

whose KL(reference || model) is the same statistic for qwgpu's fast path.

Run on the GPU machine: `python3 benches/precision_kl.py DIR --tokens 512 --ids-out ids.txt`.
"""

import argparse
import json
import random


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="Hugging Face folder (config.json + safetensors)")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--ids-out", required=True, help="file for the comma-separated ids")
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(args.model)
    text = getattr(cfg, "text_config", cfg)
    rng = random.Random(args.seed)
    # Ids below 150k: ordinary vocabulary entries of every Qwen3.5 tokenizer.
    ids = [rng.randrange(0, min(text.vocab_size, 150000)) for _ in range(args.tokens)]
    with open(args.ids_out, "w") as f:
        f.write(",".join(str(i) for i in ids))

    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = torch.tensor([ids], device=device)

    def logits(dtype):
        m = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
        with torch.no_grad():
            out = m(x, use_cache=False).logits[0].double().cpu()
        del m
        if device == "cuda":
            torch.cuda.empty_cache()
        return out

    f32 = logits(torch.float32)
    b16 = logits(torch.bfloat16)
    lp = torch.log_softmax(f32, dim=-1)
    lq = torch.log_softmax(b16, dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(dim=-1)
    top1 = (f32.argmax(dim=-1) == b16.argmax(dim=-1)).double().mean().item()
    print(
        json.dumps(
            {
                "model": args.model,
                "tokens": len(ids),
                "kl_mean": kl.mean().item(),
                "kl_max": kl.max().item(),
                "top1_agreement": top1,
            }
        )
    )


if __name__ == "__main__":
    main()
