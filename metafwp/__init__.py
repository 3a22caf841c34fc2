"""metafwp: meta-learning and in-context learning with fast weight programmers."""
__version__ = "0.1.0"
