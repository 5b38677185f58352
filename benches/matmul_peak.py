"""Tensor-core limit for the prefill roofline: torch bf16 matmul 8192^3, best of 3 x 10. Prints JSON."""
import json, time, torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
best = 0.0
for _ in range(3):
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10): a @ b
    torch.cuda.synchronize(); best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t))
print(json.dumps({"bf16_matmul_flops": best, "gpu": torch.cuda.get_device_name(0)}))
