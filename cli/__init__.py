"""The ``visiontune`` command line. Each module registers one group of subcommands."""
