"""Random-weight Qwen3.5 checkpoints of real geometry for `cargo xtask bench`, made on the GPU machine.
Extends ../shared/peers/llama.cpp/make_models.py: FP8 block-128 copies in Qwen's official format and the
35B-A3B MoE geometry with fewer layers.

usage:
  make_models.py hf NAME OUTROOT TOKDIR [--fp8] [--gptq] [--moe-layers N] [--layers N]
      NAME: 0.8B | 9B | 27B | 35B-A3B.  Writes OUTROOT/hf-NAME (BF16, Qwen3_5(Moe)ForCausalLM.save_pretrained) and,
      with --fp8, OUTROOT/hf-NAME-fp8: every linear layer Qwen official block FP8 (float8_e4m3fn weight,
      BF16 `weight_scale_inv` per 128x128 block, quantization_config quant_method fp8, weight_block_size
      [128, 128]); embeddings, head, norms, routers, in_proj_a/b and conv1d stay BF16 as in the releases.
      With --gptq, OUTROOT/hf-NAME-gptq: Qwen's official GPTQ-Int4 layout (GPTQModel `checkpoint_format: gptq`,
      bits 4, group_size 128, sym, desc_act false, the `dynamic` rules "-:.*attn.*", "-:.*shared_expert.*",
      "-:.*mtp.*", "-:.*visual.*"): the dense MLPs and routed experts as qweight / qzeros / scales / g_idx
      (round-to-nearest, not GPTQ's solver: values do not matter for speed), the rest BF16.
      --layers N (alias --moe-layers, default 4): layers of the 35B-A3B and 27B geometries (3 linear : 1 full).
  make_models.py gguf NAME HFDIR GGUFDIR LLAMA_SRC QUANTIZE_BIN [--q4 | --q4-only]
      (--q4: also Q4_0 and Q4_K_M, the 4-bit peers of the GPTQ copy; --q4-only: those without Q8_0, for a
      BF16 folder that is only the GPTQ copy's source)
      llama.cpp's convert_hf_to_gguf.py (BF16) then llama-quantize Q8_0, and GGUFDIR/weights-NAME.json with
      the bytes of weights each format reads per decode token (MoE: routed experts scaled by top_k / experts)
      and the LM head's bytes.
Prints one JSON line per model made (prefix `MODEL `)."""
import glob, json, math, os, shutil, subprocess, sys, time

FP8_MAX = 448.0
# Linear layers a Qwen official FP8 release quantizes (name suffixes of 2-D weights).
QUANTIZED_SUFFIXES = (
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "linear_attn.in_proj_qkv.weight", "linear_attn.in_proj_z.weight", "linear_attn.out_proj.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
    "shared_expert.gate_proj.weight", "shared_expert.up_proj.weight", "shared_expert.down_proj.weight",
)


