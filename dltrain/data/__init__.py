"""Data sets by name. ``load_data(cfg)`` returns the three splits and the :class:`DataInfo`."""

from __future__ import annotations

from dltrain.data.base import DataInfo, DataSplits, Split, StreamSplit
from dltrain.data.registry import DATASETS
from dltrain.errors import UserError
from dltrain.schema import DataConfig

# importing a source module registers its data sets (torchvision and PIL are imported only
# when a set that needs them is loaded)
from dltrain.data import (  # noqa: E402,F401
    csv_file,
    image_folder,
    npz_file,
    sequences,
    sklearn_sets,
    synthetic,
    torchvision_sets,
)


def load_data(cfg: DataConfig) -> DataSplits:
    data = DATASETS.get(cfg.name)(cfg)
    if cfg.task != "auto" and cfg.task != data.info.task:
        raise UserError(f"data.task={cfg.task} but data={cfg.name} is a {data.info.task} set")
    for name, split in data.splits():
        if len(split) == 0:
            sizes = "/".join(str(len(s)) for _, s in data.splits())
            raise UserError(
                f"data={cfg.name}: the {name} split is empty (train/val/test {sizes}); "
                "use more samples or larger data.val_fraction / data.test_fraction"
            )
    return data


__all__ = ["DATASETS", "DataInfo", "DataSplits", "Split", "StreamSplit", "load_data"]
