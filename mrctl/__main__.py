from mrctl.cli.main import main

main()
