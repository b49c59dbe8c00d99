"""What the recorded numbers mean: per-layer statistics of a network, the pathology labels of a
run (vanishing, exploding, dead, saturated, diverged, stalled, healthy), and each bundled
study's findings (its published claim, measured, with a verdict)."""