def DEVICE():
    """The GPU machine's CUDA device (the CPU where there is none)."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def config_for(name, moe_layers):
    import transformers as tf
    if name == "0.8B":
        return tf.Qwen3_5TextConfig(vocab_size=248320, hidden_size=1024, num_hidden_layers=24, num_attention_heads=8,
            num_key_value_heads=2, head_dim=256, linear_num_key_heads=16, linear_key_head_dim=128,
            linear_num_value_heads=16, linear_value_head_dim=128, intermediate_size=3584, tie_word_embeddings=True)
    if name == "9B":
        return tf.Qwen3_5TextConfig()
    if name == "27B":
        # Qwen3.5-27B geometry (hidden 5120, 24/4 heads, 48 value heads, MLP 17408) with `moe_layers`
        # layers instead of 64, keeping the 3 linear : 1 full attention pattern.
        n = moe_layers
        types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(n)]
        return tf.Qwen3_5TextConfig(vocab_size=248320, hidden_size=5120, num_hidden_layers=n, layer_types=types,
            full_attention_interval=4, num_attention_heads=24, num_key_value_heads=4, head_dim=256,
            linear_num_key_heads=16, linear_key_head_dim=128, linear_num_value_heads=48,
            linear_value_head_dim=128, intermediate_size=17408, tie_word_embeddings=False)
    if name == "35B-A3B":
        # Qwen3.5-35B-A3B geometry (hidden 2048, 256 experts of 512, top 8, one shared expert of 512), with
        # `moe_layers` layers instead of 40, keeping the 3 linear : 1 full attention pattern.
        n = moe_layers
        types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(n)]
        return tf.Qwen3_5MoeTextConfig(vocab_size=248320, hidden_size=2048, num_hidden_layers=n,
            layer_types=types, full_attention_interval=4, num_attention_heads=16, num_key_value_heads=2,
            head_dim=256, linear_num_key_heads=16, linear_key_head_dim=128, linear_num_value_heads=32,
            linear_value_head_dim=128, num_experts=256, num_experts_per_tok=8, moe_intermediate_size=512,
            shared_expert_intermediate_size=512, tie_word_embeddings=False)
    raise SystemExit("unknown model " + name)


def make_hf(name, root, tokdir, fp8, moe_layers, gptq=False):
    if not os.path.isdir(tokdir):
        # Checked first: a missing folder used to stop the run after the BF16
        # checkpoint, before the FP8 copy.
        raise SystemExit(f"make_models.py: tokenizer folder {tokdir} does not exist (the peers' tokenizer files)")
    import torch
    import transformers as tf
    t0 = time.time()
    cfg = config_for(name, moe_layers)
    cls = tf.Qwen3_5MoeForCausalLM if name == "35B-A3B" else tf.Qwen3_5ForCausalLM
    hf = os.path.join(root, f"hf-{name}")
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(DEVICE()):
        m = cls(cfg).eval()
    torch.set_default_dtype(torch.float32)
    # N(0, 1/fan_in) for every matrix (values do not matter for speed); 1-D params keep HF init.
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, p.shape[-1] ** -0.5)
    params = sum(p.numel() for p in m.parameters())
    m.save_pretrained(hf, max_shard_size="5GB")
    del m
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    for f in os.listdir(tokdir):
        shutil.copy(os.path.join(tokdir, f), hf)
    info = {"model": name, "dir": hf, "params": params, "seconds": round(time.time() - t0, 1),
            "config": {k: v for k, v in cfg.to_dict().items() if k in ("hidden_size", "num_hidden_layers",
                       "intermediate_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                       "tie_word_embeddings", "layer_types")}}
    print("MODEL " + json.dumps(info), flush=True)
    if fp8:
        t1 = time.time()
        out = hf + "-fp8"
        quantize_folder(hf, out)
        print("MODEL " + json.dumps({"model": name + "-FP8", "dir": out, "seconds": round(time.time() - t1, 1)}),
              flush=True)
    if gptq:
        t1 = time.time()
        out = hf + "-gptq"
        gptq_folder(hf, out)
        print("MODEL " + json.dumps({"model": name + "-GPTQ-Int4", "dir": out,
                                     "seconds": round(time.time() - t1, 1)}), flush=True)


def quant_block(w):
    """128x128 block FP8 E4M3 of a 2-D tensor: (fp8 weight, BF16 scale_inv [ceil(n/128), ceil(k/128)])."""
    import torch
    import torch.nn.functional as F
    n, k = w.shape
    gn, gk = math.ceil(n / 128), math.ceil(k / 128)
    b = F.pad(w.float(), (0, gk * 128 - k, 0, gn * 128 - n)).view(gn, 128, gk, 128)
    s = (b.abs().amax(dim=(1, 3)) / FP8_MAX).clamp(min=1e-12).to(torch.bfloat16)
    q = (b / s.float()[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.view(gn * 128, gk * 128)[:n, :k].contiguous(), s


def is_quantized(name):
    if name.startswith(("model.visual.", "mtp.")):
        return False
    if ".mlp.experts." in name and name.endswith("_proj.weight"):
        return True
    return name.endswith(QUANTIZED_SUFFIXES)


def per_expert(f):
    """(name, tensor) of a safetensors file, fused 3-D experts (`experts.gate_up_proj` [E, 2I, H],
    `experts.down_proj` [E, H, I], as some transformers versions save them) split into the per-expert
    `experts.{e}.{gate,up,down}_proj.weight` of Qwen's FP8 releases."""
    for name in f.keys():
        t = f.get_tensor(name)
        if t.dim() == 3 and name.endswith("mlp.experts.gate_up_proj"):
            base, half = name[: -len("gate_up_proj")], t.shape[1] // 2
            for e in range(t.shape[0]):
                yield f"{base}{e}.gate_proj.weight", t[e, :half]
                yield f"{base}{e}.up_proj.weight", t[e, half:]
        elif t.dim() == 3 and name.endswith("mlp.experts.down_proj"):
            base = name[: -len("down_proj")]
            for e in range(t.shape[0]):
                yield f"{base}{e}.down_proj.weight", t[e]
        else:
            yield name, t


