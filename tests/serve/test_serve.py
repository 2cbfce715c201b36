#!/usr/bin/env python3
"""ctest serve_api: `reason serve` answered over real HTTP by Python's own http.client (standard
library only, so the test needs nothing outside the repository; tests/serve/openai_client.py runs
the official `openai` package against the same server where it is installed) and by curl.

The model is tests/fixtures/pipeline/addition-base (trained to answer "<think> ... </think>
\\boxed{N}") with a chat template added, and a copy whose context is 8192 positions (RoPE needs no
new weights) for requests long enough to cancel and to drain.

Usage: test_serve.py REASON FIXTURES_DIR
"""
from serve_harness import *  # noqa: F401,F403 (REASON, FIXTURES, WORK, Server, make_model, check, ...)


def chat_body(**kw):
    return {"model": "m", "messages": QUESTION, "temperature": 0, "max_tokens": 60, **kw}


def test_basics(s, model):
    st, body = s.get("/health")
    check(st == 200 and json.loads(body)["status"] == "ok", "/health")
    st, body = s.get("/v1/models")
    models = json.loads(body)
    check(st == 200 and models["object"] == "list" and models["data"][0]["id"] == "mymodel", f"/v1/models: {body}")

    # Greedy chat: the reasoning and the answer split at </think>, together the text `reason generate` gives.
    st, r = s.post("/v1/chat/completions", chat_body())
    check(st == 200, f"chat: {st} {r}")
    msg = r["choices"][0]["message"]
    raw = generate_cli(model, "User: What is 12 + 30?\nAssistant:", 60)
    check(raw.strip().startswith("<think>") and "</think>" in raw, f"the fixture's own answer has a thinking block: {raw!r}")
    think, answer = raw.split("</think>", 1)
    check(msg["reasoning_content"] == think.split("<think>", 1)[1], f"reasoning_content {msg['reasoning_content']!r} vs {raw!r}")
    check(msg["content"] == answer, f"content {msg['content']!r} vs {raw!r}")
    check(r["choices"][0]["finish_reason"] == "stop", "finish_reason stop")
    check(r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-"), "chat object and id")
    u = r["usage"]
    check(u["prompt_tokens"] == 15 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], f"usage {u}")

    # The raw text on request (llama.cpp's reasoning_format: none).
    st, r = s.post("/v1/chat/completions", chat_body(reasoning_format="none"))
    check(r["choices"][0]["message"]["content"] == raw and "reasoning_content" not in r["choices"][0]["message"],
          "reasoning_format none keeps the raw text")

    # Streaming: the deltas add up to the same message; usage last; then [DONE].
    ev = s.stream("/v1/chat/completions", chat_body(stream=True, stream_options={"include_usage": True}))
    check(ev[-1] == "[DONE]", "stream ends with [DONE]")
    chunks = ev[:-1]
    check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk objects")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first delta has the role")
    rc = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    ct = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    check(rc == msg["reasoning_content"] and ct == msg["content"], f"streamed {rc!r} {ct!r}")
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    check(len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop", "one finish chunk")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == u["completion_tokens"], "usage chunk")

    # Text completions, streamed and not; echo.
    prompt = "User: What is 3 + 4?\nAssistant:"
    st, r = s.post("/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": 40})
    check(st == 200 and r["object"] == "text_completion" and r["choices"][0]["text"] == generate_cli(model, prompt, 40),
          f"completions text {r}")
    ev = s.stream("/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": 40, "stream": True})
    check("".join(c["choices"][0]["text"] for c in ev[:-1]) == r["choices"][0]["text"], "streamed completion")
    st, e = s.post("/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": 5, "echo": True})
    check(e["choices"][0]["text"].startswith(prompt), "echo")


