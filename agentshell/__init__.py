"""agentshell: a per-user daemon that runs process tabs (PTYs) and serves their output over a Unix socket."""
