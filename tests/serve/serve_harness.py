"""What the `reason serve` tests share: a model with a chat template made from the
addition-base fixture, a server on a free port, and a small HTTP client of the standard library.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REASON, FIXTURES = sys.argv[1], sys.argv[2]  # every test script takes REASON FIXTURES_DIR
WORK = tempfile.mkdtemp(prefix="reason-serve-")
TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}Assistant:{% endif %}")
QUESTION = [{"role": "user", "content": "What is 12 + 30?"}]
failures = []
checks = [0]


def check(cond, what):
    checks[0] += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def make_model(name, max_pos=None):
    d = os.path.join(WORK, name)
    shutil.copytree(os.path.join(FIXTURES, "pipeline/addition-base"), d)
    tc = json.load(open(os.path.join(d, "tokenizer_config.json")))
    tc["chat_template"] = TEMPLATE
    json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"))
    if max_pos:
        c = json.load(open(os.path.join(d, "config.json")))
        c["max_position_embeddings"] = max_pos
        json.dump(c, open(os.path.join(d, "config.json"), "w"))
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model, *extra):
        self.port = free_port()
        self.log = open(os.path.join(WORK, f"server-{self.port}.log"), "w+")
        self.proc = subprocess.Popen([REASON, "--threads", "1", "serve", "--model", model, "--port", str(self.port)] +
                                     list(extra), stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start: " + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self, path, headers=None):
        c = self.conn()
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read().decode()

    def post(self, path, body, headers=None):
        c = self.conn()
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        c.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = c.getresponse()
        text = r.read().decode()
        try:
            return r.status, json.loads(text)
        except json.JSONDecodeError:
            return r.status, text

    def stream(self, path, body):
        """The server-sent events of a streaming request, parsed; the last is '[DONE]'."""
        c = self.conn()
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        assert r.getheader("Content-Type").startswith("text/event-stream")
        events = []
        for block in r.read().decode().split("\n\n"):
            if block.startswith("data: "):
                payload = block[len("data: "):]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return events

    def metric(self, name):
        text = self.get("/metrics")[1]
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)


def generate_cli(model, prompt, max_tokens):
    out = subprocess.run([REASON, "--threads", "1", "generate", "--model", model, "--prompt", prompt, "--temperature", "0", "--max-tokens",
                          str(max_tokens)], capture_output=True, text=True, check=True)
    return out.stdout.rstrip("\n")




def wait_metric(s, name, value, tries=200):
    """Polls the server's /metrics until `name` equals `value` (50 ms apart); returns the last value."""
    v = None
    for _ in range(tries):
        v = s.metric(name)
        if v == value:
            break
        time.sleep(0.05)
    return v


def finish(ok_line):
    """Removes the work directory and ends the script: the failures, or ok_line with the count."""
    shutil.rmtree(WORK, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print(f"{ok_line} ({checks[0]} checks)")
