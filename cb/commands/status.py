"""`cb status`: is each part up, where, and with which model (never starts anything)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cb.commands import common


def _model_server(settings: Any) -> dict[str, Any]:
    from cb import server

    if settings.base_url:
        up = server.healthy(settings.base_url)
        return {"up": up, "where": settings.base_url, "model": settings.model, "managed": False}
    info = server.read_info()
    if info is None:
        return {"up": False, "where": "local ulm serve (starts on first use)", "model": settings.model,
                "managed": True}
    return {"up": server.healthy(info.base_url), "where": info.base_url, "model": info.model, "pid": info.pid,
            "log": info.log, "managed": True}


def _agentshell() -> dict[str, Any]:
    from cb import paths

    sock = paths.agentshell_socket()
    try:
        from agentshell.client import Client
        from agentshell.protocol import AgentshellError

        with Client.connect(autostart=False, timeout=2.0, client_name="cb-status") as sh:
            tabs = sh.ls()
            return {"up": True, "where": str(sock), "tabs": len(tabs),
                    "running": sum(t.status == "running" for t in tabs)}
    except (ImportError, AgentshellError, OSError):
        return {"up": False, "where": str(sock)}


def _redis() -> dict[str, Any]:
    try:
        from cb.clip.config import load_config

        cfg = load_config(need_sender=False)
    except Exception as exc:  # a broken clip config is reported, not raised
        return {"up": False, "where": f"clipboard config unreadable: {exc}"}
    url = getattr(cfg, "redis_url", "") or ""
    if not url:
        return {"up": False, "where": "not configured (the clipboard uses OSC 52)"}
    import redis

    shown = url.split("@")[-1]
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return {"up": True, "where": shown}
    except redis.RedisError as exc:
        return {"up": False, "where": shown, "error": str(exc).splitlines()[0]}


def status(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False) -> None:
    """Show the model server, the agentshell daemon and Redis: up or down, where, which model."""
    settings = common.settings()
    report = {"model_server": _model_server(settings), "agentshell": _agentshell(), "redis": _redis()}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for name, item in report.items():
        state = "up" if item["up"] else "down"
        extra = [f"model {item['model']}"] if item.get("model") else []
        if "tabs" in item:
            extra.append(f"{item['tabs']} tabs, {item['running']} running")
        if item.get("error"):
            extra.append(item["error"])
        typer.echo(f"{name:<13} {state:<5} {item['where']}" + (f"  ({'; '.join(extra)})" if extra else ""))
