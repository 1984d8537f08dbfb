"""`cb models`: the models the configured server offers (starting the local server when needed)."""

from __future__ import annotations

from cb.commands import common


def models(base_url: common.BaseUrlOpt = None, api_key: common.ApiKeyOpt = None) -> None:
    """List the models of the configured server, with their context length; * marks the configured model."""
    import typer

    from cb.backend import BackendError
    from cb.chat import Chat, describe_error
    from cb.render import Out
    from cb.sanitize import sanitize

    settings = common.settings(base_url=base_url, api_key=api_key)
    with Chat(settings, common.current_session(settings), Out()) as chat:
        try:
            entries = chat.backend().models()
        except (BackendError, Exception) as exc:  # one line, never a traceback
            common.fail(describe_error(exc))
    for e in entries:
        ctx = next((e[k] for k in ("context_length", "max_model_len", "n_ctx") if isinstance(e.get(k), int)), None)
        mark = "*" if e["id"] == settings.model else " "
        typer.echo(f"{mark} {sanitize(str(e['id']))}" + (f"  (context {ctx})" if ctx else ""))
