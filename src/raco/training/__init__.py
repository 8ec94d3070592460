"""Training: the loop (setup / train / save), checkpoints, logging, the `raco train` command."""
