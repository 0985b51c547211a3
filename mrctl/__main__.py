from mrctl.cli import main

main()
