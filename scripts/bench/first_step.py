"""``python first_step.py OUT [OVERRIDES...]`` runs ``dltrain OVERRIDES`` as the console script
does, and writes to OUT the wall-clock time (``time.time()``) at which its first training step
begins. The parent notes ``time.time()`` just before it starts this process: the difference is
the time from process start to the first step.

Nothing is imported up front but what Python itself has loaded, so the command starts as fast
as ``dltrain``: an import hook wraps ``dltrain.train.loop.train_step`` when dltrain imports that
module (torch and all), and the wrapper puts the original back after its first call.
"""

import importlib.machinery
import sys
import time

LOOP = "dltrain.train.loop"


class FirstStepFinder:
    def __init__(self, out: str) -> None:
        self.out = out

    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name != LOOP:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        exec_module, out = spec.loader.exec_module, self.out

        def exec_and_wrap(module):  # noqa: ANN001, ANN202
            exec_module(module)
            step = module.train_step

            def first_step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                now = time.time()
                module.train_step = step
                with open(out, "w") as f:
                    f.write(repr(now))
                return step(*args, **kwargs)

            module.train_step = first_step

        spec.loader.exec_module = exec_and_wrap
        return spec


if __name__ == "__main__":
    del sys.path[0]  # this folder: dltrain's imports see what the console script's see
    sys.meta_path.insert(0, FirstStepFinder(sys.argv[1]))
    sys.argv = ["dltrain", *sys.argv[2:]]
    from dltrain.cli import main

    main()
