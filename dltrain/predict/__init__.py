"""Using a trained model: load a run (:func:`load_run`), read new inputs the way training read
its data, and predict. ``dltrain predict`` and ``dltrain export`` are built on it."""
