"""How the program reaches its LMs: each stage's LM spec and DSPy's adapters (`lms`), the local vLLM server
that drpkit starts and checks (`server`), and several servers as replicas of one stage (`replicas`)."""

from .lms import (ADAPTERS, PROMPT_ORDERS, DEFAULT_API_BASE, DEFAULT_PORT, DEFAULT_SERVED_NAME, LOOPBACK, LMSpec, StageLMs,
                  InputsFirstChatAdapter, InputsFirstJSONAdapter, ThinkingChatAdapter, ThinkingJSONAdapter,
                  configure_dspy, strip_thinking)
from .server import MAX_MODEL_LEN, ServerStartError, ServerUnavailable, VLLMServer, check_server, cpu_env, find_free_port

__all__ = [
    "ADAPTERS", "PROMPT_ORDERS", "DEFAULT_API_BASE", "DEFAULT_PORT", "DEFAULT_SERVED_NAME", "LMSpec", "MAX_MODEL_LEN", "LOOPBACK", "ServerStartError",
    "ServerUnavailable", "StageLMs", "InputsFirstChatAdapter", "InputsFirstJSONAdapter", "ThinkingChatAdapter", "ThinkingJSONAdapter", "VLLMServer", "check_server",
    "configure_dspy", "cpu_env", "find_free_port", "strip_thinking",
]
