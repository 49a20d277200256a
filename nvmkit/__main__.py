from nvmkit.cli import main

main()
