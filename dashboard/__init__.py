"""natslab: the lab (`lab/`), its command line (`commands/`, one module per subcommand) and its Textual
dashboard (`ui/`, the only part that imports Textual)."""
