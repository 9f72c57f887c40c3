"""A stand-in for vLLM's OpenAI-compatible server, for fault tests that drive `drp` in a subprocess: it answers
every stage of the program (the fields a prompt asks for, as `scripted_lm` fills them) and `/tokenize`, logs each request (its
stage, the item it is about, the Authorization header) to a JSONL file, and can be told to be slow, to answer
garbage or to hang.

Run as a script: `python fake_server.py --port-file F --log L [--delay S] [--mode ok|garbage|hang]`; it writes
its port to F once it listens."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scripted_lm import _FIELD, _OUTPUT_FIELDS, ScriptedLM  # noqa: E402

MODEL = "drp-default"
END_TOKEN = 151645
_ITEM = re.compile(r"\[\[ ## item ## \]\]\n([^\n]*)")  # "Artist - Album. Its description."


def answer(prompt: str) -> str:
    """The JSON object of the output fields the prompt asks for (the JSON adapter's format)."""
    fields = _FIELD.findall(_OUTPUT_FIELDS.search(prompt).group(1))
    return json.dumps({field: ScriptedLM._answer(field, prompt, prompt, 1) for field in fields})


def stage_of(prompt: str) -> str:
    fields = set(_FIELD.findall(_OUTPUT_FIELDS.search(prompt).group(1)))
    return next((stage for stage, field in (("extract", "differences"), ("validate", "keep"),
                                              ("summarize", "summary"), ("generate", "review")) if field in fields),
                "other")


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path == "/tokenize":  # a chat as Qwen's template writes it: an answer closes with <|im_end|>, "\n"
            tokens = [151644, 872, 198, 9707, 13, 151645, 198, 151644, 77091, 198, 9707, 311, 498, 13]
            closed = tokens if body.get("continue_final_message") else tokens + [END_TOKEN, 198]
            self._send(200, json.dumps({"tokens": closed, "count": len(closed)}).encode())
            return
        prompt = "\n\n".join(str(message.get("content")) for message in body["messages"])
        item = _ITEM.search(prompt)
        self.server.record({"stage": stage_of(prompt), "item": item and item.group(1),
                            "authorization": self.headers.get("Authorization")})
        if self.server.mode == "hang":
            time.sleep(3600)
        time.sleep(self.server.delay)
        if self.server.mode == "garbage":
            self._send(200, b"<html>502 upstream went away</html>", "text/html")
            return
        content = answer(prompt)
        completion = {"id": "fake", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": content}}],
                      "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(content) // 4,
                                "total_tokens": (len(prompt) + len(content)) // 4}}
        self._send(200, json.dumps(completion).encode())


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, log: Path, delay: float = 0.0, mode: str = "ok"):
        super().__init__(("127.0.0.1", 0), Handler)
        self.log, self.delay, self.mode = log, delay, mode
        self.lock = threading.Lock()

    def record(self, entry: dict) -> None:
        with self.lock, open(self.log, "a", encoding="utf-8") as sink:
            sink.write(json.dumps(entry) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--mode", choices=["ok", "garbage", "hang"], default="ok")
    args = parser.parse_args()
    server = FakeServer(Path(args.log), args.delay, args.mode)
    tmp = Path(args.port_file + ".tmp")
    tmp.write_text(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
