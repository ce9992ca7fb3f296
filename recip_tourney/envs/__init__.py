"""The games, as pure batched torch functions over explicit state."""
