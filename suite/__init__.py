"""The reproduction suite: a harness that runs paper reproductions at three scales."""
__version__ = "0.1.0"
