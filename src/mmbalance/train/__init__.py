"""The training loop and the training stage's library entry point."""