def quantize_folder(src, dst):
    """BF16 folder -> Qwen official block-FP8 folder, shard by shard on the GPU."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    os.makedirs(dst, exist_ok=True)
    weight_map, bf16_modules = {}, set()
    for path in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
        out = {}
        with safe_open(path, "pt", device=DEVICE()) as f:
            meta = f.metadata()
            for name, t in per_expert(f):
                if t.dim() == 2 and is_quantized(name):
                    q, s = quant_block(t)
                    out[name], out[name[: -len(".weight")] + ".weight_scale_inv"] = q, s
                else:
                    out[name] = t
                    if name.endswith(".weight") and t.dim() == 2:
                        bf16_modules.add(name[: -len(".weight")])
        base = os.path.basename(path)
        save_file({k: v.contiguous().cpu() for k, v in out.items()}, os.path.join(dst, base), metadata=meta)
        weight_map.update({k: base for k in out})
        del out
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and f != "model.safetensors.index.json":
            shutil.copy(os.path.join(src, f), dst)
    if os.path.exists(os.path.join(src, "model.safetensors.index.json")):
        json.dump({"metadata": {}, "weight_map": weight_map},
                  open(os.path.join(dst, "model.safetensors.index.json"), "w"), indent=1)
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                  "weight_block_size": [128, 128], "modules_to_not_convert": sorted(bf16_modules)}
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)


GPTQ_GROUP = 128
# GPTQModel's `dynamic` rules of Qwen's GPTQ-Int4 releases (the loader parses them).
QWEN_GPTQ_DYNAMIC = {"-:.*attn.*": {}, "-:.*shared_expert.*": {}, "-:.*mtp.*": {}, "-:.*visual.*": {}}


def gptq_quantized(name):
    """2-D weights Qwen's GPTQ-Int4 releases quantize: the dense MLPs and the routed experts."""
    if not name.endswith(".weight") or ".layers." not in name or name.startswith(("mtp.", "model.visual.")):
        return False
    if "attn" in name or "shared_expert" in name:
        return False
    return name.endswith(("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")) or (
        ".mlp.experts." in name and name.endswith("_proj.weight"))