def test_sampling(s):
    # n > 1 with a seed: reproducible, choices differ from each other.
    body = chat_body(temperature=1.0, n=3, seed=1234, max_tokens=30, reasoning_format="none")
    a = s.post("/v1/chat/completions", body)[1]
    b = s.post("/v1/chat/completions", body)[1]
    texts = [c["message"]["content"] for c in a["choices"]]
    check([c["index"] for c in a["choices"]] == [0, 1, 2], "n=3 choices")
    check(texts == [c["message"]["content"] for c in b["choices"]], "the same seed gives the same choices")
    check(len(set(texts)) > 1, f"the choices are sampled independently: {texts}")
    c = s.post("/v1/chat/completions", dict(body, seed=99))[1]
    check([x["message"]["content"] for x in c["choices"]] != texts, "another seed, other choices")
    # Streaming n > 1 gives the same texts as the non-streamed request.
    ev = s.stream("/v1/chat/completions", dict(body, stream=True))
    streamed = ["", "", ""]
    for ch in ev[:-1]:
        for x in ch["choices"]:
            streamed[x["index"]] += x["delta"].get("content", "")
    check(streamed == texts, f"streamed n=3 {streamed} vs {texts}")

    # stop strings end the text before them.
    r = s.post("/v1/chat/completions", chat_body(stop=["+"], reasoning_format="none"))[1]
    check(r["choices"][0]["finish_reason"] == "stop" and "+" not in r["choices"][0]["message"]["content"], f"stop: {r}")
    # max_tokens: finish_reason length.
    r = s.post("/v1/chat/completions", chat_body(max_tokens=3))[1]
    check(r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 3, f"length: {r}")

    # logprobs with top_logprobs: greedy picks the top candidate; probabilities are a distribution.
    r = s.post("/v1/chat/completions", chat_body(logprobs=True, top_logprobs=3, max_tokens=8))[1]
    lp = r["choices"][0]["logprobs"]["content"]
    check(len(lp) == r["usage"]["completion_tokens"], "one logprob entry per token")
    for e in lp:
        top = e["top_logprobs"]
        check(len(top) == 3 and top[0]["token"] == e["token"] and abs(top[0]["logprob"] - e["logprob"]) < 1e-5,
              f"greedy token is the top candidate: {e}")
        check(top[0]["logprob"] >= top[1]["logprob"] >= top[2]["logprob"] and e["logprob"] <= 0, "sorted logprobs")
        check(bytes(e["bytes"]).decode("utf-8", "replace") == e["token"], f"bytes of {e}")
    # Penalties are accepted and change sampling (a strong frequency penalty avoids repeats).
    r = s.post("/v1/chat/completions", chat_body(frequency_penalty=2.0, presence_penalty=2.0, max_tokens=30,
                                                 reasoning_format="none"))[1]
    check(r["choices"][0]["message"]["content"] != s.post("/v1/chat/completions", chat_body(max_tokens=30, reasoning_format="none"))[1]["choices"][0]["message"]["content"],
          "penalties change the greedy text")


