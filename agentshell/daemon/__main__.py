"""`python -m agentshell.daemon`: the daemon without the CLI's imports (what clients start on demand).

Takes the same options as `agentshell serve`: --background, --stop-timeout S, --ring-bytes N, --log-bytes N,
--handshake-timeout S.
"""

from __future__ import annotations

import argparse
import sys

from agentshell.daemon.run import main
from agentshell.daemon.server import Settings

parser = argparse.ArgumentParser(prog="python -m agentshell.daemon", description=__doc__.splitlines()[0])
parser.add_argument("--background", action="store_true", help="detach; log to the state dir")
parser.add_argument("--stop-timeout", type=float, default=Settings.stop_timeout)
parser.add_argument("--ring-bytes", type=int, default=Settings.ring_cap)
parser.add_argument("--log-bytes", type=int, default=Settings.log_max_bytes)
parser.add_argument("--handshake-timeout", type=float, default=Settings.handshake_timeout)
args = parser.parse_args()
sys.exit(main(Settings(ring_cap=args.ring_bytes, log_max_bytes=args.log_bytes, stop_timeout=args.stop_timeout,
                       handshake_timeout=args.handshake_timeout), args.background))
