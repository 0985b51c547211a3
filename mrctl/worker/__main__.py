from mrctl.worker.main import main

main()