def test_errors(s):
    def err(body, status, param, path="/v1/chat/completions", raw=False):
        st, r = s.post(path, body)
        ok = st == status and isinstance(r, dict) and "error" in r and r["error"]["param"] == param and r["error"]["message"]
        check(ok, f"{body!r:.80} -> {st} {r}")
    err(b"{not json", 400, None)
    err(b"[1, 2]", 400, None)
    err({"temperature": 0}, 400, "messages")
    err({"messages": []}, 400, "messages")
    err({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role")
    err({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content")
    err(chat_body(temperature="hot"), 400, "temperature")
    err(chat_body(temperature=3), 400, "temperature")
    err(chat_body(top_p=0), 400, "top_p")
    err(chat_body(max_tokens=0), 400, "max_tokens")
    err(chat_body(max_tokens=10**6), 400, "max_tokens")
    err(chat_body(n=1000), 400, "n")
    err(chat_body(stop=[""]), 400, "stop")
    err(chat_body(stop=7), 400, "stop")
    err(chat_body(top_logprobs=2), 400, "top_logprobs")
    err(chat_body(logprobs=True, top_logprobs=21), 400, "top_logprobs")
    err(chat_body(presence_penalty=5), 400, "presence_penalty")
    err(chat_body(tools=[{"type": "function"}]), 400, "tools")
    err(chat_body(seed="x"), 400, "seed")
    err(chat_body(stream="yes"), 400, "stream")
    err({"prompt": 5}, 400, "prompt", "/v1/completions")
    err({"prompt": [1, 2, 100000]}, 400, "prompt", "/v1/completions")
    err({"messages": [{"role": "user", "content": "1 + 1 = " * 400}]}, 400, "messages")  # past the context
    st, r = s.post("/v1/chat/completions", "x" * (5 << 20))
    check(st == 413 and r["error"]["message"], f"a body above --max-body-bytes: {st}")
    st, r = s.get("/v1/nothing")
    check(st == 404, "unknown route")
    # curl, the other client the issue names: a streamed request, read as a user would.
    out = subprocess.run(["curl", "-sS", "-N", f"http://127.0.0.1:{s.port}/v1/chat/completions", "-H",
                          "Content-Type: application/json", "-d", json.dumps(chat_body(stream=True))],
                         capture_output=True, text=True, timeout=60).stdout
    check(out.rstrip().endswith("data: [DONE]") and '"reasoning_content"' in out, "curl streams the completion")


def test_auth(model):
    key = os.path.join(WORK, "key")
    open(key, "w").write("s3cret-key\n")
    s = Server(model, "--api-key-file", key, "--served-model-name", "mymodel")
    try:
        st, r = s.post("/v1/chat/completions", chat_body())
        check(st == 401 and r["error"]["type"] == "authentication_error", f"no key: {st}")
        st, r = s.post("/v1/chat/completions", chat_body(), {"Authorization": "Bearer wrong"})
        check(st == 401, "wrong key")
        st, r = s.post("/v1/chat/completions", chat_body(), {"Authorization": "Bearer s3cret-key"})
        check(st == 200, f"right key: {st}")
        check(s.get("/health")[0] == 200, "/health needs no key")
        check(s.get("/v1/models")[0] == 401, "/v1/models needs the key")
    finally:
        s.stop()


def test_disconnect_and_drain(long_model):
    s = Server(long_model, "--max-tokens", "8000", "--served-model-name", "mymodel")
    try:
        body = chat_body(max_tokens=8000, ignore_eos=True, stream=True)
        c = s.conn()
        c.request("POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read1(200)  # the first chunks arrived: the sequence is generating
        before = s.metric("reason_generation_tokens_total")
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        wait_metric(s, 'reason_choices_finished_total{finish="abort"}', 1)
        check(s.metric('reason_choices_finished_total{finish="abort"}') == 1, "a client that left cancels its sequence")
        after = s.metric("reason_generation_tokens_total")
        time.sleep(0.3)
        check(s.metric("reason_generation_tokens_total") == after and s.metric("reason_batch_size") == 0,
              "nothing generates after the cancel")
        check(after < 8000, f"cancelled after {after} tokens of 8000 (before the disconnect: {before})")

        # The same for a request that is answered at the end (not streamed).
        c = s.conn()
        c.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(max_tokens=8000, ignore_eos=True)),
                  headers={"Content-Type": "application/json"})
        for _ in range(200):
            if (s.metric("reason_batch_size") or 0) >= 1:
                break
            time.sleep(0.02)
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        check(wait_metric(s, 'reason_choices_finished_total{finish="abort"}', 2) == 2,
              "a non-streaming client that left cancels its sequence too")
        time.sleep(0.3)
        check(s.metric("reason_batch_size") == 0, "nothing generates after that cancel")
        print(f"disconnect: cancelled after {after - before:.0f} more tokens ({before:.0f} before)", flush=True)

        # SIGTERM drains: a request in flight completes, a new one is refused, the server exits 0.
        results = {}

        def long_request():
            results["r"] = s.post("/v1/chat/completions", chat_body(max_tokens=1500, ignore_eos=True))

        t = threading.Thread(target=long_request)
        t.start()
        for _ in range(200):
            if (s.metric("reason_batch_size") or 0) >= 1:
                break
            time.sleep(0.02)
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            st, r = s.post("/v1/chat/completions", chat_body())
            check(st == 503, f"a request while draining: {st}")
        except OSError:
            pass  # already closed: also a refusal
        t.join(timeout=120)
        st, r = results.get("r", (None, None))
        check(st == 200 and r["usage"]["completion_tokens"] == 1500 and r["choices"][0]["finish_reason"] == "length",
              f"the request in flight finished while draining: {st}")
        check(s.proc.wait(timeout=60) == 0, "the server exits 0 after draining")
    finally:
        if s.proc.poll() is None:
            s.stop(signal.SIGKILL)


def test_queue_full(long_model):
    # One sequence in the batch and one request waiting: the next is refused with 429 at once.
    s = Server(long_model, "--max-batch", "1", "--max-queue", "1", "--max-tokens", "8000")
    try:
        body = chat_body(max_tokens=4000, ignore_eos=True)
        threads = [threading.Thread(target=s.post, args=("/v1/chat/completions", body)) for _ in range(2)]
        for t in threads:
            t.start()
        for _ in range(200):
            if (s.metric("reason_batch_size") or 0) == 1 and (s.metric("reason_queue_depth") or 0) >= 1:
                break
            time.sleep(0.02)
        st, r = s.post("/v1/chat/completions", chat_body())
        check(st == 429 and r["error"]["type"] == "rate_limit_exceeded", f"a full queue: {st} {r}")
        for t in threads:
            t.join(timeout=120)
        check(s.post("/v1/chat/completions", chat_body())[0] == 200, "served again once the queue emptied")
    finally:
        check(s.stop() == 0, "SIGTERM exit 0")


def test_concurrent(s):
    # Requests that arrive together share the batch (continuous batching) and each gets its own answer.
    out = [None] * 12

    def one(i):
        out[i] = s.post("/v1/completions", {"prompt": f"User: What is {i} + {i}?\nAssistant:", "temperature": 0,
                                            "max_tokens": 40})
    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (st, r) in enumerate(out):
        check(st == 200 and r["choices"][0]["text"] == generate_cli(s.model, f"User: What is {i} + {i}?\nAssistant:", 40),
              f"concurrent request {i}")
    text = s.get("/metrics")[1]
    m = re.findall(r'reason_batch_size_per_step_bucket\{le="1"\} (\d+)', text)
    total = re.findall(r"reason_batch_size_per_step_count (\d+)", text)
    check(m and total and int(m[0]) < int(total[0]), "some steps decoded several sequences together")


def main():
    model = make_model("mymodel")
    long_model = make_model("long", 8192)
    s = Server(model, "--served-model-name", "mymodel", "--max-body-bytes", str(4 << 20))
    s.model = model
    try:
        test_basics(s, model)
        test_sampling(s)
        test_errors(s)
        test_concurrent(s)
        text = s.get("/metrics")[1]
        for name in ("reason_http_requests_total", "reason_time_to_first_token_seconds_bucket",
                     "reason_time_per_output_token_seconds_count", "reason_queue_depth", "reason_prompt_tokens_total"):
            check(name in text, f"/metrics has {name}")
    finally:
        code = s.stop()
        check(code == 0, f"SIGTERM: exit {code}")
        if failures:
            print(s.output()[-3000:])
    test_auth(model)
    test_queue_full(long_model)
    test_disconnect_and_drain(long_model)
    finish("OK: reason serve")


main()
