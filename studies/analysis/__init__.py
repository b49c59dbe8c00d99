"""What the recorded numbers mean: per-layer statistics of a network, and the pathology labels
of a run (vanishing, exploding, dead, saturated, diverged, healthy)."""
