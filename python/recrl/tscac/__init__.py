"""Two-Stage Constrained Actor-Critic (Cai et al., WWW 2023) and its baselines."""
