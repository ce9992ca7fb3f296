"""Pre-training of agents whose tournament policy is learned beforehand (M-MAML, ...)."""
