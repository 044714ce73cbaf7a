"""What dltrain reads from other libraries' exceptions, pinned against the installed versions.

dltrain turns Hydra's, OmegaConf's and torch's errors into one readable message. It reads their
types and attributes where they have them (OmegaConf's key, config node and full key; torch's
listing of a checkpoint's globals) and their text only where nothing else carries the fact: the
lines Hydra and OmegaConf add about their internals (dropped from the display), and torch's
re-raise of a DataLoader worker's error (the original message inside it). Each test triggers the
real library error, so an upgrade that changes a type, an attribute or a format fails here, not in
front of a user.
"""

from __future__ import annotations

import os
import pickle
import traceback
from typing import List

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import BooleanNode, FloatNode, IntegerNode, ListConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from dltrain import launch, schema
from dltrain.checkpoint import load_checkpoint
from dltrain.data.batching import read_loader
from dltrain.errors import UserError
from dltrain.hydra_errors import NOISE, _omegaconf_error, clean_hydra_error

LIBRARY_INTERNALS = ("full_key", "reference_type", "object_type", "Config search path",
                     "provider=", "To append to your config", "In 'train'")


def hydra_error(overrides: List[str]) -> Exception:
    """The exception Hydra's compose raises for ``overrides``, as dltrain's compose sees it."""
    launch._setup_hydra()
    with pytest.raises(Exception) as e:
        with initialize_config_dir(str(launch.config_dir()), version_base="1.3", job_name="dltrain"):
            hydra_compose("train", overrides=overrides)
    return e.value


def user_message(overrides: List[str]) -> str:
    with pytest.raises(UserError) as e:
        launch.compose(overrides)
    return str(e.value)


# ---------------------------------------------------------------------------------------------
# Hydra and OmegaConf: types and attributes
def test_a_key_not_in_a_node_names_the_key_and_the_node_dataclass():
    error = hydra_error(["optim.lrr=3"])
    assert isinstance(error, ConfigCompositionException)
    cause = _omegaconf_error(error)
    assert isinstance(cause, (ConfigKeyError, ConfigAttributeError))
    assert (cause.key, cause.full_key) == ("lrr", "optim.lrr")
    assert cause.object_type is schema.GROUPS["optim"]["adam"]
    message = user_message(["optim.lrr=3"])
    assert message == "optim=adam has no key 'lrr' (did you mean 'lr'?); its keys: " + ", ".join(
        schema.keys_of_class(cause.object_type.__name__))


@pytest.mark.parametrize("override, node, kind", [
    ("optim.lr=abc", FloatNode, "a number (float)"),
    ("trainer.epochs=1.5", IntegerNode, "a whole number (int)"),
    ("trainer.deterministic=maybe", BooleanNode, "true or false (bool)"),
    ("optim.betas=[0.9,a]", ListConfig, "a number (float)"),  # an element of a List[float]
])
def test_a_value_that_does_not_convert_names_its_node(override, node, kind):
    cause = _omegaconf_error(hydra_error([override]))
    assert isinstance(cause, ValidationError)
    assert cause.full_key.startswith(override.partition("=")[0])
    assert cause.value is not None
    if node is ListConfig:
        assert isinstance(cause.parent_node, ListConfig) and cause.ref_type == List[float]
    else:
        assert isinstance(cause.child_node, node)
    key, _, value = override.partition("=")
    assert user_message([override]) == f"{key}={value!r} is not allowed: must be {kind}"


def test_the_failing_override_is_the_one_that_holds_the_refused_value():
    message = user_message(["trainer.epochs=3", "trainer.epochs=abc"])
    assert message == "trainer.epochs='abc' is not allowed: must be a whole number (int)"


def test_a_null_where_none_is_allowed_is_not_called_a_conversion():
    cause = _omegaconf_error(hydra_error(["trainer.epochs=null"]))
    assert isinstance(cause, ValidationError) and cause.value is None
    assert "is not allowed: must be" not in user_message(["trainer.epochs=null"])


# ---------------------------------------------------------------------------------------------
# Hydra and OmegaConf: the text dropped from the display
@pytest.mark.parametrize("overrides", [
    ["optim.lrr=3"], ["trainer.early_stopping.patiencee=3"], ["trainer.epochs=null"],
    ["trainer.early_stopping=3"], ["experiment=nope"],
], ids=lambda o: " ".join(o))
def test_library_internals_are_dropped_from_the_message(overrides):
    error, chain = hydra_error(overrides), []
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    raw = "\n".join(chain)
    dropped = [ln.strip() for ln in raw.splitlines() if ln.strip().startswith(NOISE)]
    assert dropped, f"the libraries no longer write the lines dltrain drops:\n{raw}"
    message = user_message(overrides)
    leaked = [word for word in LIBRARY_INTERNALS if word in message]
    assert not leaked, f"{leaked} in the message:\n{message}"


