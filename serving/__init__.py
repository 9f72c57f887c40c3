"""How the program reaches its LMs: how it asks them (DSPy adapters, `adapters`), each stage's LM spec (`lms`),
the local server that drpkit starts and checks (`server`: its lifecycle and vLLM; `llamacpp`: llama.cpp's), and
several servers as replicas of one stage (`replicas`)."""

from .adapters import (ADAPTERS, PROMPT_ORDERS, ContinuedAdapter, DocumentAdapter, InputsFirstChatAdapter,
                       InputsFirstJSONAdapter, OpenedAnswerAdapter, TextAdapter, ThinkingChatAdapter,
                       ThinkingJSONAdapter, configure_dspy, strip_thinking)
from .lms import (DEFAULT_API_BASE, DEFAULT_PORT, DEFAULT_SERVED_NAME, LOOPBACK, MAX_MODEL_LEN, LMSpec, StageLMs,
                  repetition_penalty)
from .llamacpp import LlamaCppServer
from .server import (LocalServer, ServerStartError, ServerUnavailable, VLLMServer, check_server, cpu_env,
                     end_of_turn_token, find_free_port, server_engine)

__all__ = [
    "ADAPTERS", "PROMPT_ORDERS", "DEFAULT_API_BASE", "DEFAULT_PORT", "DEFAULT_SERVED_NAME", "LMSpec", "MAX_MODEL_LEN",
    "LOOPBACK", "ServerStartError", "ServerUnavailable", "StageLMs", "ContinuedAdapter", "DocumentAdapter",
    "OpenedAnswerAdapter", "InputsFirstChatAdapter", "InputsFirstJSONAdapter",
    "TextAdapter", "ThinkingChatAdapter", "ThinkingJSONAdapter", "LlamaCppServer", "LocalServer", "VLLMServer",
    "check_server", "server_engine",
    "configure_dspy", "cpu_env", "repetition_penalty", "end_of_turn_token", "find_free_port", "strip_thinking",
]
