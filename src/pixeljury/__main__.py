from pixeljury.cli import main

main()
