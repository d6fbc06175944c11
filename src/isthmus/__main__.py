from isthmus.cli import main

if __name__ == "__main__":  # a process spawned by `isthmus launch` imports this module too: it must not run the CLI
    main()
