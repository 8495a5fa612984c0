"""The ``dtmm`` command line: one module per subcommand."""
