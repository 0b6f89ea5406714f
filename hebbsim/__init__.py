"""hebbsim: continuous-time neural networks that learn with local rules."""

__version__ = "0.1.0"
