"""The login service that runs `cb clip listen`: a systemd user unit (Linux) or a launchd agent (macOS).

Neither file holds a secret: the listener reads CB_REDIS_URL and CB_CLIP_KEY from `clip.env` in cb's
config dir (see `config`). Only CB_HOME is passed through, when set, so the service finds that file.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import sys
from pathlib import Path

LABEL = "dev.cb.clip-listen"
UNIT_NAME = "cb-clip.service"


def listen_command() -> list[str]:
    """The argv that starts the listener: the installed `cb` script, else `python -m cb`."""
    beside = Path(sys.executable).parent / "cb"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside), "clip", "listen"]
    found = shutil.which("cb")
    if found:
        return [str(Path(found).resolve()), "clip", "listen"]
    return [sys.executable, "-m", "cb", "clip", "listen"]


def _quote_systemd(arg: str) -> str:
    if arg and all(c.isalnum() or c in "/._-+:@=" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(argv: list[str] | None = None, cb_home: str | None = None) -> str:
    """A systemd user unit; save as ~/.config/systemd/user/cb-clip.service."""
    argv = argv or listen_command()
    env = f"Environment=CB_HOME={_quote_systemd(cb_home)}\n" if cb_home else ""
    return f"""# Save as ~/.config/systemd/user/{UNIT_NAME}, then:
#   systemctl --user daemon-reload && systemctl --user enable --now {UNIT_NAME}
#   journalctl --user -u {UNIT_NAME} -f        # one line per clipboard write
# The clipboard needs your display: desktops that start graphical-session.target pass DISPLAY /
# WAYLAND_DISPLAY to user services; otherwise run once per login:
#   systemctl --user import-environment DISPLAY WAYLAND_DISPLAY
[Unit]
Description=cb clipboard bridge: set this machine's clipboard from cb on a remote box
After=graphical-session.target network-online.target
PartOf=graphical-session.target

[Service]
ExecStart={" ".join(_quote_systemd(a) for a in argv)}
{env}Restart=always
RestartSec=10

[Install]
WantedBy=graphical-session.target
"""


def launchd_plist(argv: list[str] | None = None, cb_home: str | None = None) -> str:
    """A launchd agent; save as ~/Library/LaunchAgents/dev.cb.clip-listen.plist."""
    argv = argv or listen_command()
    log = str(Path.home() / "Library" / "Logs" / "cb-clip.log")
    job: dict[str, object] = {
        "Label": LABEL,
        "ProgramArguments": argv,
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 10,
        "ProcessType": "Interactive",
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    if cb_home:
        job["EnvironmentVariables"] = {"CB_HOME": cb_home}
    body = plistlib.dumps(job, sort_keys=False).decode("utf-8")
    note = (f"<!-- Save as ~/Library/LaunchAgents/{LABEL}.plist, then:\n"
            f"     launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/{LABEL}.plist\n"
            f"     tail -f {log}   (one line per clipboard write) -->\n")
    head, _, rest = body.partition("\n")  # keep the XML declaration first
    return f"{head}\n{note}{rest}"


def service_text(platform: str | None = None) -> str:
    """The service file for `platform` ("linux" or "macos"; default: this machine's)."""
    platform = platform or ("macos" if sys.platform == "darwin" else "linux")
    cb_home = os.environ.get("CB_HOME", "").strip() or None
    if platform == "macos":
        return launchd_plist(cb_home=cb_home)
    if platform == "linux":
        return systemd_unit(cb_home=cb_home)
    raise ValueError(f"unknown platform {platform!r}: use linux or macos")
