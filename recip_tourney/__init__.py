"""recip-tourney: round-robin tournaments of learning agents in sequential social dilemmas.

Reproduces and extends the experiments of Zhou, Hong & Kao, *Reciprocal Reward Influence
Encourages Cooperation From Self-Interested Agents* (NeurIPS 2024, arXiv 2406.01641).
"""

__version__ = "0.1.0"
