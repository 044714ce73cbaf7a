"""What a run's data was, recorded in run.yaml, so that eval, replay and resume use the same data.

:func:`fingerprint` describes the data a config selects as a plain dict; :func:`compare` says, one
line per difference, how two such dicts differ. What a fingerprint holds depends on where the
data come from:

* files of the user's (``csv``, ``npz``) and the torchvision sets: size and sha256 of each file
  the loader reads, under ``"files"``;
* a folder of images (``image_folder``): the number of image files, their total size and a sha256
  over the sorted list of (relative path, size), with the count and size per class folder, under
  ``"folders"``. The contents are not hashed: see :func:`folder_entry`;
* generated sets (``sine``, ``adding``, ``synthetic``): the config values that draw them, under
  ``"generated"``, and the NumPy version whose random generator draws them, under ``"library"``;
* bundled sets (``digits``, ``diabetes``): the scikit-learn version, and its data files.

Files are streamed in chunks: a fingerprint never holds a file in memory. Nothing here imports
torch or torchvision (this runs before any data are loaded), so the few facts this package needs
from the loaders - where torchvision keeps its files, which names are images - are copied here
and pinned against the loaders by tests/unit/test_fingerprint.py.

:mod:`.describe` builds a fingerprint, :mod:`.changes` compares two.
"""

from dltrain.fingerprint.changes import compare
from dltrain.fingerprint.describe import (BUNDLED_FILES, CHUNK, DEFAULT_ROOT, FORMAT, GENERATORS,
                                          IMAGE_EXTENSIONS, NAMES, ROOT_ENV, VISION_FILES,
                                          file_entry, file_sha256, fingerprint, folder_entry)

__all__ = ["BUNDLED_FILES", "CHUNK", "DEFAULT_ROOT", "FORMAT", "GENERATORS", "IMAGE_EXTENSIONS",
           "NAMES", "ROOT_ENV", "VISION_FILES", "compare", "file_entry", "file_sha256",
           "fingerprint", "folder_entry"]
