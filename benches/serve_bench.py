"""Throughput and multi-turn time-to-first-token of a running `qwgpu serve`.

usage: serve_bench.py BASE_URL MODE [args]
  throughput N MAX_TOKENS   N concurrent requests (distinct prompts), total generated tok/s
  chat TURNS                a TURNS-turn chat (whole conversation resent each turn, as chat
                            clients do); per turn: latency of a 1-token reply (= time to
                            first token) and the prompt tokens the prefix cache served
Only the standard library: runs on any machine with Python 3."""
import json, sys, threading, time, urllib.request

BASE = sys.argv[1].rstrip("/")


def post(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def throughput(n, max_tokens):
    results = [None] * n

    def one(i):
        v = post("/v1/completions", {"prompt": f"Request {i}: a story about the number {i * 13} and",
                                     "max_tokens": max_tokens, "temperature": 0})
        results[i] = v["usage"]["completion_tokens"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    tokens = sum(r or 0 for r in results)
    print(f"throughput: {n:3d} concurrent streams x {max_tokens} tokens: {tokens} tokens in {wall:.2f} s "
          f"= {tokens / wall:.1f} tok/s total ({tokens / wall / n:.1f} per stream)", flush=True)


def chat(turns):
    history = []
    filler = " ".join(f"word{i}" for i in range(150))
    for k in range(1, turns + 1):
        history.append({"role": "user", "content": f"Turn {k}. Please consider: {filler}"})
        t0 = time.time()
        v = post("/v1/chat/completions", {"messages": history, "max_tokens": 1, "temperature": 0})
        ttft = time.time() - t0
        u = v["usage"]
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        print(f"chat turn {k}: prompt {u['prompt_tokens']} tokens, {cached} from the prefix cache, "
              f"time to first token {ttft * 1000:.1f} ms", flush=True)
        # The reply of the turn (32 tokens), kept in the history like a client does.
        v = post("/v1/chat/completions", {"messages": history, "max_tokens": 32, "temperature": 0})
        history.append({"role": "assistant", "content": v["choices"][0]["message"]["content"]})


if __name__ == "__main__":
    mode = sys.argv[2]
    if mode == "throughput":
        throughput(int(sys.argv[3]), int(sys.argv[4]))
    else:
        chat(int(sys.argv[3]))
