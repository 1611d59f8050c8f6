#!/usr/bin/env python3
"""Drives `landauer serve` with the openai Python package, as its users' tools do.

    python3 scripts/openai-clients.py BASE_URL MODEL_ID

Checks, with greedy requests (temperature 0):
- completions and chat completions, whole and streamed: the streamed text is the whole text,
  each streamed token carries entropy, surprisal and joules in its `landauer` object, and
  they add up to the usage's `energy_j`;
- six requests sent at once (parallel clients) give the texts those requests give alone,
  while they share the server's continuous batch (/metrics shows steps of several rows);
- every response's `usage.energy_j`, added up, is the energy the server's meter measured while
  its engine worked, `landauer_busy_energy_joules_total` on /metrics (within 0.1%), and the
  server's billed total `landauer_energy_joules_total`.
Prints a JSON summary; exits non-zero at the first failed check.
"""
import concurrent.futures
import json
import sys
import urllib.request

from openai import OpenAI


def main():
    base, model = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base + "/v1", api_key="not-needed", max_retries=0)
    billed = []

    def completion(prompt, n=8):
        r = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0)
        billed.append(r.usage.model_extra["energy_j"])
        return r

    # Whole and streamed completions.
    whole = completion("The cat sat on")
    text = whole.choices[0].text
    assert whole.usage.completion_tokens >= 1, whole
    assert whole.usage.model_extra["energy_j"] > 0, whole.usage
    assert whole.usage.model_extra["mean_entropy_bits"] >= 0, whole.usage
    pieces, joules, usage = [], [], None
    for chunk in client.completions.create(
        model=model, prompt="The cat sat on", max_tokens=8, temperature=0, stream=True
    ):
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
        extra = chunk.model_extra or {}
        if extra.get("landauer"):
            joules.append(extra["landauer"]["energy_j"])
            assert extra["landauer"]["entropy_bits"] >= 0
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == text, (pieces, text)
    total = usage.model_extra["energy_j"]
    assert abs(sum(joules) - total) <= 1e-9 * total, (sum(joules), total)
    billed.append(total)

    # Whole and streamed chat.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    billed.append(chat.usage.model_extra["energy_j"])
    answer = chat.choices[0].message.content
    assert chat.choices[0].message.role == "assistant"
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0, stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == answer, (pieces, answer)
    billed.append(usage.model_extra["energy_j"])

    def metric(text, name):
        line = next(l for l in text.splitlines() if l.startswith(name + " "))
        return float(line.split()[-1])

    # Parallel clients: the texts the same requests give alone, decoded together.
    prompts = [f"Story {i}: once upon a time" for i in range(6)]
    n = 48
    alone = [completion(p, n).choices[0].text for p in prompts]
    before = urllib.request.urlopen(base + "/metrics").read().decode()
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        together = [r.choices[0].text for r in pool.map(lambda p: completion(p, n), prompts)]
    assert together == alone, (together, alone)
    after = urllib.request.urlopen(base + "/metrics").read().decode()
    steps = metric(after, "landauer_batch_size_count") - metric(before, "landauer_batch_size_count")
    rows = metric(after, "landauer_batch_size_sum") - metric(before, "landauer_batch_size_sum")
    assert steps > 0 and rows / steps > 1.0, ("the parallel requests never shared a step", rows, steps)

    # Every response's joules add up to what the meter measured while the engine worked.
    metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    server = metric(metrics, "landauer_energy_joules_total")
    busy = metric(metrics, "landauer_busy_energy_joules_total")
    assert abs(server - sum(billed)) <= 1e-6 * server, (server, sum(billed))
    assert abs(busy - sum(billed)) <= 1e-3 * busy, (busy, sum(billed))
    print(json.dumps({
        "openai": __import__("openai").__version__,
        "responses": len(billed),
        "billed_j": sum(billed),
        "server_j": server,
        "busy_j": busy,
        "parallel_mean_batch": rows / steps,
        "completion": text,
        "chat": answer,
    }))


if __name__ == "__main__":
    main()
