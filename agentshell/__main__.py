from agentshell.cli import main

main()
