"""How the program asks its LMs, as DSPy adapters: DSPy's JSON and chat formats with the inputs first (so that
calls sharing inputs share a cached prompt prefix) and reasoning models' `<think>` blocks dropped, and a plain
text format for the stages that answer with one text (Summarize, Generate), and a document to continue."""

from __future__ import annotations

import logging
import re
import textwrap
from contextvars import ContextVar
from typing import Any

import dspy
from dspy.adapters.utils import format_field_value

from ..assets import cache_dir
from .lms import LOOP_ENDED_WARNINGS

_THINK = re.compile(r"^.*?</think>\s*|<think>.*?</think>\s*", re.DOTALL)


def strip_thinking(completion: str) -> str:
    """Drop a reasoning model's `<think>` block, for servers started without a reasoning parser."""
    return _THINK.sub("", completion, count=1) if "</think>" in completion else completion


SYSTEM_MESSAGE = "You are a careful analyst and writer of reviews. Each request gives its inputs, then your task."


class InputsFirst:
    """Adapter mixin: each request's inputs first, then the task and the answer's format (DSPy puts the task
    first, in the system message). Calls that share their first inputs then share a prompt prefix that the
    server's prefix cache computes once: Extract and Validate of an item (the item and the reviews),
    Summarize and Generate (the past reviews). With few-shot demos or a conversation history DSPy's order is
    kept: demos mean little before the task they show."""

    def format(self, signature, demos, inputs):
        if demos or self._get_history_field_name(signature):
            return super().format(signature, demos, inputs)
        parts = (self.format_user_message_content(signature, inputs), self.format_system_message(signature),
                 self.user_message_output_requirements(signature))
        return [{"role": "system", "content": SYSTEM_MESSAGE},
                {"role": "user", "content": "\n\n".join(part for part in parts if part)}]


class ThinkingChatAdapter(dspy.ChatAdapter):
    """ChatAdapter that parses R1-style answers (`<think>...</think>` then the fields)."""

    def parse(self, signature, completion: str) -> dict[str, Any]:
        return super().parse(signature, strip_thinking(completion))

    def _make_json_adapter_fallback(self):
        return ThinkingJSONAdapter()


class ThinkingJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter that parses R1-style answers; the default, as small models keep JSON fields apart best."""

    def parse(self, signature, completion: str) -> dict[str, Any]:
        return super().parse(signature, strip_thinking(completion))


class InputsFirstJSONAdapter(InputsFirst, ThinkingJSONAdapter):
    pass


class InputsFirstChatAdapter(InputsFirst, ThinkingChatAdapter):
    def _make_json_adapter_fallback(self):
        return InputsFirstJSONAdapter()


class TextAdapter(dspy.Adapter):
    """Plain text for a signature that answers one text field (Summarize, Generate); any other signature goes
    to `fallback`. The instruction and the inputs' descriptions make the system message; each user turn gives
    the inputs as labelled lines or blocks and ends with the request; few-shot demos are such turns answered with
    the bare text; the whole completion is the answer. Measured on 40 users (README): asked for the text itself instead of a JSON object, the 1.5B
    model wrote longer reviews and refused half as often."""

    def __init__(self, fallback: dspy.Adapter, callbacks: list | None = None):
        super().__init__(callbacks)
        self.fallback = fallback

    @staticmethod
    def handles(signature: type[dspy.Signature]) -> bool:
        outputs = list(signature.output_fields.values())
        return len(outputs) == 1 and outputs[0].annotation is str

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        if not self.handles(signature):
            return self.fallback(lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        if not self.handles(signature):
            return await self.fallback.acall(lm, lm_kwargs, signature, demos, inputs)
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def format(self, signature, demos, inputs):
        """The messages a call sends: the fallback's for a signature this adapter leaves to it."""
        if not self.handles(signature):
            return self.fallback.format(signature, demos, inputs)
        return super().format(signature, demos, inputs)

    @staticmethod
    def _label(name: str) -> str:
        return name.replace("_", " ").capitalize()

    def labelled(self, fields: dict, values: dict, names) -> list[str]:
        """Each of the fields `names` that has a value, as a line beside its label or a block under it."""
        lines = []
        for name in names:
            if name in fields and values.get(name) is not None:
                value = values[name]
                value = f"{value:g}" if isinstance(value, float) else str(format_field_value(fields[name], value)).strip()
                lines.append(f"{self._label(name)}:{chr(10) if chr(10) in value else ' '}{value}")
        return lines

    def format_field_description(self, signature: type[dspy.Signature]) -> str:
        lines = [f"- {self._label(name)}: {field.json_schema_extra.get('desc', '')}"
                 for name, field in signature.input_fields.items()]
        return "Each request gives:\n" + "\n".join(lines)

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        """The request that ends every user turn (a demo's too): what to write, and nothing else. Without it the
        turn is bare data, and the 1.5B model answered it as a message to it ("I'm very good, Dan Epstein.")."""
        field = next(iter(signature.output_fields.values()))
        return f"Write {field.json_schema_extra.get('desc', '')}: the text only, no label, no heading."

    def format_task_description(self, signature: type[dspy.Signature]) -> str:
        return textwrap.dedent(signature.instructions).strip()

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        return "\n\n".join((self.format_task_description(signature), self.format_field_description(signature)))

    def format_user_message_content(self, signature, inputs, prefix="", suffix="", main_request=False) -> str:
        parts = [prefix, *self.labelled(signature.input_fields, inputs, signature.input_fields)]
        return "\n\n".join(part for part in (*parts, self.format_field_structure(signature), suffix) if part).strip()

    def format_assistant_message_content(self, signature, outputs, missing_field_message=None) -> str:
        name = next(iter(signature.output_fields))
        return str(outputs.get(name, missing_field_message or ""))

    def format_demos(self, signature, demos):
        """Every demo with an answer becomes a user turn of the inputs it has and an assistant turn of the bare
        answer (DSPy's own formatting flags demos that lack an input; a user's past review lacks the summary)."""
        name = next(iter(signature.output_fields))
        messages = []
        for demo in demos:
            if demo.get(name):
                messages += [{"role": "user", "content": self.format_user_message_content(signature, demo)},
                             {"role": "assistant", "content": self.format_assistant_message_content(signature, demo)}]
        return messages

    def format_field_with_value(self, fields_with_values: dict, role: str = "user") -> str:
        """The values alone (how DSPy's `DummyLM` mimics an adapter's answers)."""
        return "\n\n".join(str(value) for value in fields_with_values.values())

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        name = next(iter(signature.output_fields))
        text = strip_thinking(completion).strip()
        # a label the model put before its answer ("Review:", "**Summary:**") is not part of it
        label = rf"^\**\s*{re.escape(self._label(name))}\s*\**\s*:\s*\**\s*"
        return {name: re.sub(label, "", text, count=1, flags=re.IGNORECASE).strip()}


_BEGUN_ANSWER: ContextVar[str] = ContextVar("begun_answer", default="")  # the last one this thread formatted


class ContinuedAdapter(TextAdapter):
    """A text signature whose answer the prompt has already begun with the `entry` inputs as labelled lines and the
    answer's label: the model writes on (vLLM's `continue_final_message`) and stops at another entry. How the rest
    of the prompt asks is the subclass's `messages`."""

    CONTINUE = {"continue_final_message": True, "add_generation_prompt": False}

    def __init__(self, entry: tuple[str, ...], fallback: dspy.Adapter, callbacks: list | None = None):
        super().__init__(fallback, callbacks)
        self.entry = entry

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):
        return super().__call__(lm, self.continuing(lm, lm_kwargs, signature), signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):
        return await super().acall(lm, self.continuing(lm, lm_kwargs, signature), signature, demos, inputs)

    def continuing(self, lm, lm_kwargs: dict[str, Any], signature: type[dspy.Signature]) -> dict[str, Any]:
        """The call's settings, asking the server to continue the answer and to stop at the next entry (the LM's
        own `extra_body` kept: a call's replaces it)."""
        if not self.handles(signature):
            return lm_kwargs
        extra = {**lm.kwargs.get("extra_body", {}), **lm_kwargs.get("extra_body", {}), **self.CONTINUE}
        return {**lm_kwargs, "extra_body": extra, "stop": [f"\n{self._label(self.entry[0])}:"]}

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        # llama.cpp's server answers with the begun answer and what it wrote on; vLLM's, with what it wrote on
        completion = completion.removeprefix(_BEGUN_ANSWER.get()) if self.handles(signature) else completion
        return super().parse(signature, completion)

    def format(self, signature, demos, inputs):
        if not self.handles(signature):
            return self.fallback.format(signature, demos, inputs)
        messages = self.messages(signature, demos, inputs)
        _BEGUN_ANSWER.set(messages[-1]["content"])  # this thread's call is parsed next
        return messages

    def opened_entry(self, signature: type[dspy.Signature], values: dict[str, Any]) -> str:
        """An entry begun: its inputs as labelled lines, then the answer's label, open."""
        answer = self._label(next(iter(signature.output_fields)))
        return "\n".join([*self.labelled(signature.input_fields, values, self.entry), f"{answer}:"])

    def messages(self, signature, demos, inputs) -> list[dict[str, str]]:
        raise NotImplementedError


