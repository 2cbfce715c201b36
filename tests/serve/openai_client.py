#!/usr/bin/env python3
"""ctest serve_openai: the official `openai` Python package (PyPI) as the client of `reason serve`:
chat and text completions, streaming, n > 1, logprobs, stop, seed reproducibility, reasoning_content
(a model that answers "<think> ... </think> \\boxed{N}"), its errors for bad requests and keys, and a
stream closed early (the server cancels the sequence). Registered by CMake only when
REASON_OPENAI_PYTHON names a Python with `openai` installed (a developer machine: CI installs
nothing from PyPI); tests/serve/test_serve.py covers the same ground with the standard library.

Usage: PYTHON_WITH_OPENAI openai_client.py REASON FIXTURES_DIR
"""
import openai

from serve_harness import *  # noqa: F401,F403


def main():
    model = make_model("mymodel")
    long_model = make_model("long", 8192)
    key = os.path.join(WORK, "key")
    open(key, "w").write("k-123\n")
    s = Server(long_model, "--served-model-name", "mymodel", "--api-key-file", key, "--max-tokens", "8000")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="k-123", max_retries=0)
    try:
        check([m.id for m in client.models.list()] == ["mymodel"], "models.list")
        msgs = [{"role": "user", "content": "What is 12 + 30?"}]
        r = client.chat.completions.create(model="mymodel", messages=msgs, temperature=0, max_tokens=60)
        m = r.choices[0].message
        reasoning = getattr(m, "reasoning_content", None)
        check(reasoning and "12+30" in reasoning and m.content.strip() == "\\boxed{42}", f"chat: {m}")
        check(r.choices[0].finish_reason == "stop" and r.usage.prompt_tokens == 15, f"chat finish/usage: {r}")

        stream = client.chat.completions.create(model="mymodel", messages=msgs, temperature=0, max_tokens=60, stream=True,
                                                stream_options={"include_usage": True})
        rc, ct, usage = "", "", None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                rc += getattr(ch.delta, "reasoning_content", None) or ""
                ct += ch.delta.content or ""
        check(rc == reasoning and ct == m.content, f"streamed deltas add up: {rc!r} {ct!r}")
        check(usage and usage.completion_tokens == r.usage.completion_tokens, "stream usage")

        a = client.chat.completions.create(model="mymodel", messages=msgs, temperature=1.0, n=3, seed=7, max_tokens=30)
        b = client.chat.completions.create(model="mymodel", messages=msgs, temperature=1.0, n=3, seed=7, max_tokens=30)
        ta = [(c.message.reasoning_content, c.message.content) for c in a.choices]
        check(len(a.choices) == 3 and ta == [(c.message.reasoning_content, c.message.content) for c in b.choices],
              "n=3, seed reproducible")
        check(len(set(ta)) > 1, "independent choices")

        r = client.chat.completions.create(model="mymodel", messages=msgs, temperature=0, max_tokens=8, logprobs=True,
                                           top_logprobs=2)
        lp = r.choices[0].logprobs.content
        check(len(lp) == 8 and all(len(e.top_logprobs) == 2 and e.top_logprobs[0].token == e.token for e in lp),
              "logprobs with top_logprobs")

        r = client.chat.completions.create(model="mymodel", messages=msgs, temperature=0, max_tokens=60, stop=["+"],
                                           extra_body={"reasoning_format": "none"})
        check(r.choices[0].finish_reason == "stop" and "+" not in r.choices[0].message.content, "stop")

        c = client.completions.create(model="mymodel", prompt="User: What is 3 + 4?\nAssistant:", temperature=0,
                                      max_tokens=40, logprobs=1)
        check(c.choices[0].text.startswith(" <think>") and c.choices[0].finish_reason in ("stop", "length") and
              len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens == len(c.choices[0].logprobs.top_logprobs),
              f"completions: {c.choices[0].text!r}")

        try:
            client.chat.completions.create(model="mymodel", messages=msgs, temperature=5)
            check(False, "temperature 5 accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and e.body["param"] == "temperature", f"400 names the field: {e.body}")
        try:
            openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="wrong", max_retries=0).models.list()
            check(False, "a wrong key accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, "401 for a wrong key")

        # A stream the client closes early: the server cancels the sequence.
        stream = client.chat.completions.create(model="mymodel", messages=msgs, max_tokens=8000, stream=True,
                                                extra_body={"ignore_eos": True})
        for i, _ in enumerate(stream):
            if i == 5:
                break
        stream.close()
        wait_metric(s, 'reason_choices_finished_total{finish="abort"}', 1)
        check(s.metric('reason_choices_finished_total{finish="abort"}') == 1, "closing the stream cancels the sequence")
    finally:
        check(s.stop() == 0, "SIGTERM exit 0")
        if failures:
            print(s.output()[-3000:])
    finish(f"OK: the openai package ({openai.__version__}) against reason serve")


main()
