from ulm.cli import main

main()
