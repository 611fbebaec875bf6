from dersync.cli.main import main

main()
