"""What one long prompt does to the running streams of a `qwgpu serve`.

usage: serve_stall.py BASE_URL STREAMS PROMPT_WORDS [MAX_TOKENS]
  STREAMS streaming completions decode; once each has produced 4 tokens, one
  request with a prompt of PROMPT_WORDS words (its token count is printed)
  and max_tokens 1 arrives. Printed: that request's time to first token and
  prompt tokens, and the streams' tokens and largest gap between two tokens
  while it was prefilled. With chunked prefill (`--prefill-chunk N`) the
  streams keep producing tokens; with `--prefill-chunk 0` they stall for the
  whole prefill. The streams' connections are closed at the end (the server
  cancels them).
Only the standard library: runs on any machine with Python 3."""
import http.client, json, sys, threading, time, urllib.parse

BASE = urllib.parse.urlparse(sys.argv[1].rstrip("/"))
STREAMS, WORDS = int(sys.argv[2]), int(sys.argv[3])
MAX_TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 4000


def connection():
    return http.client.HTTPConnection(BASE.hostname, BASE.port or 80, timeout=3600)


def post(body):
    c = connection()
    c.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    return c, c.getresponse()


def stream(i, stamps, ended, stop):
    """Appends the arrival time of each streamed token of request i; sets
    ended[i] when its reply is over (end of sequence or MAX_TOKENS)."""
    _, r = post({"prompt": f"Stream {i}: a long story about the number {i * 13}, told slowly.",
                 "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True})
    while not stop.is_set():
        line = r.readline()
        if not line or line.strip() == b"data: [DONE]":
            ended[i] = time.time()
            break
        if line.startswith(b"data: "):
            stamps.append(time.time())
    r.close()


def main():
    stamps = [[] for _ in range(STREAMS)]
    ended = [None] * STREAMS
    stop = threading.Event()
    threads = [threading.Thread(target=stream, args=(i, stamps[i], ended, stop), daemon=True)
               for i in range(STREAMS)]
    for t in threads:
        t.start()
    while min((len(s) for s in stamps), default=4) < 4:
        time.sleep(0.01)
    prompt = " ".join(f"word{i}" for i in range(WORDS))
    t0 = time.time()
    _, r = post({"prompt": prompt, "max_tokens": 1, "temperature": 0})
    v = json.loads(r.read())
    t1 = time.time()
    stop.set()
    ttft, n = t1 - t0, v["usage"]["prompt_tokens"]
    print(f"long prompt: {n} tokens, time to first token {ttft:.3f} s ({n / ttft:.0f} tok/s)")
    if not STREAMS:
        return
    # Streams whose reply ended before the long prompt's did say nothing about stalls.
    live = [s for s, e in zip(stamps, ended) if e is None or e > t1]
    if not live:
        print("every stream ended before the long prompt's first token: raise MAX_TOKENS")
        return
    during = [[t for t in s if t0 <= t <= t1] for s in live]
    gaps = []
    for s in live:
        before = [t for t in s if t < t0]
        inside = ([before[-1]] if before else []) + [t for t in s if t0 <= t <= t1]
        # The gap still open at t1 counts too: a stream stalled for the whole prefill.
        after = [t for t in s if t > t1]
        edge = after[0] if after else t1
        points = inside + [edge]
        gaps.append(max(b - a for a, b in zip(points, points[1:])))
    tokens = sum(len(d) for d in during)
    print(f"{len(live)} streams while it prefilled: {tokens} tokens ({tokens / ttft:.1f} tok/s total), "
          f"largest gap between two tokens {max(gaps):.3f} s (median stream {sorted(gaps)[len(gaps) // 2]:.3f} s)")


if __name__ == "__main__":
    main()
