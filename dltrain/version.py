"""dltrain's version, in a module of its own: the modules that record it (checkpoints, exports)
import it without importing the package's lazy entry points."""

__version__ = "0.1.0"
