#!/usr/bin/env python3
"""Drives `landauer serve` with the openai Python package, as its users' tools do.

    python3 scripts/openai-clients.py BASE_URL MODEL_ID

Checks, with greedy requests (temperature 0):
- completions and chat completions, whole and streamed: the streamed text is the whole text,
  each streamed token carries entropy, surprisal and joules in its `landauer` object, and
  they add up to the usage's `energy_j`;
- six requests sent at once (parallel clients) give the texts those requests give alone;
- every response's `usage.energy_j`, added up, is the server's
  `landauer_energy_joules_total` on /metrics (within 0.1%).
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

    # Parallel clients: the texts the same requests give alone.
    prompts = [f"Story {i}: once upon a time" for i in range(6)]
    alone = [completion(p, 6).choices[0].text for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        together = [r.choices[0].text for r in pool.map(lambda p: completion(p, 6), prompts)]
    assert together == alone, (together, alone)

    # Every response's joules add up to the server's total.
    metrics = urllib.request.urlopen(base + "/metrics").read().decode()
    line = next(l for l in metrics.splitlines() if l.startswith("landauer_energy_joules_total "))
    server = float(line.split()[-1])
    assert abs(server - sum(billed)) <= 1e-3 * server, (server, sum(billed))
    print(json.dumps({
        "openai": __import__("openai").__version__,
        "responses": len(billed),
        "billed_j": sum(billed),
        "server_j": server,
        "completion": text,
        "chat": answer,
    }))


if __name__ == "__main__":
    main()