def to_i32(x):
    """Unsigned 32-bit patterns held in int64 as int32."""
    import torch
    x = x & 0xFFFFFFFF
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def quant_gptq(w, gs=GPTQ_GROUP):
    """Symmetric round-to-nearest 4-bit of w [N, K] (K % gs == 0) as GPTQ v1 tensors: qweight int32 [K/8, N]
    (nibble j of word (w, n) = q[n, 8w + j]), qzeros int32 [K/gs, N/8] (zero point 8 stored as 7, v1's
    offset; nibble j of word (g, m) = column 8m + j), scales F16 [K/gs, N], g_idx int32 [K] = i / gs."""
    import torch
    n, k = w.shape
    g = k // gs
    wf = w.float().view(n, g, gs)
    s = (2 * wf.abs().amax(2) / 15).clamp(min=1e-6).half()
    q = (torch.round(wf / s.float()[:, :, None]) + 8).clamp(0, 15).to(torch.int64).view(n, k)
    qt = q.t().contiguous().view(k // 8, 8, n)
    packed = torch.zeros(k // 8, n, dtype=torch.int64, device=w.device)
    for j in range(8):
        packed |= qt[:, j, :] << (4 * j)
    zeros = torch.full((g, n // 8), 0x77777777, dtype=torch.int64, device=w.device)
    g_idx = (torch.arange(k, device=w.device) // gs).to(torch.int32)
    return to_i32(packed), to_i32(zeros), s.t().contiguous(), g_idx


def gptq_folder(src, dst):
    """BF16 folder -> Qwen official GPTQ-Int4 folder (see the usage), shard by shard on the GPU."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    os.makedirs(dst, exist_ok=True)
    weight_map = {}
    for path in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
        out = {}
        with safe_open(path, "pt", device=DEVICE()) as f:
            meta = f.metadata()
            for name, t in per_expert(f):
                if t.dim() == 2 and gptq_quantized(name):
                    m = name[: -len(".weight")]
                    out[m + ".qweight"], out[m + ".qzeros"], out[m + ".scales"], out[m + ".g_idx"] = quant_gptq(t)
                else:
                    out[name] = t
        base = os.path.basename(path)
        save_file({k: v.contiguous().cpu() for k, v in out.items()}, os.path.join(dst, base), metadata=meta)
        weight_map.update({k: base for k in out})
        del out
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and f != "model.safetensors.index.json":
            shutil.copy(os.path.join(src, f), dst)
    if os.path.exists(os.path.join(src, "model.safetensors.index.json")):
        json.dump({"metadata": {}, "weight_map": weight_map},
                  open(os.path.join(dst, "model.safetensors.index.json"), "w"), indent=1)
    cfg = json.load(open(os.path.join(dst, "config.json")))
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": GPTQ_GROUP, "sym": True,
                                  "desc_act": False, "checkpoint_format": "gptq", "pack_dtype": "int32",
                                  "lm_head": False, "dynamic": QWEN_GPTQ_DYNAMIC}
    json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=1)


def make_gguf(name, hf, gdir, src, qbin, q4=False, q8=True):
    os.makedirs(gdir, exist_ok=True)
    t0 = time.time()
    bf16 = os.path.join(gdir, f"qwen35-{name}-bf16.gguf")
    q8_path = os.path.join(gdir, f"qwen35-{name}-q8_0.gguf")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(src, "gguf-py") + ":" + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, os.path.join(src, "convert_hf_to_gguf.py"), hf, "--outtype", "bf16",
                    "--no-mtp", "--outfile", bf16], check=True, env=env)
    t1 = time.time()
    formats = [("bf16", bf16)]
    if q8:
        subprocess.run([qbin, bf16, q8_path, "Q8_0", str(os.cpu_count())], check=True)
        formats.append(("q8_0", q8_path))
    if q4:
        for fmt in ("Q4_0", "Q4_K_M"):
            path = os.path.join(gdir, f"qwen35-{name}-{fmt.lower()}.gguf")
            subprocess.run([qbin, bf16, path, fmt, str(os.cpu_count())], check=True)
            formats.append((fmt.lower(), path))
    t2 = time.time()
    sys.path.insert(0, os.path.join(src, "gguf-py"))
    import gguf
    cfg = json.load(open(os.path.join(hf, "config.json")))
    cfg = cfg.get("text_config", cfg)
    frac = cfg["num_experts_per_tok"] / cfg["num_experts"] if cfg.get("num_experts") else 1.0
    info = {"model": name, "convert_s": round(t1 - t0, 1), "quantize_s": round(t2 - t1, 1)}
    for fmt, path in formats:
        r = gguf.GGUFReader(path)
        tot = embd = out_b = 0
        per_tok = 0.0
        has_out = False
        for t in r.tensors:
            nb = int(t.n_bytes)
            tot += nb
            if t.name == "token_embd.weight":
                embd = nb
                continue
            has_out |= t.name == "output.weight"
            if t.name == "output.weight":
                out_b = nb
            # routed experts (ffn_*_exps): only top_k of num_experts are read per token
            per_tok += nb * (frac if "_exps" in t.name else 1.0)
        # the embedding table is a row gather, unless tied: then it is read whole as the head
        if not has_out:
            per_tok += embd
        # head_bytes: the LM head (the embedding when tied), the part of a token outside the layers
        info[fmt] = {"file": path, "tensor_bytes": tot, "token_embd_bytes": embd, "has_output_weight": has_out,
                     "head_bytes": out_b if has_out else embd, "bytes_read_per_token": per_tok}
    json.dump(info, open(os.path.join(gdir, f"weights-{name}.json"), "w"), indent=1)
    print("GGUF " + json.dumps(info), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 4 and a[0] == "hf":
        flag = "--layers" if "--layers" in a else "--moe-layers"
        ml = int(a[a.index(flag) + 1]) if flag in a else 4
        make_hf(a[1], a[2], a[3], "--fp8" in a, ml, gptq="--gptq" in a)
    elif len(a) in (6, 7) and a[0] == "gguf" and (len(a) == 6 or a[6] in ("--q4", "--q4-only")):
        make_gguf(*a[1:6], q4=len(a) == 7, q8=len(a) == 6 or a[6] == "--q4")
    else:
        raise SystemExit(__doc__)