def test_a_missing_option_lists_the_options_without_the_search_path():
    error = hydra_error(["experiment=nope"])
    assert isinstance(error, MissingConfigException)
    options = sorted(p.stem for p in (launch.config_dir() / "experiment").glob("*.yaml"))
    # dltrain reads the missing file and the options from the exception's fields, not its text
    assert (error.missing_cfg_file, sorted(error.options)) == ("experiment/nope", options)
    assert clean_hydra_error(error) == f"unknown experiment 'nope'; known: {', '.join(options)}"
    assert user_message(["experiment=nope"]) == f"unknown experiment 'nope'; known: {', '.join(options)}"


def test_hydras_own_parser_reads_dltrains_command_line():
    """run_hydra splits Hydra's flags from overrides with Hydra's parser (an internal)."""
    from hydra._internal.utils import get_args_parser

    args, rest = get_args_parser().parse_known_args(["-m", "x=1", "--cfg", "job"])
    assert (args.multirun, args.cfg, args.overrides, rest) == (True, "job", ["x=1"], [])


# ---------------------------------------------------------------------------------------------
# torch: a DataLoader worker's error
class DataError(UserError):
    """A UserError of another type: read_loader gives it back as the same type."""


class FailsAt:
    """A map-style dataset whose item ``index`` raises ``error``."""

    def __init__(self, index: int, error: Exception):
        self.index, self.error = index, error

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == self.index:
            raise self.error
        return torch.zeros(2)


@pytest.mark.parametrize("error", [
    UserError("cannot read image /data/cat/0.png: truncated file"),
    UserError("two lines:\n  the second indented"),
    UserError("a message that itself says dltrain.errors.UserError: here"),
    DataError("a subclass keeps its type"),
], ids=["one-line", "multi-line", "type-in-message", "subclass"])
def test_a_workers_user_error_comes_back_with_its_own_message(error):
    from torch.utils.data import DataLoader

    loader = DataLoader(FailsAt(2, error), batch_size=1, num_workers=1)
    with pytest.raises(UserError) as raised:
        list(read_loader(loader))
    assert type(raised.value) is type(error)
    assert str(raised.value) == str(error)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__ is False


def test_torch_reraises_a_workers_error_as_its_type_with_the_traceback_as_message():
    """The format read_loader takes apart: if torch starts carrying the original exception,
    read_loader can use it instead."""
    from torch.utils.data import DataLoader

    iterator = iter(DataLoader(FailsAt(0, UserError("bad file")), batch_size=1, num_workers=1))
    try:
        next(iterator)
    except UserError as e:
        text = str(e)
        traceback.clear_frames(e.__traceback__)  # they hold the iterator: let its worker stop now
    else:
        pytest.fail("the worker's error was not re-raised")
    del iterator
    assert text.startswith("Caught UserError in DataLoader worker process 0.\nOriginal Traceback")
    assert text.rstrip("\n").endswith("\ndltrain.errors.UserError: bad file")


def test_an_error_raised_in_this_process_passes_unchanged():
    from torch.utils.data import DataLoader

    error = UserError("raised here")
    loader = DataLoader(FailsAt(1, error), batch_size=1, num_workers=0)  # no worker, no re-raise
    with pytest.raises(UserError) as raised:
        list(read_loader(loader))
    assert raised.value is error


# ---------------------------------------------------------------------------------------------
# torch: checkpoints weights_only refuses
class Plain:
    """A class weights_only does not allow."""


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("payload, needs", [
    (Plain(), f"{__name__}.Plain"),
    (RunsCode(), f"{os.system.__module__}.system"),  # a module weights_only blocks outright
])
def test_a_refused_checkpoint_names_what_it_needs(tmp_path, payload, needs):
    path = tmp_path / "foreign.pt"
    torch.save({"model": {}, "extra": payload}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert needs in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    with pytest.raises(UserError) as e:
        load_checkpoint(path)
    assert str(e.value).startswith(f"refusing to load {path}: ")
    assert str(e.value).endswith(f"(it needs {needs})")


def test_a_plain_pickle_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"extra": RunsCode()}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(UserError, match="it is not a PyTorch checkpoint file"):
        load_checkpoint(path)
