"""The clipboard bridge: copy on the cloud box, paste on the laptop.

The publisher (`cb copy`, the REPL's `/copy`) signs each clip and sends it through Redis: PUBLISH on a
channel for listeners that are connected now, plus XADD to a capped stream for a listener that was away.
Without Redis configured it falls back to OSC 52 on the controlling terminal. The subscriber
(`cb clip listen`, on the laptop) verifies, sanitises and sets the local clipboard.

Modules, one job each (stdlib, redis and pyperclip only; never torch):

| module       | owns                                                                  |
|--------------|-----------------------------------------------------------------------|
| `message`    | the wire format, HMAC-SHA256 signing and verification                 |
| `errors`     | `ClipError`: every failure, as one line for the user                  |
| `config`     | settings from the environment and `clip.env`, key handling            |
| `sanitize`   | the control-character and escape-sequence stripper                    |
| `sequence`   | the publisher's persistent per-sender sequence number                 |
| `publish`    | `copy_text(text) -> CopyResult`: Redis, else OSC 52                   |
| `osc52`      | OSC 52 sequences (plain, tmux and screen passthrough) and the tty     |
| `clipboard`  | clipboard backends: pyperclip with a timeout, a recording backend     |
| `guard`      | the subscriber's acceptance policy: signature, replay, age, size      |
| `subscriber` | the listen loop: reconnect, half-open detection, stream catch-up      |
| `status`     | `cb clip status` lines and the `cb clip test` round trip              |
| `service`    | systemd user unit / launchd plist text                                |
| `bench`      | `cb clip bench`: end-to-end latency, lost and duplicated counts       |
"""