class OpenedAnswerAdapter(ContinuedAdapter):
    """A text signature asked in a chat turn (`TextAdapter`'s messages), its answer begun as a page's entry (the
    `entry` inputs, then the answer's label) for the model to continue. Asked for a critical review in a bare chat
    turn, the 1.5B model refuses most of the time; with its answer begun, it seldom does, but it writes shorter
    reviews (docs/measurements.md)."""

    def messages(self, signature, demos, inputs) -> list[dict[str, str]]:
        return [*TextAdapter.format(self, signature, demos, inputs),
                {"role": "assistant", "content": self.opened_entry(signature, inputs)}]


class DocumentAdapter(ContinuedAdapter):
    """A text signature asked as the next entry of a document the model continues, not as a request in a chat
    turn: the document's heading, the inputs that hold for the whole document as labelled lines, the demos as
    earlier entries, and the call's inputs as the last entry, open after the answer's label. No turn asks the model
    anything, so it has nothing to refuse or to reply to; the instruction stays in the system message, where an
    optimizer can still tune it. `entry` names the inputs each entry has (a demo, the call); the others are the
    document's."""

    def __init__(self, heading: str, entry: tuple[str, ...], fallback: dspy.Adapter, callbacks: list | None = None):
        super().__init__(entry, fallback, callbacks)
        self.heading = heading

    def messages(self, signature, demos, inputs) -> list[dict[str, str]]:
        """The instruction as the system message, the open document as the answer to continue."""
        name = next(iter(signature.output_fields))
        fields = signature.input_fields
        answer = self._label(name)
        document = [self.heading, "\n".join(self.labelled(fields, inputs, [n for n in fields if n not in self.entry]))]
        document += ["\n".join([*self.labelled(fields, demo, self.entry), f"{answer}: {demo[name]}"])
                     for demo in demos if demo.get(name)]
        document.append(self.opened_entry(signature, inputs))
        return [{"role": "system", "content": self.format_system_message(signature)},
                {"role": "assistant", "content": "\n\n".join(part for part in document if part)}]


PROMPT_ORDERS = ("inputs-first", "task-first")
ADAPTERS = {  # name -> prompt order -> class
    "json": {"inputs-first": InputsFirstJSONAdapter, "task-first": ThinkingJSONAdapter},
    "chat": {"inputs-first": InputsFirstChatAdapter, "task-first": ThinkingChatAdapter},
    # Summarize and Generate in plain text, the stages that reason or list (Extract, Validate) in JSON
    "text": {"inputs-first": lambda: TextAdapter(InputsFirstJSONAdapter()),
             "task-first": lambda: TextAdapter(ThinkingJSONAdapter())},
}


def configure_dspy(adapter: str | None = None, prompt_order: str = "inputs-first") -> None:
    """The process-wide settings of every command that calls LMs: the disk cache (`cache_dir("dspy")`), so that a
    rerun reuses every answer it already got, and the default adapter with its prompt order (a run sets its own,
    `RunSettings.make_adapter`)."""
    dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=str(cache_dir("dspy")))
    logging.getLogger("LiteLLM").addFilter(LOOP_ENDED_WARNINGS)
    if adapter is not None:
        dspy.configure(adapter=ADAPTERS[adapter][prompt_order]())
