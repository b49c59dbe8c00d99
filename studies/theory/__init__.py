"""Mean-field theory of deep networks (pure NumPy/SciPy): the length and correlation maps, their
fixed points and the depth scales, by Gauss quadrature."""
