"""llama.cpp's introspection routes, with the fields ulm can fill truthfully (others are left out, not faked):

    GET /props   server facts: default sampling settings, n_ctx, total_slots, the served name (model_alias)
                 and path, chat template and what it takes, special tokens, modalities, build; plus ulm's
                 `grammar` (whether requests may carry a grammar: false until constrained decoding lands)
    GET /slots   one entry per engine slot: id, n_ctx, is_processing, n_past (tokens its KV cache row holds,
                 reusable by a prompt that starts with them) and, while a request runs in it, that request's
                 prompt counts, sampling params and progress; `?fail_on_no_slot=1` answers 503 when no slot is free

Both are behind the API key when one is set, as llama.cpp's are (its public paths are /health and /models).
Neither shows prompt or generated text.
"""

from __future__ import annotations

import contextlib
from importlib import metadata
from typing import Any

from fastapi import APIRouter
from fastapi import Request as HTTPRequest

from ulm.engine.slots import Active, Slot
from ulm.sampling import SamplingParams
from ulm.server.errors import APIError
from ulm.server.state import ServerState
from ulm.server.tool_calls import takes_tools

# ulm's sampler order (ulm.sampling), in llama.cpp's names
SAMPLERS = ["penalties", "temperature", "top_k", "top_p", "min_p"]


def sampling_json(p: SamplingParams, max_tokens: int, stop: tuple[str, ...] = ()) -> dict[str, Any]:
    """llama.cpp's `params` object for one request's settings (ulm's penalties count generated tokens only)."""
    return {
        "n_predict": max_tokens,
        "max_tokens": max_tokens,
        "seed": -1 if p.seed is None else p.seed,
        "temperature": p.temperature,
        "top_k": p.top_k,
        "top_p": p.top_p,
        "min_p": p.min_p,
        "repeat_penalty": p.repetition_penalty,
        "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty,
        "stop": list(stop),
        "samplers": SAMPLERS,
    }


def _chat_template_caps(tokenizer: Any) -> dict[str, bool]:
    """What the template does with the messages the server passes it: a system message is probed by rendering
    one (llama.cpp probes its templates the same way); tools go to a template that reads them (else into a
    system message), and assistant tool calls to one that renders them."""
    from ulm.tokenizer import render_chat

    probe = "ulm-probe-7d1f"
    try:
        text = render_chat(tokenizer, [{"role": "system", "content": probe}, {"role": "user", "content": "hi"}])
        system = probe in text
    except Exception:  # a template that refuses a system turn
        system = False
    calls = "tool_calls" in str(getattr(tokenizer, "chat_template", None) or "")
    return {"supports_system_role": system, "supports_tools": takes_tools(tokenizer), "supports_tool_calls": calls}


def _slot_json(slot: Slot, n_ctx: int) -> dict[str, Any]:
    active: Active | None = slot.active  # read once: the engine may free the slot meanwhile
    entry: dict[str, Any] = {"id": slot.row, "n_ctx": n_ctx, "speculative": False,
                             "is_processing": active is not None, "n_past": len(slot.tokens)}
    if active is not None:
        req = active.ticket.request
        entry["n_prompt_tokens"] = len(req.prompt)
        entry["n_prompt_tokens_processed"] = active.prefilled - active.cached
        entry["n_prompt_tokens_cache"] = active.cached
        entry["params"] = sampling_json(req.sampling, req.max_tokens, req.stop)
        n_decoded = len(active.generated)
        entry["next_token"] = {"has_next_token": True, "n_remain": max(0, active.max_new - n_decoded),
                               "n_decoded": n_decoded}
    return entry


def router(state: ServerState) -> APIRouter:
    """The /props and /slots routes over `state`."""
    routes = APIRouter()
    settings = state.settings
    cached: dict[str, Any] = {}

    def template_facts(tokenizer: Any) -> dict[str, Any]:
        if not cached:
            cached["chat_template"] = str(getattr(tokenizer, "chat_template", None) or "")
            cached["chat_template_caps"] = _chat_template_caps(tokenizer)
            cached["bos_token"] = str(getattr(tokenizer, "bos_token", None) or "")
            cached["eos_token"] = str(getattr(tokenizer, "eos_token", None) or "")
        return cached

    @routes.get("/props", responses={401: {}, 503: {}})
    async def props() -> dict[str, Any]:
        backend, engine = state.ready()
        defaults = SamplingParams()
        build = ""
        with contextlib.suppress(metadata.PackageNotFoundError):
            build = f"ulm {metadata.version('cb')}"
        return {
            "default_generation_settings": {"n_ctx": engine.n_ctx,
                                            "params": sampling_json(defaults, settings.max_tokens_cap)},
            "total_slots": engine.parallel,
            "model_alias": state.model_name,
            "model_path": str(getattr(backend, "model_path", "") or ""),
            **template_facts(backend.tokenizer),
            "modalities": {"vision": False, "audio": False},
            "endpoint_slots": True,
            "endpoint_props": False,  # no POST /props
            "endpoint_metrics": True,
            "build_info": build,
            "is_sleeping": False,
            **state.capabilities(),  # grammar, response_format, tools, logprobs
        }

    @routes.get("/slots", responses={401: {}, 503: {}})
    async def slots(request: HTTPRequest) -> list[dict[str, Any]]:
        _, engine = state.ready()
        entries = [_slot_json(slot, engine.n_ctx) for slot in engine.slots]
        if request.query_params.get("fail_on_no_slot") == "1" and all(e["is_processing"] for e in entries):
            raise APIError(503, "no slot available", code="unavailable_error", headers={"Retry-After": "1"})
        return entries

    return routes
